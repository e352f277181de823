"""zstd-stream with frames that end: one frame per message, frames ending inside
a message, messages made of several frames - on both back ends.

Discord never ends its zstd frame (protocol 35); other Discord-compatible servers
end one after every message. Both are valid zstd: a stream is any number of
concatenated frames. The stdlib back end (``compression.zstd``, Python 3.14+)
is exercised here through ``backports.zstd``, the same module for older
Pythons, swapped in where ``_zstd`` looks for it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway import _zstd
from discord_gateway.codec import Codec
from discord_gateway.errors import PayloadTooLarge, RemoteProtocolError

FIXTURES = Path(__file__).parent / "fixtures"
HELLO_ZSTD = (FIXTURES / "hello.zstd-stream.bin").read_bytes()
HELLO_EXPECTED = json.loads((FIXTURES / "hello.zstd-stream.expected.json").read_text())
MAX = 16 * 2**20


def _stdlib_zstd() -> object | None:
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


@pytest.fixture(params=["zstandard", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test runs on both back ends; the choice is made when an inflater is built."""
    if request.param == "stdlib":
        module = _stdlib_zstd()
        if module is None:
            pytest.skip("needs Python 3.14+ or backports.zstd (in the test extra)")
        monkeypatch.setattr(_zstd, "_stdlib_zstd", module)
    else:
        if _zstd.zstandard is None:  # pragma: no cover - Python 3.14+ without zstandard
            monkeypatch.setattr(_zstd, "zstandard", zstandard)
        monkeypatch.setattr(_zstd, "_stdlib_zstd", None)
    yield request.param


def codec(max_size: int = MAX) -> Codec:
    return Codec("json", "zstd-stream", max_size)


def frame(raw: bytes) -> bytes:
    """One complete zstd frame, as the frame-per-message servers send."""
    return zstandard.ZstdCompressor().compress(raw)


def streamed_frame(raw: bytes) -> bytes:
    """A complete frame without a content size, written the streaming way."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(raw) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


PAYLOADS = [
    {"op": 10, "d": {"heartbeat_interval": 41250}},
    {"op": 0, "s": 1, "t": "READY", "d": {"session_id": "abc", "v": 10}},
    {"op": 11, "d": None},
    {"op": 0, "s": 2, "t": "MESSAGE_CREATE", "d": {"content": "héllo " * 300}},
]
RAW = [json.dumps(p).encode() for p in PAYLOADS]


def test_the_back_end_is_the_one_asked_for(backend: str) -> None:
    inflater = codec()._inflater
    assert isinstance(inflater, _zstd.ZstdStreamInflater)
    assert inflater._stdlib is (backend == "stdlib")


def test_real_capture_still_decodes_one_unended_frame(backend: str) -> None:
    # Discord's style (protocol 35): the frame never ends, one context throughout.
    assert codec().binary(HELLO_ZSTD, True) == HELLO_EXPECTED
    c = codec()
    for i in range(len(HELLO_ZSTD) - 1):
        assert c.binary(HELLO_ZSTD[i : i + 1], False) is None
    assert c.binary(HELLO_ZSTD[-1:], True) == HELLO_EXPECTED


@pytest.mark.parametrize("make", [frame, streamed_frame])
def test_a_frame_per_message(backend: str, make: object) -> None:
    # Regression: the second message raised "cannot use a decompressobj multiple times".
    c = codec()
    assert [c.binary(make(raw), True) for raw in RAW] == PAYLOADS  # type: ignore[operator]


def test_a_frame_per_message_split_at_every_byte(backend: str) -> None:
    frames = [frame(raw) for raw in RAW]
    for index, current in enumerate(frames):
        for cut in range(len(current) + 1):
            c = codec()
            for previous in frames[:index]:
                c.binary(previous, True)
            assert c.binary(current[:cut], False) is None
            assert c.binary(current[cut:], True) == PAYLOADS[index]


def test_a_frame_ends_inside_a_message_and_the_next_one_follows(backend: str) -> None:
    # One WebSocket message carries the end of frame 1 and the start of frame 2:
    # message 1 is '{"op":11,"d":' + 'null}', message 2 is '{"op":1}'.
    first = frame(b'{"op":11,')
    second = frame(b'"d":null}')
    c = codec()
    assert c.binary(first + second[:5], False) is None
    assert c.binary(second[5:], True) == {"op": 11, "d": None}
    assert c.binary(frame(b'{"op":1}'), True) == {"op": 1}


def test_a_message_made_of_several_frames(backend: str) -> None:
    pieces = [b'{"op":0,', b'"t":"X",', b'"s":3,', b'"d":[1,2,3]}']
    c = codec()
    assert c.binary(b"".join(frame(p) for p in pieces), True) == {
        "op": 0,
        "t": "X",
        "s": 3,
        "d": [1, 2, 3],
    }


def test_a_skippable_frame_between_messages_is_ignored(backend: str) -> None:
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip"
    c = codec()
    assert c.binary(frame(RAW[0]) + skippable, True) == PAYLOADS[0]
    assert c.binary(skippable + frame(RAW[2]), True) == PAYLOADS[2]


def test_frames_after_discord_style_flushes(backend: str) -> None:
    # A server may flush messages of one frame, then end it and start another.
    compressor = zstandard.ZstdCompressor().compressobj()
    first = compressor.compress(RAW[0]) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    second = compressor.compress(RAW[1]) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
    c = codec()
    assert c.binary(first, True) == PAYLOADS[0]
    assert c.binary(second, True) == PAYLOADS[1]
    assert c.binary(frame(RAW[2]), True) == PAYLOADS[2]


def test_garbage_after_a_frame_is_corrupt_data(backend: str) -> None:
    with pytest.raises(RemoteProtocolError, match="corrupt zstd-stream data"):
        codec().binary(frame(RAW[0]) + b"garbage that is no zstd frame", True)


def test_the_size_cap_is_exact_across_frames(backend: str) -> None:
    cap = 8192
    body = b'{"op":0,"d":"' + b"x" * (cap - 15) + b'"}'
    assert len(body) == cap
    halves = frame(body[:5000]) + frame(body[5000:])
    assert codec(cap).binary(halves, True)["op"] == 0
    over = frame(body[:5000]) + frame(body[5000:] + b" ")
    with pytest.raises(PayloadTooLarge, match="more than 8192 bytes"):
        codec(cap).binary(over, True)


def test_the_size_cap_counts_frames_in_separate_chunks(backend: str) -> None:
    c = codec(8192)
    assert c.binary(frame(b"[" + b"1," * 3000), False) is None
    with pytest.raises(PayloadTooLarge):
        c.binary(frame(b"1," * 1100 + b"1]"), True)


def test_a_bomb_in_the_second_frame_is_stopped_while_inflating(backend: str) -> None:
    import tracemalloc

    bomb = frame(b"0" * (64 * 2**20))
    assert len(bomb) < 64 * 1024
    c = codec(2**20)
    assert c.binary(frame(RAW[2]), True) == PAYLOADS[2]
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            c.binary(bomb, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=5),
    st.lists(st.booleans(), min_size=5, max_size=40),
    st.data(),
)
def test_any_framing_any_fragmentation(
    contents: list[bytes], frame_ends: list[bool], data: st.DataObject
) -> None:
    """Invariant: whatever the server's framing (frames ended after some flushes,
    anywhere in the stream) and however messages are cut into chunks, each
    message comes out whole, exactly once, when its last chunk arrives."""
    messages = [json.dumps({"d": c.hex()}).encode() for c in contents]
    wire: list[bytes] = []
    compressor = zstandard.ZstdCompressor().compressobj()
    for index, raw in enumerate(messages):
        cut = data.draw(st.integers(0, len(raw)))
        out = b""
        for part_index, part in enumerate((raw[:cut], raw[cut:])):
            end = frame_ends[(2 * index + part_index) % len(frame_ends)]
            mode = zstandard.COMPRESSOBJ_FLUSH_FINISH if end else zstandard.COMPRESSOBJ_FLUSH_BLOCK
            out += compressor.compress(part) + compressor.flush(mode)
            if end:
                compressor = zstandard.ZstdCompressor().compressobj()
        wire.append(out)
    for module in {None, _stdlib_zstd()}:
        inflater_codec = _with_backend(module)
        for payload, message in zip(messages, wire, strict=True):
            cuts = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=4)))
            chunks = [message[a:b] for a, b in zip([0, *cuts], [*cuts, len(message)], strict=True)]
            for chunk in chunks[:-1]:
                assert inflater_codec.binary(chunk, False) is None
            assert inflater_codec.binary(chunks[-1], True) == json.loads(payload)


def _with_backend(module: object | None) -> Codec:
    """A Codec whose zstd inflater uses ``module`` (None: zstandard)."""
    saved = _zstd._stdlib_zstd
    try:
        _zstd._stdlib_zstd = module
        return codec()
    finally:
        _zstd._stdlib_zstd = saved
