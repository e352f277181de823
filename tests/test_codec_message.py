"""``Codec.binary_message(data)``, the one-step path the fast path takes for a
whole binary message, must be ``binary(data, True)`` exactly: the same payloads,
the same errors, the same state afterwards (a broken stream stays broken, a
malformed JSON message does not break it), for every transport compression and
both zstd back ends.

Two codecs get the same byte stream, one through each method; hypothesis picks
the messages: plain ones, a gateway message spread over two WebSocket messages
(zlib-stream), zstd frames ending inside a message, input long enough that zstd
must be fed in pieces, messages over the cap, corrupt bytes and text that is
not JSON.
"""

from __future__ import annotations

import importlib
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discord_gateway import _zstd
from discord_gateway.codec import Codec
from discord_gateway.errors import RemoteProtocolError

MAX = 16 * 2**20
SMALL_MAX = 4096  # over the cap: a message that inflates past it

KINDS = ("small", "long", "split", "frame-ends-inside", "too-large", "corrupt", "not-json")


@pytest.fixture(params=["zstandard", "stdlib"])
def zstd_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "stdlib":
        for name in ("compression.zstd", "backports.zstd"):
            try:
                module = importlib.import_module(name)
                break
            except ImportError:
                continue
        else:  # pragma: no cover - depends on the environment
            pytest.skip("needs Python 3.14+ or backports.zstd (in the test extra)")
        monkeypatch.setattr(_zstd, "_stdlib_zstd", module)
    else:
        if _zstd.zstandard is None:  # pragma: no cover - Python 3.14+ without zstandard
            monkeypatch.setattr(_zstd, "zstandard", zstandard)
        monkeypatch.setattr(_zstd, "_stdlib_zstd", None)
    yield request.param


def _payload(index: int, size: int) -> bytes:
    # Random-looking text so that zstd cannot squeeze "long" below 512 bytes.
    filler = "".join(chr(33 + (index * 7919 + i * 104729) % 90) for i in range(size))
    filler = filler.replace("\\", "/").replace('"', "'")
    return json.dumps({"op": 0, "s": index, "t": "X", "d": {"f": filler}}).encode()


def _raw(kind: str, index: int) -> bytes:
    """The uncompressed gateway message for one of the message ``kinds``."""
    return {
        "small": _payload(index, 20),
        "long": _payload(index, 3000),
        "split": _payload(index, 200),
        "frame-ends-inside": _payload(index, 50),
        "too-large": _payload(index, 2 * SMALL_MAX),
        "not-json": b"{not json",
    }[kind]


def _zlib_stream(kinds: list[str]) -> list[bytes]:
    """The WebSocket messages a zlib-stream server would send for ``kinds``."""
    deflate = zlib.compressobj()
    messages: list[bytes] = []
    for index, kind in enumerate(kinds):
        if kind == "corrupt":
            messages.append(b"\x00\x01garbage\x00\x00\xff\xff")
            continue
        raw = _raw(kind, index)
        if kind == "split":  # one gateway message over two WebSocket messages
            whole = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
            messages += [whole[: len(whole) // 2], whole[len(whole) // 2 :]]
        else:
            messages.append(deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH))
    return messages


def _zstd_stream(kinds: list[str]) -> list[bytes]:
    """The WebSocket messages a zstd-stream server would send for ``kinds``."""
    compressor = zstandard.ZstdCompressor().compressobj()
    messages: list[bytes] = []
    for index, kind in enumerate(kinds):
        if kind == "corrupt":
            messages.append(b"\xff\xfe\xfd not zstd at all")
            continue
        raw = _raw(kind, index)
        if kind == "frame-ends-inside":
            # This message ends the stream's frame; a new frame follows in it.
            data = compressor.compress(raw[:20])
            data += compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
            compressor = zstandard.ZstdCompressor().compressobj()
            data += compressor.compress(raw[20:])
            data += compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            messages.append(data)
        else:
            data = compressor.compress(raw)
            messages.append(data + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    return messages


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except RemoteProtocolError as exc:
        return type(exc).__name__, str(exc)


def _same_both_ways(compress: str, messages: list[bytes], max_size: int) -> None:
    general = Codec("json", compress, max_size)
    one_step = Codec("json", compress, max_size)
    for data in messages:
        expected = _outcome(lambda: general.binary(data, True))  # noqa: B023
        assert _outcome(lambda: one_step.binary_message(data)) == expected  # noqa: B023
        assert type(one_step._inflater) is type(general._inflater)
        assert one_step._discarding is general._discarding


kinds = st.lists(st.sampled_from(KINDS), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(kinds=kinds, small_cap=st.booleans())
def test_zlib_stream_binary_message_is_binary_finished(kinds: list[str], small_cap: bool) -> None:
    _same_both_ways("zlib-stream", _zlib_stream(kinds), SMALL_MAX if small_cap else MAX)


# The fixture only chooses the back end: the same for every example.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kinds=kinds, small_cap=st.booleans())
def test_zstd_stream_binary_message_is_binary_finished(
    zstd_backend: str, kinds: list[str], small_cap: bool
) -> None:
    _same_both_ways("zstd-stream", _zstd_stream(kinds), SMALL_MAX if small_cap else MAX)


def test_the_one_step_paths_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # The common cases must not fall back to binary(): a test that the two
    # methods agree would pass just as well if binary_message() only called it.
    def general(*args: Any) -> Any:
        raise AssertionError("binary() called")

    monkeypatch.setattr(_zstd, "_stdlib_zstd", None)
    monkeypatch.setattr(Codec, "binary", general)
    for compress, messages in (
        ("zlib-stream", _zlib_stream(["small"])),
        ("zstd-stream", _zstd_stream(["small"])),
    ):
        assert Codec("json", compress, MAX).binary_message(messages[0])["s"] == 0


def test_uncompressed_binary_messages_take_the_general_path() -> None:
    plain = Codec("json", None, MAX)
    assert plain.binary_message(zlib.compress(b'{"op":11}')) == {"op": 11}
    assert Codec("json", None, MAX)._inflate_message is None


def _text_outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except UnicodeDecodeError:
        return "invalid UTF-8", None
    except RemoteProtocolError as exc:
        return type(exc).__name__, str(exc)


json_bytes = st.one_of(
    st.binary(max_size=40),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    ).map(lambda value: json.dumps({"op": 0, "d": value}, ensure_ascii=False).encode()),
)
# Bytes Python's UTF-8 codec refuses, that a lax decoder might take.
ODD_UTF8 = [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xef\xbb\xbf", b"\xff", b"\x80"]


@settings(max_examples=300, deadline=None)
@given(
    data=json_bytes,
    odd=st.sampled_from([b"", *ODD_UTF8]),
    where=st.integers(min_value=0, max_value=64),
)
def test_text_message_is_text_of_the_decoded_bytes(data: bytes, odd: bytes, where: int) -> None:
    # The one-step path hands the bytes to orjson as they are: it must accept
    # exactly what text(data.decode("utf-8"), True) accepts, decode it the same,
    # and refuse the same way (invalid UTF-8 is the caller's: wsproto closes 1007).
    data = data[:where] + odd + data[where:]
    expected = _text_outcome(lambda: Codec("json", None, MAX).text(data.decode("utf-8"), True))
    assert _text_outcome(lambda: Codec("json", None, MAX).text_message(data)) == expected


def test_a_text_message_over_the_cap_is_refused_as_text_refuses_it() -> None:
    # The cap counts characters, as text() does: 4,000 two-byte characters (over
    # 8,000 bytes) fit a 4,096 cap; 4,096 characters and more do not.
    fits = json.dumps({"d": "é" * 4000}, ensure_ascii=False).encode()
    assert len(fits) > SMALL_MAX
    assert Codec("json", None, SMALL_MAX).text_message(fits) == {"d": "é" * 4000}
    over = json.dumps({"d": "x" * SMALL_MAX}).encode()
    with pytest.raises(RemoteProtocolError, match="larger than 4096 characters"):
        Codec("json", None, SMALL_MAX).text_message(over)
