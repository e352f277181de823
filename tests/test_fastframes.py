"""The data-frame fast path (``fast_frames=True``) against wsproto alone (``False``).

The differential property: for any sequence of server frames - every opcode,
lengths around 125/126/65535/65536, fragmented messages with control frames
between fragments, invalid frames (RSV bits, masked, reserved opcodes,
oversized or fragmented control frames, non-minimal lengths, stray
continuations, invalid UTF-8 whole or cut across fragments), and garbage
payloads - cut into reads anywhere, a connection with the fast path and one
without deliver the same events, write the same frames and raise the same
errors at the same reads.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway import (
    CloseDiscordConnection,
    ConfigurationError,
    DiscordConnection,
    GatewayError,
    _fastframes,
)

from peer import client_frames, ready_link

# About 20 s of CI time on 2 cores in the ci profile; quick in dev.
EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") in ("ci", "fuzz") else 40

SIZES = [0, 1, 2, 60, 124, 125, 126, 127, 4000, 4097, 65534, 65535, 65536, 65537, 70_001]


def _frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
    wide: bool = False,
) -> bytes:
    """One server frame; ``wide`` encodes the length in more bytes than needed."""
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask else 0
    if size < 126 and not wide:
        head += bytes([bit | size])
    elif size < 65536 and not (wide and size >= 126):
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if mask:
        key = b"\x01\x02\x03\x04"
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def _json(seq: int, size: int, op: int = 0) -> bytes:
    """A payload of about ``size`` bytes with multi-byte characters to cut."""
    if op != 0:
        return b'{"op":%d,"d":null}' % op
    head = b'{"op":0,"s":%d,"t":"MESSAGE_CREATE","d":{"p":"' % seq
    room = max(0, size - len(head) - 3)
    pad = ("a\u00e9\u20ac\U0001d11e" * (room // 10 + 1)).encode()[:room]
    pad = pad.decode("utf-8", "ignore").encode()
    return head + pad + b'"}}'


_PLAIN = ["text"] * 6 + ["binary"] * 3 + ["ping", "pong"]
_ODD = ["close", "bad_utf8", "bad_utf8", "garbage", "control_op", "invalid", "invalid"]


@st.composite
def _messages(draw: st.DrawFn, deflate: Any, stream: bool, odd: bool) -> list[bytes]:
    """The frames of one message (or one odd frame)."""
    kind = draw(st.sampled_from(_PLAIN + _ODD if odd else _PLAIN))
    seq = draw(st.integers(2, 10**6))
    if kind == "ping" or kind == "pong":
        size = draw(st.sampled_from([0, 5, 125, 126]))
        return [_frame(0x9 if kind == "ping" else 0xA, b"p" * size, fin=draw(st.booleans()))]
    if kind == "close":
        code = draw(st.sampled_from([1000, 1001, 4000, 4004, 1005, 999, 1006]))
        reason = draw(st.sampled_from([b"", b"bye", b"\xff\xfe", b"r" * 200]))
        payload = b"" if code == 1005 else struct.pack("!H", code) + reason
        return [_frame(0x8, payload)]
    if kind == "invalid":
        which = draw(
            st.sampled_from(["rsv", "mask", "opcode", "continuation", "wide", "unfinished"])
        )
        body = _json(seq, draw(st.sampled_from([10, 200])))
        opcode = draw(st.sampled_from([1, 2]))
        if which == "rsv":
            return [_frame(opcode, body, rsv=draw(st.integers(1, 7)))]
        if which == "mask":
            return [_frame(opcode, body, mask=True)]
        if which == "opcode":
            return [_frame(draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xF])), body)]
        if which == "continuation":
            return [_frame(0, body, fin=draw(st.booleans()))]
        if which == "unfinished":  # a message the next one interrupts
            return [_frame(opcode, body, fin=False)]
        return [_frame(opcode, body, wide=True)]
    if kind == "control_op":
        body = _json(seq, 0, op=draw(st.sampled_from([1, 7, 9, 11, 42])))
        binary = False
    elif kind == "garbage":
        body = draw(st.sampled_from([b"[1,2]", b"{", b"null", b"\x78\x9c\x00"]))
        binary = draw(st.booleans())
    else:
        body = _json(seq, draw(st.sampled_from(SIZES)))
        binary = kind == "binary"
    if kind == "bad_utf8":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xe2\x82", b"\xc0\xaf"])) + body[at:]
    if binary and stream:
        body = deflate.compress(body) + deflate.flush(_flush(deflate))
    elif binary:
        body = zlib.compress(body)
    # Fragments: cut points anywhere (also inside UTF-8 sequences), with
    # control frames (or anything else) between them now and then.
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    frames = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        frames.append(_frame((2 if binary else 1) if i == 0 else 0, piece, fin=last))
        if not last and draw(st.integers(0, 5)) == 0:
            frames.append(_frame(0x9, b"between"))
    return frames


@st.composite
def _wires(draw: st.DrawFn, deflate: Any, stream: bool) -> tuple[bytes, list[int]]:
    """The server's bytes and where the reads end (often near frame boundaries)."""
    frames: list[bytes] = []
    count = draw(st.integers(1, 8))
    # Odd frames often end an exchange (close, protocol error): half of the
    # examples keep them to the last message, so the fast path runs long.
    odd_last = draw(st.booleans())
    for i in range(count):
        frames.extend(draw(_messages(deflate, stream, odd=not odd_last or i == count - 1)))
    wire = b"".join(frames)
    bounds = [0]
    for frame in frames:
        bounds.append(bounds[-1] + len(frame))
    cuts = set()
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.booleans()):
            cuts.add(draw(st.sampled_from(bounds)) + draw(st.integers(-3, 12)))
        else:
            cuts.add(draw(st.integers(0, len(wire))))
    ends = sorted(c for c in cuts if 0 < c < len(wire))
    return wire, ends


def _record(conn: DiscordConnection, read: bytes | None) -> list[Any]:
    """Everything observable about one ``receive()``: the frames written back
    (unmasked: the client masks with random keys), the error, the events,
    the state."""
    seen: list[Any] = []
    try:
        out = conn.receive(read, now=1.0)
        seen.append(("out", [client_frames(chunk) for chunk in out]))
    except CloseDiscordConnection as exc:
        seen.append(("closed", exc.code, exc.reason, client_frames(exc.data or b"")))
    except GatewayError as exc:
        data = getattr(exc, "data", b"") or b""
        seen.append(("error", type(exc).__name__, str(exc), client_frames(data)))
    seen.append(list(conn.events()))
    seen.append((conn.state, conn.sequence, conn.session_id, conn.should_reconnect()))
    return seen


def _run(wire: bytes, ends: list[int], fast: bool, **kwargs: Any) -> list[Any]:
    link = ready_link(fast_frames=fast, **kwargs)
    conn = link.conn
    list(conn.events())
    reads = [wire[a:b] for a, b in zip([0, *ends], [*ends, len(wire)], strict=True)]
    log = [_record(conn, read) for read in reads]
    log.append(_record(conn, None))  # the transport drops: nothing left over may differ
    return log


def _flush(compressor: Any) -> int:
    """How a stream compressor ends one message."""
    if type(compressor).__module__ == "zlib":
        return zlib.Z_SYNC_FLUSH
    return int(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.mark.parametrize("compress", [None, "zlib-stream", "zstd-stream"])
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data(), max_size=st.sampled_from([4096, 70_000]))
def test_fast_path_is_invisible(compress: str | None, data: st.DataObject, max_size: int) -> None:
    """Invariant: fast_frames on and off are indistinguishable, whatever the bytes and reads."""
    probe = ready_link(compress=compress)
    if compress == "zstd-stream":  # the peer sent HELLO and READY as text
        deflate: Any = zstandard.ZstdCompressor().compressobj()
    else:  # both clients inflate one zlib stream: HELLO and READY first, as the peer sent them
        deflate = probe.peer._deflate.copy()
    wire, ends = data.draw(_wires(deflate, compress is not None))
    kwargs = {"compress": compress, "max_payload_size": max_size}
    assert _run(wire, ends, True, **kwargs) == _run(wire, ends, False, **kwargs)


def test_fast_frames_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="fast_frames must be True or False"):
        DiscordConnection("wss://gateway.discord.gg", fast_frames=1)  # type: ignore[arg-type]


def test_plain_messages_bypass_wsproto() -> None:
    """The point of it: whole plain frames never reach wsproto's buffer, and a
    frame cut by the read goes to wsproto, which hands back at its end."""
    link = ready_link()
    conn = link.conn
    frames = [_frame(1, _json(seq, 300)) for seq in range(2, 6)]
    wire = b"".join(frames)
    cut = len(frames[0]) + len(frames[1]) + 100
    conn.receive(wire[:cut], now=1.0)
    assert _fastframes.boundary(conn._ws) == len(frames[2]) - 100  # streaming frame 3
    conn.receive(wire[cut:], now=1.0)
    assert _fastframes.boundary(conn._ws) == 0
    assert [e.seq for e in conn.events() if hasattr(e, "seq")][-4:] == [2, 3, 4, 5]


def test_a_cut_header_is_kept_for_the_next_read() -> None:
    """A header cut by the end of the read stays out of wsproto (which would
    otherwise hold it, and take the whole next read too)."""
    link = ready_link()
    conn = link.conn
    frames = [_frame(1, _json(seq, 300)) for seq in (2, 3)]
    wire = b"".join(frames)
    cut = len(frames[0]) + 3
    conn.receive(wire[:cut], now=1.0)
    assert _fastframes.boundary(conn._ws) == 0
    conn.receive(wire[cut:], now=1.0)
    assert [e.seq for e in conn.events() if hasattr(e, "seq")][-2:] == [2, 3]


def test_a_binary_frame_cut_by_the_read_is_streamed_without_wsproto() -> None:
    """A binary frame cut by the end of a read goes to the codec piece by piece,
    as wsproto would hand it over, but wsproto never sees it: the next read
    starts on the fast path again (with ~5 frames per 4 KiB read, the round
    trip through wsproto was ~1 us per event)."""
    link = ready_link()
    conn = link.conn
    frames = [_frame(2, zlib.compress(_json(seq, 3000))) for seq in (2, 3, 4)]
    wire = b"".join(frames)
    cut = len(frames[0]) + len(frames[1]) // 2
    conn.receive(wire[:cut], now=1.0)
    assert _fastframes.boundary(conn._ws) == 0  # wsproto holds nothing
    assert conn._fast_rest == len(frames[1]) - len(frames[1]) // 2
    conn.receive(wire[cut:], now=1.0)
    assert conn._fast_rest == 0
    assert [e.seq for e in conn.events() if hasattr(e, "seq")][-3:] == [2, 3, 4]
