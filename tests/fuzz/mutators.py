"""Mutations of fuzz cases, at three levels.

* **bytes** (anywhere in a connection's stream, the HTTP head included): bit flips,
  interesting byte values, random insertions, deletions, duplications, truncation,
  and splices with another case's stream;
* **WebSocket frames** (after the HTTP head): a frame's declared length set to an
  interesting value (125/126/127 and the 16/64-bit boundaries, 2**63, 2**64-1) or
  encoded in a longer form, FIN/RSV/opcode/mask bits flipped, frames dropped,
  duplicated or swapped, a data frame fragmented (with a Ping between the pieces),
  control frames with odd payloads inserted anywhere (after a close frame too);
* **payloads**: the stream is decoded (inflated, JSON or ETF), one payload is
  changed and the stream re-encoded and re-compressed, so the change gets past the
  compression: a value (``s``, ``op``, ``heartbeat_interval``,
  ``resume_gateway_url``, ``t``, ``session_id`` more often than others) replaced
  by 1e300, 2**64, -1, NaN, huge nesting, lone surrogates, bad UTF-8 or bad escapes,
  a key dropped, a gateway message (op 1, 7, 9, 11, HELLO, READY, RESUMED, a
  dispatch with an odd ``s``) inserted, messages dropped, duplicated or swapped.

Every mutation takes a ``random.Random``: the same seed gives the same case.
"""

from __future__ import annotations

import json
import math
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .corpus import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Case,
    close_payload,
    frame,
    parse_frames,
    split_head,
)

INTERESTING_BYTES = (0x00, 0x01, 0x7E, 0x7F, 0x80, 0x81, 0xFE, 0xFF, 0x0A, 0x0D, 0x20, 0x22)
INTERESTING_LENGTHS = (
    0,
    1,
    124,
    125,
    126,
    127,
    128,
    65535,
    65536,
    65537,
    2**31 - 1,
    2**31,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
)
INTERESTING_KEYS = ("s", "op", "heartbeat_interval", "resume_gateway_url", "t", "session_id", "d")
MAX_CASE_SIZE = 512 * 1024  # keep mutated cases from growing without end


# -- bytes -----------------------------------------------------------------------------


def _span(rng: random.Random, size: int) -> tuple[int, int]:
    start = rng.randrange(size)
    length = min(size - start, rng.choice((1, 1, 2, 4, 8, 16, 64, 512)))
    return start, start + length


def bit_flip(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 4, 8))):
        pos = rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def interesting_byte(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[rng.randrange(len(out))] = rng.choice(INTERESTING_BYTES)
    return bytes(out)


def insert_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    pos = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        junk = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 2, 4, 16, 100))))
    else:
        junk = bytes((rng.choice(INTERESTING_BYTES),)) * rng.choice((1, 3, 126, 1000))
    return data[:pos] + junk + data[pos:]


def delete_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    start, end = _span(rng, len(data))
    return data[:start] + data[end:]


def duplicate_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    start, end = _span(rng, len(data))
    pos = rng.randrange(len(data) + 1)
    return data[:pos] + data[start:end] * rng.choice((1, 1, 2, 16)) + data[pos:]


def truncate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A prefix of this stream, then the rest of another from some point."""
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


BYTE_MUTATORS: tuple[Callable[[random.Random, bytes, bytes], bytes], ...] = (
    bit_flip,
    bit_flip,
    interesting_byte,
    insert_bytes,
    delete_bytes,
    duplicate_bytes,
    truncate,
    splice,
    splice,
)


# -- WebSocket frames ------------------------------------------------------------------


def _control_frame(rng: random.Random) -> bytes:
    choice = rng.randrange(10)
    if choice == 0:
        return frame(PING, b"")
    if choice == 1:
        return frame(PING, b"p" * rng.choice((1, 125, 126, 200)))
    if choice == 2:
        return frame(PONG, bytes(rng.getrandbits(8) for _ in range(rng.randrange(8))))
    if choice == 3:
        return frame(PING, b"x", fin=False)
    if choice == 4:
        return frame(CLOSE, b"" if rng.random() < 0.5 else b"\x03")
    if choice == 5:
        code = rng.choice((999, 1000, 1001, 1004, 1005, 1006, 1015, 2999, 3000, 4000, 4004))
        return frame(CLOSE, close_payload(code, rng.choice((b"", b"bye", b"\xff\xfe", b"r" * 123))))
    if choice == 6:
        code = rng.choice((4000, 4001, 4007, 4009, 4014, 4999, 5000, 65535))
        return frame(CLOSE, close_payload(code))
    if choice == 7:
        return frame(rng.choice((3, 4, 5, 6, 7, 11, 12, 13, 14, 15)), b"reserved")
    if choice == 8:
        return frame(CONTINUATION, b"orphan")
    return frame(PING, b"after", rsv=rng.randrange(8))


def _with_frames(data: bytes) -> tuple[bytes, bytes, list[Any], bytes] | None:
    head, body = split_head(data)
    frames, rest = parse_frames(body)
    if not frames and not rest:
        return None
    return head, body, frames, rest


def frame_length(rng: random.Random, data: bytes, other: bytes) -> bytes:
    parsed = _with_frames(data)
    if parsed is None or not parsed[2]:
        return insert_bytes(rng, data, other)
    head, body, frames, _ = parsed
    target = rng.choice(frames)
    payload = target.payload
    if rng.random() < 0.5:
        length = rng.choice(INTERESTING_LENGTHS)
        form = None
    else:
        length = max(0, len(payload) + rng.choice((-2, -1, 1, 2)))
        form = rng.choice((None, 16, 64))
    first = body[target.start]
    new = frame(
        first & 0x0F,
        payload,
        fin=bool(first & 0x80),
        rsv=(first >> 4) & 0x7,
        length=length,
        form=form,
    )
    return head + body[: target.start] + new + body[target.end :]


def frame_bits(rng: random.Random, data: bytes, other: bytes) -> bytes:
    parsed = _with_frames(data)
    if parsed is None or not parsed[2]:
        return bit_flip(rng, data, other)
    head, body, frames, _ = parsed
    target = rng.choice(frames)
    out = bytearray(body)
    which = rng.randrange(4)
    if which == 0:
        out[target.start] ^= 0x80  # FIN
    elif which == 1:
        out[target.start] ^= 0x10 << rng.randrange(3)  # RSV1-3
    elif which == 2:
        out[target.start] = (out[target.start] & 0xF0) | rng.randrange(16)  # opcode
    else:  # masked, as a server must never send
        new = frame(target.opcode, target.payload, fin=target.fin, mask=b"\x00\xff\x10\x01")
        return head + body[: target.start] + new + body[target.end :]
    return head + bytes(out)


def frame_shuffle(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """Drop, duplicate or swap whole frames, or insert a control frame between two."""
    parsed = _with_frames(data)
    if parsed is None:
        return data + _control_frame(rng)
    head, body, frames, rest = parsed
    pieces = [body[f.start : f.end] for f in frames]
    which = rng.randrange(5)
    if which == 0 and pieces:
        del pieces[rng.randrange(len(pieces))]
    elif which == 1 and pieces:
        index = rng.randrange(len(pieces))
        pieces.insert(rng.randrange(len(pieces) + 1), pieces[index])
    elif which == 2 and len(pieces) > 1:
        i, j = rng.sample(range(len(pieces)), 2)
        pieces[i], pieces[j] = pieces[j], pieces[i]
    else:
        for _ in range(rng.choice((1, 1, 2, 3))):
            pieces.insert(rng.randrange(len(pieces) + 1), _control_frame(rng))
    return head + b"".join(pieces) + rest


def fragment(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A data frame sent as several (a control frame between them, sometimes)."""
    parsed = _with_frames(data)
    if parsed is None:
        return data
    head, body, frames, rest = parsed
    data_frames = [f for f in frames if f.opcode in (TEXT, BINARY) and f.fin]
    if not data_frames:
        return frame_shuffle(rng, data, other)
    target = rng.choice(data_frames)
    payload = target.payload
    cuts = sorted({rng.randrange(len(payload) + 1) for _ in range(rng.randint(1, 4))})
    bounds = list(zip([0, *cuts], [*cuts, len(payload)], strict=True))
    new = b""
    for i, (start, end) in enumerate(bounds):
        last = i == len(bounds) - 1
        new += frame(target.opcode if i == 0 else CONTINUATION, payload[start:end], fin=last)
        if not last and rng.random() < 0.3:
            new += _control_frame(rng)
    return head + body[: target.start] + new + body[target.end :] + rest


FRAME_MUTATORS: tuple[Callable[[random.Random, bytes, bytes], bytes], ...] = (
    frame_length,
    frame_length,
    frame_bits,
    frame_shuffle,
    frame_shuffle,
    fragment,
)


# -- payloads --------------------------------------------------------------------------


@dataclass
class Message:
    opcode: int  # TEXT or BINARY; the control frames are kept as raw bytes
    payload: Any  # the decoded payload (a dict, usually)


Part = Message | bytes

SENTINEL = "FUZZ-TOKEN-5d1e"


def decode_stream(case: Case, data: bytes) -> tuple[bytes, list[Part]] | None:
    """The HTTP head and the messages of one connection's stream (None if undecodable)."""
    from discord_gateway import _etf

    head, body = split_head(data)
    frames, rest = parse_frames(body)
    if rest or not frames:
        return None
    parts: list[Part] = []
    inflate: Any = None
    if case.compress == "zlib-stream":
        inflate = zlib.decompressobj()
    elif case.compress == "zstd-stream":
        import zstandard

        inflate = zstandard.ZstdDecompressor().decompressobj()
    pending = b""
    message = b""
    first_opcode = TEXT
    try:
        for f in frames:
            if f.opcode in (CLOSE, PING, PONG):
                parts.append(body[f.start : f.end])
                continue
            if f.opcode != CONTINUATION:
                first_opcode, message = f.opcode, b""
            message += f.payload
            if not f.fin:
                continue
            raw = message
            if inflate is not None:
                pending += inflate.decompress(raw)
                if case.compress == "zlib-stream" and not raw.endswith(b"\x00\x00\xff\xff"):
                    continue
                raw, pending = pending, b""
            elif first_opcode == BINARY and raw[:1] == b"\x78":
                raw = zlib.decompress(raw)
            if case.encoding == "etf" and first_opcode == BINARY:
                payload = _etf.loads(raw)
            else:
                payload = json.loads(raw)
            parts.append(Message(first_opcode, payload))
    except Exception:
        return None
    return head, parts


def _json_tokens() -> list[bytes]:
    return [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e999",
        b"-0",
        b"1E400",
        b"1e-400",
        b'"\\ud800"',
        b'"\\udfff\\ud800"',
        b'"\\u12"',
        b'"\\x41"',
        b'"\xff\xfe"',
        b'"\xed\xa0\x80"',
        b'"\xc0\xaf"',
        b"[" * 5000 + b"]" * 5000,
        b"[" * 40000 + b"]" * 40000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'"' + b"a" * 70000 + b'"',
        b"00",
        b"1.",
        b".5",
        b"nul",
        b"[1,]",
        b'{"a":1,"a":2}',
        b'"\x00"',
    ]


def _etf_tokens() -> list[bytes]:
    depth = 3000
    return [
        b"F" + struct.pack(">d", math.nan),
        b"F" + struct.pack(">d", math.inf),
        b"F" + struct.pack(">d", -math.inf),
        b"c" + b"1.00000000000000000000e+999".ljust(31, b"\x00"),
        b"c" + b"nonsense".ljust(31, b"\x00"),
        b"o" + (256).to_bytes(4, "big") + b"\x00" + b"\xff" * 256,  # 2**2048 - 1
        b"o" + (2**32 - 1).to_bytes(4, "big") + b"\x00",  # declared 4 GiB
        b"n\xff\x00\x01",  # SMALL_BIG claiming 255 bytes
        b"l" + b"\x00\x00\x00\x01" + b"l\x00\x00\x00\x01" * depth + b"j" * (depth + 2),
        b"l\xff\xff\xff\xffj",  # a list declaring 4 Gi elements
        b"i\xff\xff\xff\xff",  # a tuple declaring 4 Gi elements
        b"t\xff\xff\xff\xff",  # a map declaring 4 Gi pairs
        b"m\x00\x00\x00\x02\xff\xfe",  # a binary that is not UTF-8
        b"m\xff\xff\xff\xff",  # a binary declaring 4 GiB
        b"k\x00\x03abc",  # STRING_EXT
        b"v\x00\x03nil",
        b"w\x04true",
        b"d\x00\x03\xe9t\xe9",  # Latin-1 ATOM_EXT
        b"w\x02\xff\xfe",  # an atom that is not UTF-8
        b"P\x00\x00\x00\x10" + zlib.compress(b"j"),  # compressed term
        b"h\x02a\x01a\x02",  # a tuple
        b"X",  # unknown tag
        b"t\x00\x00\x00\x01ja\x01",  # a map with a list key
    ]


JSON_TOKENS = _json_tokens()
ETF_TOKENS = _etf_tokens()
VALUES: tuple[Any, ...] = (
    -1,
    0,
    1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**1100,
    -(2**63) - 1,
    1e300,
    -1e300,
    1e-300,
    0.5,
    True,
    False,
    None,
    "",
    "x",
    "READY",
    "RESUMED",
    {},
    [],
    [1, 2],
    {"heartbeat_interval": 1},
    "ws://evil.example/",
    "wss://user:pw@evil.example/",
    "http://evil.example/",
    "wss://",
    "wss://[::1",
    "x" * 300,
)
MESSAGES: tuple[dict[str, Any], ...] = (
    {"op": 1, "d": None},
    {"op": 1, "d": 5},
    {"op": 7, "d": None},
    {"op": 9, "d": True},
    {"op": 9, "d": False},
    {"op": 11},
    {"op": 10, "d": {"heartbeat_interval": 41250}},
    {"op": 10, "d": {"heartbeat_interval": 1}},
    {"op": 0, "s": 1, "t": "READY", "d": {"session_id": "s2", "resume_gateway_url": "wss://x/"}},
    {"op": 0, "s": 99, "t": "RESUMED", "d": None},
    {"op": 0, "s": 0, "t": "GUILD_CREATE", "d": {}},
    {"op": 0, "s": 2**63 - 1, "t": "MESSAGE_CREATE", "d": {}},
    {"op": 0, "s": None, "t": "MESSAGE_CREATE", "d": {}},
    {"op": 42, "d": {}},
    {"op": None},
)


def _paths(obj: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    if depth > 6:
        return found
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key), depth + 1))
    elif isinstance(obj, list):
        for index, value in enumerate(obj[:8]):
            found.append((*prefix, index))
            found.extend(_paths(value, (*prefix, index), depth + 1))
    return found


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


def mutate_payload(rng: random.Random, payload: Any, encoding: str) -> tuple[Any, bytes | None]:
    """A changed copy of ``payload``, and the raw token standing for SENTINEL (or None)."""
    payload = _copy(payload)
    paths = _paths(payload)
    if not paths:
        return rng.choice(VALUES), None
    favoured = [p for p in paths if p[-1] in INTERESTING_KEYS]
    path = rng.choice(favoured if favoured and rng.random() < 0.6 else paths)
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    roll = rng.random()
    token: bytes | None = None
    if roll < 0.1 and isinstance(parent, dict):
        del parent[path[-1]]
        return payload, None
    if roll < 0.55:
        value: Any = rng.choice(VALUES)
        if encoding == "etf" and isinstance(value, int) and abs(value).bit_length() > 2040:
            value = 2**2000
    else:
        token = rng.choice(ETF_TOKENS if encoding == "etf" else JSON_TOKENS)
        value = SENTINEL
    parent[path[-1]] = value
    return payload, token


def encode_stream(case: Case, head: bytes, parts: list[Part], tokens: dict[int, bytes]) -> bytes:
    """Frame (and compress) ``parts`` again; ``tokens[i]`` replaces SENTINEL in message i."""
    from discord_gateway import _etf

    deflate: Any = None
    if case.compress == "zlib-stream":
        deflate = zlib.compressobj()
    elif case.compress == "zstd-stream":
        import zstandard

        deflate = zstandard.ZstdCompressor().compressobj()
    out = [head]
    for index, part in enumerate(parts):
        if isinstance(part, bytes):
            out.append(part)
            continue
        token = tokens.get(index)
        if case.encoding == "etf" and part.opcode == BINARY:
            try:
                raw = _etf.dumps(part.payload, atom_keys=True)
            except (TypeError, ValueError):
                raw = _etf.dumps({"op": 11})
            if token is not None:
                sentinel = SENTINEL.encode()
                raw = raw.replace(b"m" + len(sentinel).to_bytes(4, "big") + sentinel, token)
        else:
            raw = json.dumps(part.payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
            if token is not None:
                raw = raw.replace(f'"{SENTINEL}"'.encode(), token)
        if case.compress == "zlib-stream":
            data = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
            out.append(frame(BINARY, data))
        elif case.compress == "zstd-stream":
            import zstandard

            data = deflate.compress(raw) + deflate.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            out.append(frame(BINARY, data))
        elif part.opcode == BINARY and case.compress is True:
            out.append(frame(BINARY, zlib.compress(raw)))
        else:
            out.append(frame(part.opcode, raw))
    return b"".join(out)


_DECODED: dict[tuple[str, int], tuple[bytes, list[Part]] | None] = {}


def payload_mutation(rng: random.Random, case: Case, index: int) -> bytes | None:
    """Connection ``index`` of ``case`` with one payload-level change (None: not decodable)."""
    key = (case.name, index)
    if key not in _DECODED:
        _DECODED[key] = decode_stream(case, case.conns[index])
    decoded = _DECODED[key]
    if decoded is None:
        return None
    head, original = decoded
    parts = list(original)
    messages = [i for i, p in enumerate(parts) if isinstance(p, Message)]
    tokens: dict[int, bytes] = {}
    roll = rng.random()
    if roll < 0.6 and messages:
        i = rng.choice(messages)
        message = parts[i]
        assert isinstance(message, Message)
        payload, token = mutate_payload(rng, message.payload, case.encoding)
        parts[i] = Message(message.opcode, payload)
        if token is not None:
            tokens[i] = token
    elif roll < 0.75:
        opcode = BINARY if case.encoding == "etf" or case.compress is True else TEXT
        parts.insert(rng.randrange(len(parts) + 1), Message(opcode, dict(rng.choice(MESSAGES))))
    elif roll < 0.85 and messages:
        del parts[rng.choice(messages)]
    elif roll < 0.95 and messages:
        i = rng.choice(messages)
        parts.insert(rng.randrange(len(parts) + 1), parts[i])
    elif len(messages) > 1:
        i, j = rng.sample(messages, 2)
        parts[i], parts[j] = parts[j], parts[i]
    return encode_stream(case, head, parts, tokens)


# -- putting it together ---------------------------------------------------------------


def mutate(rng: random.Random, case: Case, corpus: list[Case]) -> Case:
    """``case`` with one connection changed by 1-4 stacked mutations."""
    conns = list(case.conns)
    index = rng.randrange(len(conns))
    data = conns[index]
    other_case = rng.choice(corpus)
    other = rng.choice(other_case.conns)
    names = []
    if rng.random() < 0.4:
        changed = payload_mutation(rng, case, index)
        if changed is not None:
            data = changed
            names.append("payload")
    rounds = rng.choice((0, 1, 1, 1, 2, 3)) if names else rng.choice((1, 1, 2, 3, 4))
    for _ in range(rounds):
        family = FRAME_MUTATORS if rng.random() < 0.45 else BYTE_MUTATORS
        mutator = rng.choice(family)
        data = mutator(rng, data, other)[:MAX_CASE_SIZE]
        names.append(mutator.__name__)
    conns[index] = data
    if rng.random() < 0.05 and len(conns) < 4:  # a further connection, from anywhere
        conns.append(rng.choice(rng.choice(corpus).conns))
    mutated = case.with_conns(conns)
    return type(case)(
        name=f"{case.name}+{'+'.join(names)}",
        encoding=mutated.encoding,
        compress=mutated.compress,
        conns=mutated.conns,
        note=f"mutated from {case.name}",
    )
