"""The zstd-stream transport and the ETF encoding, through Codec."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway import _etf
from discord_gateway.codec import Codec
from discord_gateway.errors import InvalidCommand, PayloadTooLarge, RemoteProtocolError

FIXTURES = Path(__file__).parent / "fixtures"
CONSTRUCTED = FIXTURES / "constructed"
MAX = 16 * 2**20

# -- zstd-stream (protocol 35) -----------------------------------------------------------


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
    # protocol 35: a one-shot decoder fails on it; only a streaming context works.
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
    st.lists(
        st.dictionaries(st.text(max_size=5), st.text(max_size=300), max_size=5),
        min_size=1,
        max_size=6,
    ),
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


def test_zstd_stream_carries_etf_too() -> None:
    etf = (CONSTRUCTED / "guild_delete_dispatch.etf.bin").read_bytes()
    frame = zstd_messages([etf])[0]
    assert zstd_codec(encoding="etf").binary(frame, True)["d"]["id"] == 41771983444115456


# -- ETF (protocol 37, 39) ----------------------------------------------------------------------


def etf_codec(*, snowflakes_as_str: bool = False) -> Codec:
    return Codec("etf", None, MAX, etf_snowflakes_as_str=snowflakes_as_str)


def test_etf_hello_fixture_atoms_become_str_and_nil_none() -> None:
    payload = etf_codec().binary((CONSTRUCTED / "hello.etf.bin").read_bytes(), True)
    assert payload == {
        "t": None,
        "s": None,
        "op": 10,
        "d": {
            "heartbeat_interval": 41250,
            "_trace": ['["gateway-prd-us-east1-b-xxxx",{"micros":0.0}]'],
        },
    }
    assert all(type(key) is str for key in payload)


def test_etf_guild_delete_fixture_small_big_snowflake_is_int() -> None:
    payload = etf_codec().binary((CONSTRUCTED / "guild_delete_dispatch.etf.bin").read_bytes(), True)
    assert payload == {
        "t": "GUILD_DELETE",
        "s": 42,
        "op": 0,
        "d": {"id": 41771983444115456, "unavailable": True},
    }
    assert type(payload["t"]) is str  # not an atom subclass


def test_etf_client_heartbeat_fixture_is_what_we_send() -> None:
    expected = (CONSTRUCTED / "client_heartbeat.etf.bin").read_bytes()
    packed, size = etf_codec().dumps({"op": 1, "d": 251})
    assert packed == expected
    assert size == len(expected)
    assert etf_codec().binary(expected, True) == {"op": 1, "d": 251}


def _binary_keys_only(data: bytes) -> None:
    erlpack = pytest.importorskip("erlpack")

    def walk(term: Any) -> None:
        if isinstance(term, dict):
            for key, value in term.items():
                assert type(key) is bytes, f"non-binary key {key!r}"  # protocol 39: no atoms
                walk(value)
        elif isinstance(term, (list, tuple)):
            for item in term:
                walk(item)

    walk(erlpack.unpack(data))


def test_etf_dumps_writes_string_keys_only() -> None:
    packed, _ = etf_codec().dumps(
        {
            "op": 2,
            "d": {
                "token": "t",
                "properties": {"os": "linux"},
                "shard": (0, 1),
                "presence": {"since": None, "afk": False, "activities": []},
            },
        }
    )
    assert isinstance(packed, bytes)
    _binary_keys_only(packed)


def test_etf_dumps_sends_tuples_as_lists() -> None:
    # Regression: erlpack packs a tuple as an Erlang tuple; IDENTIFY's shard must be a list.
    packed, _ = etf_codec().dumps({"shard": (0, 2)})
    assert packed == b"\x83t\x00\x00\x00\x01m\x00\x00\x00\x05shardl\x00\x00\x00\x02a\x00a\x02j"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.text()
    | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_etf_round_trip(payload: dict[str, Any]) -> None:
    """Invariant: what we encode decodes to the same JSON-shaped value."""
    packed, size = etf_codec().dumps(payload)
    assert isinstance(packed, bytes) and size == len(packed)
    assert etf_codec().binary(packed, True) == payload


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_etf_matches_erlpack(payload: dict[str, Any]) -> None:
    """Invariant: byte-for-byte erlpack's encoding, and erlpack's output decodes to the input."""
    erlpack = pytest.importorskip("erlpack")
    try:
        reference = erlpack.pack(payload)
    except OverflowError:  # erlpack cannot pack ints of 2**64 and beyond
        return
    assert _etf.dumps(payload) == reference
    assert _etf.loads(reference) == payload


def test_etf_decodes_every_term_shape() -> None:
    def term(body: bytes) -> Any:
        return _etf.loads(b"\x83" + body)

    assert term(b"d\x00\x03abc") == "abc"  # ATOM_EXT
    assert term(b"s\x03abc") == "abc"  # SMALL_ATOM_EXT
    assert term(b"v\x00\x02\xc3\xa9") == "é"  # ATOM_UTF8_EXT
    assert term(b"w\x02\xc3\xa9") == "é"  # SMALL_ATOM_UTF8_EXT
    assert term(b"d\x00\x01\xe9") == "é"  # Latin-1 atom
    for tag in (b"d\x00", b"s", b"w"):
        assert term(tag + b"\x03nil") is None
        assert term(tag + b"\x04true") is True
        assert term(tag + b"\x05false") is False
    assert term(b"j") == []  # NIL_EXT is the empty list (protocol 39)
    assert term(b"k\x00\x03abc") == [97, 98, 99]  # STRING_EXT: a charlist
    assert term(b"h\x02a\x01a\x02") == [1, 2]  # tuples become lists
    assert term(b"i\x00\x00\x00\x01a\x01") == [1]
    assert term(b"b\xff\xff\xff\xff") == -1
    assert term(b"n\x08\x00" + b"\xff" * 8) == 2**64 - 1  # unsigned 64-bit (protocol 37)
    assert term(b"n\x01\x01\x05") == -5
    assert term(b"o\x00\x00\x00\x01\x00\x07") == 7  # LARGE_BIG_EXT
    assert term(b"F" + struct.pack(">d", 1.5)) == 1.5
    assert term(b"c" + b"1.50000000000000000000e+00".ljust(31, b"\x00")) == 1.5  # FLOAT_EXT
    assert term(b"m\x00\x00\x00\x01\xff") == "\udcff"  # bad UTF-8 kept, not lost
    assert term(b"t\x00\x00\x00\x01a\x01a\x02") == {1: 2}


@pytest.mark.parametrize("name", ["hello", "guild_delete_dispatch", "client_heartbeat"])
def test_etf_every_truncation_is_refused(name: str) -> None:
    # Regression: erlpack accepted data cut inside its last atom ('tru' for 'true').
    data = (CONSTRUCTED / f"{name}.etf.bin").read_bytes()
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError, match="malformed ETF"):
            etf_codec().binary(data[:cut], True)


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"\x83a\x01\x00", "1 trailing bytes"),
        (b"a\x01", "version byte 131"),
        (b"\x83\xff", "unsupported ETF tag 255"),
        (b"\x83l\x00\x00\x00\x01a\x01a\x02", "improper list"),
        (b"\x83t\x00\x00\x00\x01ja\x01", "unhashable"),
        (b"\x83P\x00\x00\x00\x02x\x9c", "compressed ETF"),
        (b"\x83w\x01\xff", "malformed ETF"),  # a UTF-8 atom that is not UTF-8
        (b"\x83m\xff\xff\xff\xff", "data ends|runs past the end"),
        (b"\x83" + b"l\x00\x00\x00\x01" * 100_000 + b"j" * 100_001, "nested too deeply"),
    ],
)
def test_malformed_etf_is_a_remote_protocol_error(data: bytes, rule: str) -> None:
    with pytest.raises(RemoteProtocolError, match=rule):
        etf_codec().binary(data, True)


def test_etf_snowflakes_as_str_fixture() -> None:
    data = (CONSTRUCTED / "guild_delete_dispatch.etf.bin").read_bytes()
    assert etf_codec(snowflakes_as_str=True).binary(data, True)["d"] == {
        "id": "41771983444115456",
        "unavailable": True,
    }
    assert etf_codec().binary(data, True)["d"]["id"] == 41771983444115456


def test_etf_snowflake_rule() -> None:
    payload = {
        "id": 1,
        "guild_id": 2**60,
        "user_ids": [3, 4],
        "roles": [5],
        "position": 6,
        "since": 1_700_000_000_000,  # a ms timestamp: large, but not a snowflake
        "flag_id": True,  # bools are never snowflakes
        "members": [{"user": {"id": 7, "username": "x"}, "roles": []}],
        "resolved": {"users": {8: {"id": 8}}},  # int map keys become str
        "sku_ids": ["9"],
        "channel_id": None,
    }
    packed = _etf.dumps(payload)
    assert _etf.loads(packed, stringify_snowflakes=True) == {
        "id": "1",
        "guild_id": str(2**60),
        "user_ids": ["3", "4"],
        "roles": ["5"],
        "position": 6,
        "since": 1_700_000_000_000,
        "flag_id": True,
        "members": [{"user": {"id": "7", "username": "x"}, "roles": []}],
        "resolved": {"users": {"8": {"id": "8"}}},
        "sku_ids": ["9"],
        "channel_id": None,
    }
    assert _etf.loads(packed) == payload


def test_codec_dumps_refuses_what_cannot_be_encoded() -> None:
    for encoding in ("json", "etf"):
        codec = Codec(encoding, None, MAX)
        with pytest.raises(InvalidCommand, match=f"cannot be encoded as {encoding}"):
            codec.dumps({"op": 1, "d": object()})
        with pytest.raises(InvalidCommand):
            codec.dumps({"op": 1, "d": "\udc80"})  # a lone surrogate is not UTF-8
    with pytest.raises(InvalidCommand):
        Codec("json", None, MAX).dumps({"op": 1, "d": 2**64})  # orjson: over 64 bits
    with pytest.raises(InvalidCommand):
        Codec("etf", None, MAX).dumps({"op": 1, "d": 2 ** (8 * 256)})


def test_etf_snowflake_rule_leaves_other_keys_alone() -> None:
    # float and None keys are neither snowflakes nor names
    packed = _etf.dumps({"d": {1.5: 1, None: 2}})
    assert _etf.loads(packed, stringify_snowflakes=True) == {"d": {1.5: 1, None: 2}}


def test_etf_dumps_bytes_as_binary() -> None:
    expected = b"\x83t\x00\x00\x00\x01m\x00\x00\x00\x01am\x00\x00\x00\x01\xff"
    assert _etf.dumps({"a": b"\xff"}) == expected


def test_codec_dumps_etf_size_is_bytes() -> None:
    packed, size = etf_codec().dumps({"op": 1, "d": "é" * 10})
    assert isinstance(packed, bytes) and size == len(packed)
    text, size = Codec("json", None, MAX).dumps({"op": 1, "d": "é" * 10})
    assert isinstance(text, str) and size == len(text.encode()) > len(text)


def test_zstd_messages_larger_than_64_kib_come_out_whole() -> None:
    # Regression: a zstandard stream_writer kept back output past its 64 KiB
    # write size, so a big GUILD_CREATE was cut off mid-JSON.
    import json as _json
    import os as _os

    import zstandard as _zstandard

    from discord_gateway.codec import Codec as _Codec

    compressor = _zstandard.ZstdCompressor().compressobj()
    codec = _Codec("json", "zstd-stream", 16 * 2**20)
    for size in (70_000, 400_000):
        message = {
            "op": 0,
            "s": 1,
            "t": "X",
            "d": [_os.urandom(8).hex() for _ in range(size // 20)],
        }
        raw = _json.dumps(message).encode()
        frame = compressor.compress(raw) + compressor.flush(_zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        assert codec.binary(bytearray(frame), True) == message
