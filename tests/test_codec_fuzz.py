"""Byte-level fuzzing of the codec: mutated captures and random bytes, for every
encoding x compression, cut into random chunks. Invariant (the error
contract): each chunk either returns None or a decoded payload, or raises
RemoteProtocolError (PayloadTooLarge included) - nothing else ever escapes.

``CODEC_FUZZ_EXAMPLES=20000`` (default 300 per test, about 3 s in all) hunts longer.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway import _etf
from discord_gateway.codec import Codec
from discord_gateway.errors import RemoteProtocolError

FIXTURES = Path(__file__).parent / "fixtures"
CONSTRUCTED = FIXTURES / "constructed"
EXAMPLES = int(os.environ.get("CODEC_FUZZ_EXAMPLES", "300"))
COMBOS = [(e, c) for e in ("json", "etf") for c in (None, "zlib-stream", "zstd-stream")]

PAYLOADS: list[Any] = [
    json.loads(path.read_text())
    for path in sorted([*FIXTURES.glob("*.json"), *(FIXTURES / "docs_examples").glob("*.json")])
]


def _encode(payload: Any, encoding: str) -> bytes:
    if encoding == "json":
        return json.dumps(payload, separators=(",", ":")).encode()
    return _etf.dumps(payload if isinstance(payload, dict) else {"d": payload}, atom_keys=True)


def _zlib_stream(messages: list[bytes]) -> list[bytes]:
    deflate = zlib.compressobj()
    return [deflate.compress(m) + deflate.flush(zlib.Z_SYNC_FLUSH) for m in messages]


def _zstd_stream(messages: list[bytes], frame_per_message: bool) -> list[bytes]:
    if frame_per_message:
        return [zstandard.ZstdCompressor().compress(m) for m in messages]
    compressor = zstandard.ZstdCompressor().compressobj()
    flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    return [compressor.compress(m) + compressor.flush(flush) for m in messages]


def _seed_streams() -> dict[tuple[str, str | None], list[list[bytes]]]:
    """Whole streams of binary messages per combination, real captures first."""
    seeds: dict[tuple[str, str | None], list[list[bytes]]] = {combo: [] for combo in COMBOS}
    seeds["json", "zlib-stream"].append(
        [(CONSTRUCTED / f"zlib_stream_seq_{i}.bin").read_bytes() for i in range(3)]
    )
    seeds["json", "zlib-stream"].append([(FIXTURES / "hello.zlib-stream.bin").read_bytes()])
    seeds["json", "zstd-stream"].append([(FIXTURES / "hello.zstd-stream.bin").read_bytes()])
    seeds["json", None].append([(CONSTRUCTED / "payload_compression_ready.zlib.bin").read_bytes()])
    seeds["etf", None].append(
        [(CONSTRUCTED / f"{n}.etf.bin").read_bytes() for n in ("hello", "guild_delete_dispatch")]
    )
    for encoding in ("json", "etf"):
        raw = [_encode(p, encoding) for p in PAYLOADS]
        seeds[encoding, None].append(raw)
        seeds[encoding, "zlib-stream"].append(_zlib_stream(raw))
        seeds[encoding, "zstd-stream"].append(_zstd_stream(raw, frame_per_message=False))
        seeds[encoding, "zstd-stream"].append(_zstd_stream(raw, frame_per_message=True))
    seeds["json", None].append([zlib.compress(m) for m in seeds["json", None][1]])
    return seeds


SEEDS = _seed_streams()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random edits: flips, inserts, deletes, repeats, cuts."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat", "truncate"]))
        if op == "flip" and where < len(buf):
            buf[where] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and where < len(buf):
            buf[where] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, 106, 108, 116, 131]))
        elif op == "insert":
            buf[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[where : where + draw(st.integers(1, 16))]
        elif op == "repeat":
            buf[where:where] = buf[where : where + draw(st.integers(1, 64))] * draw(
                st.integers(1, 50)
            )
        elif op == "truncate":
            del buf[where:]
    return bytes(buf)


def chunks(draw: st.DrawFn, message: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(message)), max_size=3)))
    return [message[a:b] for a, b in zip([0, *cuts], [*cuts, len(message)], strict=True)]


def feed(codec: Codec, kind: str, pieces: list[Any]) -> None:
    """The invariant: None, a payload, or RemoteProtocolError; nothing else."""
    send = codec.text if kind == "text" else codec.binary
    for index, piece in enumerate(pieces):
        with contextlib.suppress(RemoteProtocolError):
            send(piece, index == len(pieces) - 1)


@settings(max_examples=EXAMPLES)
@given(st.sampled_from(COMBOS), st.sampled_from([4096, 65536, 16 * 2**20]), st.data())
def test_mutated_captures_raise_only_remote_protocol_errors(
    combo: tuple[str, str | None], max_size: int, data: st.DataObject
) -> None:
    encoding, compress = combo
    codec = Codec(encoding, compress, max_size)
    stream = data.draw(st.sampled_from(SEEDS[combo]))
    for message in stream[: data.draw(st.integers(1, len(stream)))]:
        message = data.draw(mutated(message))
        feed(codec, "binary", chunks(data.draw, message))


@settings(max_examples=EXAMPLES)
@given(
    st.sampled_from(COMBOS),
    st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    st.data(),
)
def test_random_bytes_raise_only_remote_protocol_errors(
    combo: tuple[str, str | None], messages: list[bytes], data: st.DataObject
) -> None:
    codec = Codec(*combo, 4096)
    for message in messages:
        feed(codec, "binary", chunks(data.draw, message))


@settings(max_examples=EXAMPLES)
@given(st.sampled_from(PAYLOADS), st.data())
def test_mutated_json_text_raises_only_remote_protocol_errors(
    payload: Any, data: st.DataObject
) -> None:
    raw = data.draw(mutated(json.dumps(payload).encode()))
    # wsproto hands over valid text only; a caller of Codec may hand anything.
    text = raw.decode("utf-8", data.draw(st.sampled_from(["replace", "surrogateescape"])))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=3)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    feed(Codec("json", None, data.draw(st.sampled_from([4096, 2**20]))), "text", pieces)


@settings(max_examples=EXAMPLES)
@given(st.sampled_from(SEEDS["etf", None]), st.data())
def test_mutated_etf_raises_only_remote_protocol_errors(
    stream: list[bytes], data: st.DataObject
) -> None:
    message = data.draw(mutated(data.draw(st.sampled_from(stream))))
    for snowflakes in (False, True):
        with contextlib.suppress(RemoteProtocolError):
            _etf.loads(message, stringify_snowflakes=snowflakes, max_terms=1000)
