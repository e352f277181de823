"""Turning WebSocket messages into payload dicts and back.

Two independent layers, both per connection:

* transport compression (protocol I): ``zlib-stream`` (one inflate context per
  connection, messages end with the Z_SYNC_FLUSH suffix ``00 00 ff ff`` and
  may span several WebSocket messages), ``zstd-stream``, or none - in which
  case binary frames are either whole zlib payloads (``compress: true`` in
  IDENTIFY, protocol 36) or raw ETF;
* encoding: JSON (orjson when installed, else the stdlib) or ETF.

Every failure of zlib, zstd, JSON or ETF (including nesting deep enough to
exhaust the stack, and running out of memory while decoding) is turned into
:class:`RemoteProtocolError` here, so nothing deeper ever leaks out.

A message that fails (too large, corrupt) is dropped whole: what was
buffered of it is released, and its remaining chunks are discarded as they
arrive, unread, until the WebSocket message ends - the connection keeps
reading towards the close frame, and a gigabyte-long message must not cost a
gigabyte. After a failure inside a shared stream (``zlib-stream``,
``zstd-stream``) later messages cannot be inflated and are refused cheaply.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from .errors import ConfigurationError, InvalidCommand, PayloadTooLarge, RemoteProtocolError

__all__ = (
    "DEFAULT_MAX_PAYLOAD_SIZE",
    "MAX_SEND_SIZE",
    "ZLIB_SUFFIX",
    "Codec",
    "json_dumps",
    "json_loads",
)

ZLIB_SUFFIX = b"\x00\x00\xff\xff"
#: Default cap on one decompressed (or uncompressed) message: 16 MiB.
DEFAULT_MAX_PAYLOAD_SIZE = 16 * 1024 * 1024
#: Discord closes with 4002 on a sent payload over 4096 encoded bytes (protocol 42).
MAX_SEND_SIZE = 4096

#: What wsproto hands us (a bytearray) or a test does (bytes); both go to zlib as is.
Buffer = bytes | bytearray

TRANSPORT_COMPRESSIONS = ("zlib-stream", "zstd-stream")
ENCODINGS = ("json", "etf")

zlib: Any
try:  # the `zlib-ng` extra: the same API, inflates 1.2x (small) to 1.7x (burst) faster
    zlib = importlib.import_module("zlib_ng.zlib_ng")
except ImportError:  # pragma: no cover - exercised in environments without zlib-ng
    zlib = importlib.import_module("zlib")

_ZLIB_ERROR: type[Exception] = zlib.error

#: Decodes one JSON document (bytes or str). With orjson it *is* ``orjson.loads``:
#: a wrapper would cost a Python call per event on the hot path.
json_loads: Callable[[bytes | bytearray | str], Any]

try:  # the `speed` extra
    import orjson

    json_loads = orjson.loads

    def json_dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    # orjson takes UTF-8 bytes and refuses invalid UTF-8 as Python's codec does
    # (surrogates, overlong forms, a BOM); the stdlib guesses UTF-16/32 from bytes.
    _JSON_TAKES_UTF8 = True
    # orjson.JSONDecodeError is a ValueError, as is UnicodeDecodeError; orjson
    # has its own nesting limit (1024) and never raises RecursionError.
    _JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, RecursionError, MemoryError)
except ImportError:  # pragma: no cover - exercised in environments without orjson
    json_loads = json.loads
    _JSON_TAKES_UTF8 = False

    def json_dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    # json.JSONDecodeError and UnicodeDecodeError are ValueErrors (and so is
    # the int digit limit); the C scanner raises RecursionError on deep nesting.
    _JSON_ERRORS = (ValueError, RecursionError, MemoryError)


def _json_error(exc: Exception) -> RemoteProtocolError:
    """What a failed JSON decode becomes (the caller raises it ``from exc``)."""
    if isinstance(exc, RecursionError):
        detail = "nested too deeply"
    elif isinstance(exc, MemoryError):
        detail = "out of memory while decoding it"
    else:
        detail = str(exc)
    return RemoteProtocolError(f"malformed JSON from the gateway: {detail}")


class Inflater(Protocol):
    """Turns the binary WebSocket message stream into whole, uncompressed messages."""

    def feed(self, data: Buffer, message_finished: bool) -> Buffer | None:
        """Take one chunk; return a whole message's bytes once one is complete."""


class ZlibStreamInflater:
    """``compress=zlib-stream``: one inflate context for the connection (protocol 33, 34).

    Chunks are inflated as they arrive (no re-buffering of compressed bytes),
    and a gateway message is complete when the WebSocket message that carried
    its last bytes ends with the Z_SYNC_FLUSH suffix - possibly several
    WebSocket messages later (protocol 58).
    """

    __slots__ = ("_decompress", "_inflater", "_max_size", "_parts", "_size", "_tail")

    def __init__(self, max_size: int) -> None:
        self._inflater = zlib.decompressobj()
        self._decompress = self._inflater.decompress
        self._max_size = max_size
        self._parts: list[Buffer] = []
        self._size = 0
        self._tail = b""

    def message(self, data: Buffer) -> Buffer | None:
        """``feed(data, True)``, in one step when ``data`` holds one whole gateway
        message (almost always: Discord flushes after every message)."""
        if self._parts or data[-4:] != ZLIB_SUFFIX:
            return self.feed(data, True)
        # Nothing buffered: _size is 0. Output stops at max_size + 1 bytes, so
        # a longer one is what tells "too large" (unconsumed_tail is set then).
        max_size = self._max_size
        try:
            out: bytes = self._decompress(data, max_size + 1)
        except _ZLIB_ERROR as exc:
            raise RemoteProtocolError(f"corrupt zlib-stream data: {exc}") from exc
        if len(out) > max_size:
            raise PayloadTooLarge(f"zlib-stream message inflates to more than {max_size} bytes")
        self._tail = b""
        return out

    def feed(self, data: Buffer, message_finished: bool) -> Buffer | None:
        try:
            out: bytes = self._inflater.decompress(data, self._max_size + 1 - self._size)
        except _ZLIB_ERROR as exc:
            raise RemoteProtocolError(f"corrupt zlib-stream data: {exc}") from exc
        if self._inflater.unconsumed_tail or self._size + len(out) > self._max_size:
            raise PayloadTooLarge(
                f"zlib-stream message inflates to more than {self._max_size} bytes"
            )
        if message_finished and not self._parts and data[-4:] == ZLIB_SUFFIX:
            # Fast path: one WebSocket message held one whole gateway message.
            self._tail = b""
            return out
        if out:
            self._parts.append(out)
            self._size += len(out)
        self._tail = bytes((self._tail + data)[-4:] if len(data) < 4 else data[-4:])
        if not message_finished or self._tail != ZLIB_SUFFIX:
            return None
        message = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        self._tail = b""
        return message


class PlainBinaryInflater:
    """No transport compression: a binary message is a whole zlib payload
    (``compress: true`` in IDENTIFY, protocol 36) or, with ETF, raw ETF."""

    __slots__ = ("_max_size", "_parts", "_size")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._parts: list[Buffer] = []
        self._size = 0

    def feed(self, data: Buffer, message_finished: bool) -> Buffer | None:
        self._size += len(data)
        if self._size > self._max_size:
            raise PayloadTooLarge(f"binary message larger than {self._max_size} bytes")
        if not message_finished:
            self._parts.append(data)
            return None
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts.clear()
        self._size = 0
        if data[:1] != b"\x78":  # not a zlib header: raw ETF (the decoder judges it)
            return data
        inflater = zlib.decompressobj()
        try:
            out: bytes = inflater.decompress(data, self._max_size + 1)
        except _ZLIB_ERROR as exc:
            raise RemoteProtocolError(f"corrupt zlib payload: {exc}") from exc
        if inflater.unconsumed_tail or len(out) > self._max_size:
            raise PayloadTooLarge(f"zlib payload inflates to more than {self._max_size} bytes")
        if not inflater.eof:
            raise RemoteProtocolError("truncated zlib payload (compressed stream not finished)")
        return out


class LostStream:
    """Stands in for a stream inflater that failed: its context is gone (what
    it had half-inflated cannot be resumed), so every later message of this
    WebSocket is refused without being inflated."""

    __slots__ = ("_compress",)

    def __init__(self, compress: str) -> None:
        self._compress = compress

    def feed(self, data: Buffer, message_finished: bool) -> Buffer | None:
        raise RemoteProtocolError(
            f"cannot decode this {self._compress} message: an earlier message broke the "
            "compressed stream; the connection has to be opened again"
        )


def _new_inflater(compress: str | None, max_size: int) -> Inflater:
    if compress == "zlib-stream":
        return ZlibStreamInflater(max_size)
    if compress == "zstd-stream":
        from ._zstd import ZstdStreamInflater

        return ZstdStreamInflater(max_size)
    return PlainBinaryInflater(max_size)


class Codec:
    """Per-connection decoder/encoder. ``reset()`` on every new WebSocket (protocol 33).

    ``etf_snowflakes_as_str``: with ``encoding="etf"``, deliver snowflakes as
    ``str`` like JSON does instead of the ``int`` ETF carries (the rule is in
    :mod:`discord_gateway._etf`). No effect on JSON.
    """

    __slots__ = (
        "_discarding",
        "_inflate_message",
        "_inflater",
        "_max_terms",
        "_text_parts",
        "_text_size",
        "compress",
        "encoding",
        "etf_snowflakes_as_str",
        "max_size",
    )

    def __init__(
        self,
        encoding: str,
        compress: str | None,
        max_size: int,
        *,
        etf_snowflakes_as_str: bool = False,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ConfigurationError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")
        if compress is not None and compress not in TRANSPORT_COMPRESSIONS:
            raise ConfigurationError(
                f"transport compression must be one of {TRANSPORT_COMPRESSIONS} or None, "
                f"not {compress!r}"
            )
        # Bounds the Python objects one ETF message may decode to (_etf.max_terms).
        self._max_terms = 0
        if encoding == "etf":
            from . import _etf

            _etf.require()
            self._max_terms = _etf.max_terms(max_size)
        if compress == "zstd-stream":
            from . import _zstd

            _zstd.require()
        if max_size < 4096:
            raise ConfigurationError(f"max_payload_size must be at least 4096, not {max_size}")
        self.encoding = encoding
        self.compress = compress
        self.max_size = max_size
        self.etf_snowflakes_as_str = etf_snowflakes_as_str
        self._text_parts: list[str] = []
        self._text_size = 0
        # True from a failed chunk to the end of its WebSocket message: the rest
        # of that message is dropped unread (text and binary alike; the two
        # never interleave).
        self._discarding = False
        self._inflater: Inflater = _new_inflater(compress, max_size)
        self._inflate_message = self._message_inflater()

    def reset(self) -> None:
        """Fresh contexts for a new WebSocket: never reuse one across connections (protocol 58)."""
        self._text_parts = []
        self._text_size = 0
        self._discarding = False
        self._inflater = _new_inflater(self.compress, self.max_size)
        self._inflate_message = self._message_inflater()

    def _message_inflater(self) -> Callable[[Buffer], Buffer | None] | None:
        """The stream inflater's one-step ``message()`` for :meth:`binary_message`
        (JSON over zlib-stream or zstd-stream), else None: the general path."""
        inflater = self._inflater
        if self.encoding != "json":
            return None
        if isinstance(inflater, ZlibStreamInflater):
            return inflater.message
        if self.compress == "zstd-stream":
            from ._zstd import ZstdStreamInflater

            if isinstance(inflater, ZstdStreamInflater):
                return inflater.message
        return None

    def text(self, data: str, message_finished: bool) -> Any:
        """A text message chunk (always plain JSON). Returns the payload or None."""
        if message_finished and not self._text_parts and not self._discarding:
            if len(data) > self.max_size:
                raise PayloadTooLarge(f"text message larger than {self.max_size} characters")
            try:  # _loads_json, inlined: the common case, one call less per event
                return json_loads(data)
            except _JSON_ERRORS as exc:
                raise _json_error(exc) from exc
        if self._discarding:
            self._discarding = not message_finished
            return None
        self._text_size += len(data)
        if self._text_size > self.max_size:
            # Drop what we hold and the rest of this message as it comes.
            self._text_parts.clear()
            self._text_size = 0
            self._discarding = not message_finished
            raise PayloadTooLarge(f"text message larger than {self.max_size} characters")
        self._text_parts.append(data)
        if not message_finished:
            return None
        joined = "".join(self._text_parts)
        self._text_parts.clear()
        self._text_size = 0
        return self._loads_json(joined)

    def text_message(self, data: bytes) -> Any:
        """``text(data.decode("utf-8"), True)``: a whole text message from its
        bytes. Invalid UTF-8 raises :class:`UnicodeDecodeError`, for the caller
        to judge (the WebSocket closes with 1007)."""
        if (
            _JSON_TAKES_UTF8
            and len(data) <= self.max_size  # bytes: the cap counts characters
            and not self._text_parts
            and not self._discarding
        ):
            try:  # orjson checks the UTF-8 itself: no str to build and scan again
                return json_loads(data)
            except _JSON_ERRORS:
                pass  # invalid UTF-8 or JSON: judged below, as text() always has
        return self.text(data.decode("utf-8"), True)

    def binary_message(self, data: Buffer) -> Any:
        """``binary(data, True)``: a whole binary message, in fewer steps for the
        common cases (JSON over zlib-stream or zstd-stream)."""
        inflate = self._inflate_message
        if inflate is None or self._discarding:
            return self.binary(data, True)
        try:
            raw = inflate(data)
        except RemoteProtocolError:
            self._inflater_failed(True)
            raise
        if raw is None:  # zlib-stream: the gateway message goes on in the next one
            return None
        try:
            return json_loads(raw)
        except _JSON_ERRORS as exc:
            raise _json_error(exc) from exc

    def binary(self, data: Buffer, message_finished: bool) -> Any:
        """A binary message chunk. Returns the payload once a whole one has arrived."""
        if self._discarding:
            self._discarding = not message_finished
            return None
        try:
            raw = self._inflater.feed(data, message_finished)
        except RemoteProtocolError:
            self._inflater_failed(message_finished)
            raise
        if raw is None:
            return None
        if self.encoding == "json":
            return self._loads_json(raw)
        from . import _etf

        return _etf.loads(
            raw, stringify_snowflakes=self.etf_snowflakes_as_str, max_terms=self._max_terms
        )

    def _inflater_failed(self, message_finished: bool) -> None:
        # Whatever the inflater buffered goes with it. A shared stream cannot
        # go on past bytes it did not inflate; a plain inflater starts afresh.
        compress = self.compress
        self._inflater = (
            LostStream(compress) if compress is not None else PlainBinaryInflater(self.max_size)
        )
        self._inflate_message = None
        self._discarding = not message_finished

    @staticmethod
    def _loads_json(data: Buffer | str) -> Any:
        try:
            return json_loads(data)
        except _JSON_ERRORS as exc:
            raise _json_error(exc) from exc

    def dumps(self, payload: dict[str, Any]) -> tuple[str | bytes, int]:
        """Encode a payload to send: (``str`` for a JSON text frame or ``bytes`` for
        ETF, its size in encoded bytes - the size Discord's 4096-byte limit counts).

        A payload the encoding cannot hold (an object, an int over 64 bits for
        JSON, ...) raises :class:`InvalidCommand`; nothing is half-encoded.
        """
        try:
            if self.encoding == "json":
                raw = json_dumps(payload)
                return raw.decode(), len(raw)
            from . import _etf

            packed = _etf.dumps(payload)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise InvalidCommand(f"payload cannot be encoded as {self.encoding}: {exc}") from exc
        return packed, len(packed)
