"""The zstd-stream transport and the ETF encoding, through Codec."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway.codec import Codec
from discord_gateway.errors import PayloadTooLarge, RemoteProtocolError

FIXTURES = Path(__file__).parent / "fixtures"
CONSTRUCTED = FIXTURES / "constructed"
MAX = 16 * 2**20

# -- zstd-stream (spec 35) -----------------------------------------------------------


def zstd_codec(max_size: int = MAX, encoding: str = "json") -> Codec:
    return Codec(encoding, "zstd-stream", max_size)


def zstd_messages(payloads: list[bytes]) -> list[bytes]:
    """Compress like Discord: one context, each message flushed, the frame never ended."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return [
        compressor.compress(p) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        for p in payloads
    ]


HELLO_ZSTD = (FIXTURES / "hello.zstd-stream.bin").read_bytes()
HELLO_EXPECTED = json.loads((FIXTURES / "hello.zstd-stream.expected.json").read_text())


def test_real_zstd_capture_decodes() -> None:
    assert zstd_codec().binary(HELLO_ZSTD, True) == HELLO_EXPECTED
    assert HELLO_EXPECTED["d"]["heartbeat_interval"] == 41250


def test_real_zstd_capture_is_not_a_finished_frame() -> None:
    # spec 35: a one-shot decoder fails on it; only a streaming context works.
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompress(HELLO_ZSTD)


@pytest.mark.parametrize("cut", range(1, len(HELLO_ZSTD)))
def test_real_zstd_capture_split_at_every_byte(cut: int) -> None:
    codec = zstd_codec()
    assert codec.binary(HELLO_ZSTD[:cut], False) is None
    assert codec.binary(HELLO_ZSTD[cut:], True) == HELLO_EXPECTED


def test_real_zstd_capture_one_byte_at_a_time() -> None:
    codec = zstd_codec()
    for i in range(len(HELLO_ZSTD) - 1):
        assert codec.binary(HELLO_ZSTD[i : i + 1], False) is None
    assert codec.binary(HELLO_ZSTD[-1:], True) == HELLO_EXPECTED


PAYLOADS = [
    {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None},
    {"op": 11, "d": None},
    {"op": 0, "s": 1, "t": "READY", "d": {"session_id": "abc", "v": 10, "guilds": []}},
    {"op": 0, "s": 2, "t": "MESSAGE_CREATE", "d": {"content": "héllo " * 200, "id": "1"}},
    {"op": 1, "d": 2},
]


def test_several_messages_through_one_zstd_context() -> None:
    frames = zstd_messages([json.dumps(p).encode() for p in PAYLOADS])
    codec = zstd_codec()
    assert [codec.binary(f, True) for f in frames] == PAYLOADS
    # later messages reference the earlier window: a fresh context cannot read them
    with pytest.raises(RemoteProtocolError, match="corrupt zstd-stream data"):
        zstd_codec().binary(frames[3], True)


def test_every_message_split_at_every_byte_boundary() -> None:
    frames = zstd_messages([json.dumps(p).encode() for p in PAYLOADS])
    for index, frame in enumerate(frames):
        for cut in range(len(frame) + 1):
            codec = zstd_codec()
            for previous in frames[:index]:
                codec.binary(previous, True)
            assert codec.binary(frame[:cut], False) is None
            assert codec.binary(frame[cut:], True) == PAYLOADS[index]


@settings(max_examples=100)
@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=300), max_size=5),
             min_size=1, max_size=6),
    st.data(),
)
def test_zstd_stream_any_fragmentation(payloads: list[dict[str, str]], data: st.DataObject) -> None:
    """Invariant: however each WebSocket message is fragmented, every gateway
    message comes out whole, exactly once, when its last fragment arrives."""
    frames = zstd_messages([json.dumps(p).encode() for p in payloads])
    codec = zstd_codec()
    for payload, frame in zip(payloads, frames, strict=True):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(frame)), max_size=4)))
        pieces = [frame[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)]
        for piece in pieces[:-1]:
            assert codec.binary(piece, False) is None
        assert codec.binary(pieces[-1], True) == payload


def test_zstd_message_finished_decides_the_boundary() -> None:
    # A whole JSON document in an unfinished WebSocket message is not yet a message.
    frames = zstd_messages([b'{"op":11', b',"d":null}'])
    codec = zstd_codec()
    assert codec.binary(frames[0], False) is None
    assert codec.binary(frames[1], True) == {"op": 11, "d": None}


@pytest.mark.parametrize(
    "garbage",
    [b"not zstd at all", HELLO_ZSTD[:4] + b"\xff" * 40, HELLO_ZSTD[:20] + b"\xff" * 97],
)
def test_corrupt_zstd_is_a_remote_protocol_error(garbage: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="corrupt zstd-stream data"):
        zstd_codec().binary(garbage, True)


def test_truncated_zstd_message_is_a_remote_protocol_error() -> None:
    # the decompressor waits for the rest; the JSON it has so far is incomplete
    with pytest.raises(RemoteProtocolError, match="malformed JSON"):
        zstd_codec().binary(HELLO_ZSTD[:-5], True)


def test_zstd_size_cap_is_exact() -> None:
    cap = 8192
    body = b'{"op":0,"d":"' + b"x" * (cap - 15) + b'"}'
    assert len(body) == cap
    assert zstd_codec(cap).binary(zstd_messages([body])[0], True)["op"] == 0
    with pytest.raises(PayloadTooLarge, match="more than 8192 bytes"):
        zstd_codec(cap).binary(zstd_messages([body + b" "])[0], True)


def test_zstd_size_cap_counts_across_fragments() -> None:
    frame = zstd_messages([b'{"d":"' + b"y" * 10_000 + b'"}'])[0]
    codec = zstd_codec(8192)
    with pytest.raises(PayloadTooLarge):
        for i in range(0, len(frame), 3):
            codec.binary(frame[i : i + 3], False)


def test_zstd_bomb_is_refused_without_inflating_it() -> None:
    # Regression: the first version decompressed the whole message before
    # checking its size, so 64 MiB of zeros were materialised for a 1 MiB cap.
    bomb = zstd_messages([b"0" * (64 * 2**20)])[0]
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            zstd_codec(2**20).binary(bomb, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_zstd_reset_starts_a_fresh_context() -> None:
    frames = zstd_messages([b'{"op":1}', b'{"op":2}'])
    codec = zstd_codec()
    assert codec.binary(frames[0], True) == {"op": 1}
    codec.reset()
    with pytest.raises(RemoteProtocolError):
        codec.binary(frames[1], True)
    codec.reset()
    assert codec.binary(zstd_messages([b'{"op":3}'])[0], True) == {"op": 3}
