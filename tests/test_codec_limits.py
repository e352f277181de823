"""The decompressed-size cap for every frame type, what a failed message costs,
and the ETF term cap (memory amplification)."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zstandard

from discord_gateway import _etf
from discord_gateway.codec import ZLIB_SUFFIX, Codec
from discord_gateway.errors import PayloadTooLarge, RemoteProtocolError

CAP = 2**20  # 1 MiB: a small max_payload_size
CHUNK = 64 * 1024
TOTAL = 64 * 2**20  # the oversized message: 64 MiB, in 64 KiB chunks


def peak_while(feed: Callable[[], Any]) -> int:
    """tracemalloc's peak (bytes) while ``feed`` runs."""
    tracemalloc.start()
    try:
        feed()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def feed_all(send: Callable[[Any, bool], Any], chunks: Iterator[Any]) -> list[str]:
    """Feed every chunk (the last one ends the message); return the errors raised."""
    errors: list[str] = []
    pending = next(chunks)
    for chunk in chunks:
        try:
            assert send(pending, False) is None
        except RemoteProtocolError as exc:
            errors.append(type(exc).__name__)
        pending = chunk
    try:
        assert send(pending, True) is None
    except RemoteProtocolError as exc:
        errors.append(type(exc).__name__)
    return errors


# -- a message over the cap: dropped whole, its other chunks never buffered ----------


def test_huge_text_message_is_discarded_without_buffering() -> None:
    # Regression: each chunk after the first PayloadTooLarge was appended again,
    # so a 1 GiB text frame read while closing cost 1 GiB.
    codec = Codec("json", None, CAP)
    chunk = "x" * CHUNK
    errors: list[str] = []

    def feed() -> None:
        errors.extend(feed_all(codec.text, (chunk for _ in range(TOTAL // CHUNK))))

    peak = peak_while(feed)
    assert errors == ["PayloadTooLarge"]  # once, then the rest is dropped unread
    assert peak < 3 * CAP
    assert codec._text_parts == [] and codec._text_size == 0
    assert codec.text('{"op":11}', True) == {"op": 11}
    assert codec.text('{"op":', False) is None  # and chunked messages still join
    assert codec.text("1}", True) == {"op": 1}


def test_text_over_the_cap_in_its_last_chunk_leaves_nothing_behind() -> None:
    codec = Codec("json", None, 4096)
    assert codec.text("[" + "1," * 1500, False) is None
    with pytest.raises(PayloadTooLarge):
        codec.text("1," * 1500 + "1]", True)
    assert codec.text('{"op":11}', True) == {"op": 11}


def test_huge_plain_binary_message_is_discarded_without_buffering() -> None:
    codec = Codec("etf", None, CAP)
    chunk = b"\x83" + b"j" * (CHUNK - 1)
    errors: list[str] = []

    def feed() -> None:
        errors.extend(feed_all(codec.binary, (chunk for _ in range(TOTAL // CHUNK))))

    assert peak_while(feed) < 3 * CAP
    assert errors == ["PayloadTooLarge"]
    assert codec.binary(_etf.dumps({"op": 11}), True) == {"op": 11}


def test_plain_binary_over_the_cap_in_one_chunk_does_not_poison_the_next() -> None:
    # Regression: the size of a refused message was never reset, so every
    # later binary message was "too large" too.
    codec = Codec("json", None, 4096)
    with pytest.raises(PayloadTooLarge):
        codec.binary(b"x" * 5000, True)
    assert codec.binary(b'{"op":11}', True) == {"op": 11}


def _zlib_stream_chunks() -> Iterator[bytes]:
    """A zlib-stream message inflating to 64 MiB, in 64 KiB of raw output each."""
    deflate = zlib.compressobj()
    raw = b"y" * CHUNK
    for _ in range(TOTAL // CHUNK - 1):
        yield deflate.compress(raw) + deflate.flush(zlib.Z_FULL_FLUSH)
    yield deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)


def _zstd_stream_chunks() -> Iterator[bytes]:
    compressor = zstandard.ZstdCompressor().compressobj()
    raw = b"y" * CHUNK
    for _ in range(TOTAL // CHUNK):
        yield compressor.compress(raw) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.mark.parametrize(
    ("compress", "chunks"),
    [("zlib-stream", _zlib_stream_chunks), ("zstd-stream", _zstd_stream_chunks)],
)
def test_huge_stream_message_is_discarded_and_the_stream_refused_after(
    compress: str, chunks: Callable[[], Iterator[bytes]]
) -> None:
    codec = Codec("json", compress, CAP)
    errors: list[str] = []

    def feed() -> None:
        errors.extend(feed_all(codec.binary, chunks()))

    assert peak_while(feed) < 3 * CAP
    assert errors == ["PayloadTooLarge"]
    # The shared context stopped inside that message: what follows cannot be
    # inflated, and is refused without trying (once per message).
    with pytest.raises(RemoteProtocolError, match="broke the compressed stream"):
        codec.binary(b"\x00" * 10, False)
    assert codec.binary(b"\x00" * 10, True) is None  # the rest of that message
    with pytest.raises(RemoteProtocolError, match="broke the compressed stream"):
        codec.binary(b"\x00" * 10, True)
    codec.reset()  # a new WebSocket: a new context
    fresh = zlib.compressobj() if compress == "zlib-stream" else None
    if fresh is not None:
        message = fresh.compress(b'{"op":11}') + fresh.flush(zlib.Z_SYNC_FLUSH)
        assert message.endswith(ZLIB_SUFFIX)
    else:
        message = zstandard.ZstdCompressor().compress(b'{"op":11}')
    assert codec.binary(message, True) == {"op": 11}


def test_corrupt_chunk_drops_the_rest_of_its_message() -> None:
    codec = Codec("json", "zlib-stream", CAP)
    with pytest.raises(RemoteProtocolError, match="corrupt zlib-stream"):
        codec.binary(b"not zlib", False)
    for _ in range(100):
        assert codec.binary(b"more of it", False) is None
    assert codec.binary(b"end", True) is None
    assert codec._discarding is False


def test_reset_forgets_a_discard_in_progress() -> None:
    codec = Codec("json", None, 4096)
    with pytest.raises(PayloadTooLarge):
        codec.text("x" * 5000, False)
    codec.reset()
    assert codec.text('{"op":11}', True) == {"op": 11}


# -- ETF: the term cap (memory amplification) ---------------------------------------


def etf_list(count: int, element: bytes = b"j") -> bytes:
    return b"\x83l" + struct.pack(">I", count) + element * count + b"j"


def test_term_cap_follows_max_payload_size() -> None:
    assert _etf.max_terms(16 * 2**20) == 2**21
    assert _etf.max_terms(4096) == _etf.MIN_TERMS


def test_term_cap_is_exact() -> None:
    limit = _etf.max_terms(CAP)
    codec = Codec("etf", None, CAP)
    assert len(codec.binary(etf_list(limit - 1), True)) == limit - 1  # + the outer list
    with pytest.raises(PayloadTooLarge, match=f"more than {limit} terms"):
        codec.binary(etf_list(limit), True)
    assert codec.binary(_etf.dumps({"op": 11}), True) == {"op": 11}


@pytest.mark.parametrize(
    ("element", "terms"),
    [
        (b"j", 1),  # NIL_EXT: an empty list per byte
        (b"t\x00\x00\x00\x00", 1),  # an empty map
        (b"h\x00", 1),  # an empty tuple (a list)
        (b"h\x01j", 2),  # a tuple counts its elements
        (b"t\x00\x00\x00\x01a\x00j", 3),  # a map counts its keys and values
        (b"k\x00\x02ab", 3),  # STRING_EXT (a list of ints) counts its characters
        (b"l\x00\x00\x00\x02a\x01a\x02j", 3),  # a nested list
    ],
)
def test_term_cap_counts_every_kind_of_container(element: bytes, terms: int) -> None:
    limit = 1000
    fits = (limit - 1) // terms  # the outer list is a term too
    assert len(_etf.loads(etf_list(fits, element), max_terms=limit)) == fits
    with pytest.raises(PayloadTooLarge, match=f"more than {limit} terms"):
        _etf.loads(etf_list(fits + 1, element), max_terms=limit)


def test_nil_amplification_is_refused_cheaply() -> None:
    # Regression: 16 KiB of zlib inflating to 16 MiB of NIL_EXT decoded to 16M
    # lists (+1.2 GB). Now it is refused, the largest such message that fits
    # the cap costs a small multiple of max_payload_size.
    size = 16 * 2**20
    bomb = zlib.compress(etf_list(size - 7), 9)
    assert len(bomb) < 17 * 1024
    codec = Codec("etf", None, size)

    def refused() -> None:
        with pytest.raises(PayloadTooLarge):
            codec.binary(bomb, True)

    assert peak_while(refused) < 3 * size
    limit = _etf.max_terms(CAP)
    small_codec = Codec("etf", None, CAP)
    largest = zlib.compress(etf_list(limit - 1), 9)
    peak = peak_while(lambda: small_codec.binary(largest, True))
    assert peak < 80 * limit  # about 64 bytes per empty list; 10 MiB for this cap


def test_a_guild_create_sized_message_is_far_below_the_cap() -> None:
    guild = {
        "op": 0,
        "s": 2,
        "t": "GUILD_CREATE",
        "d": {
            "id": 2**60,
            "members": [
                {"user": {"id": 2**60 + i, "username": f"user{i}", "bot": False}, "roles": [1, 2]}
                for i in range(20_000)
            ],
        },
    }
    packed = _etf.dumps(guild)
    assert len(packed) > 1_000_000
    assert _etf.loads(packed, max_terms=_etf.max_terms(16 * 2**20)) == guild
