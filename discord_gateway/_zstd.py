"""``compress=zstd-stream`` (protocol 35): one streaming decompressor per connection.

Discord's own gateway never ends a zstd frame: each WebSocket message is one
gateway message flushed from a single frame that lasts as long as the
connection, so a one-shot decoder would report "premature end" and we keep
one decompression context for the connection. Other Discord-compatible
servers end a frame after every message instead, and a frame may also end in
the middle of a WebSocket message with the next one's bytes following it.
Both are valid zstd (a stream is any number of concatenated frames), so when
a frame ends the bytes after it start a new frame in a new context - with
either back end, which both stop at the end of a frame.

Output is bounded while decompressing, not after: a few kilobytes of zstd can
expand to gigabytes, so the decompressor must stop as soon as a message
exceeds ``max_size`` (:class:`PayloadTooLarge`) instead of materialising it
first; the count runs across frame boundaries. With ``zstandard`` (the
``zstd`` extra) input that could expand past the room left is fed in pieces
small enough that none can (a ``stream_writer`` looked neater but keeps back
output beyond its write size: messages over 64 KiB came out truncated); with
the stdlib ``compression.zstd`` (Python >= 3.14), when present, it is
``max_length``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .errors import ConfigurationError, PayloadTooLarge, RemoteProtocolError

_stdlib_zstd: Any = None
zstandard: Any = None
try:  # pragma: no cover - depends on the Python version
    from compression import zstd as _stdlib_zstd  # type: ignore[import-not-found, no-redef]
except ImportError:
    with contextlib.suppress(ImportError):  # else require() says what to install
        import zstandard

__all__ = ("ZstdStreamInflater", "require")

#: The most zstd can expand one input byte: an RLE block is described by 4
#: bytes and stands for up to 128 KiB.
_MAX_RATIO = 1 << 15


def require() -> None:
    if _stdlib_zstd is None and zstandard is None:  # pragma: no cover - environment
        raise ConfigurationError(
            "compress='zstd-stream' needs zstandard: pip install 'discord-gateway[zstd]'"
        )


class _TooLarge(Exception):
    pass


class ZstdStreamInflater:
    """Feeds every binary chunk to one zstd context (a new one after each frame
    that ends); one gateway message per WebSocket message, which may arrive in
    several chunks (``message_finished``)."""

    __slots__ = (
        "_decompressor",
        "_errors",
        "_max_size",
        "_new_decompressor",
        "_parts",
        "_size",
        "_stdlib",
    )

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._parts: list[bytes] = []
        self._size = 0
        # Chosen once, when the connection is made: the module attributes say
        # which back end this Python has (the tests swap them).
        self._stdlib = _stdlib_zstd is not None
        if self._stdlib:
            self._new_decompressor: Any = _stdlib_zstd.ZstdDecompressor
            self._errors: tuple[type[Exception], ...] = (_stdlib_zstd.ZstdError,)
        else:
            self._new_decompressor = zstandard.ZstdDecompressor().decompressobj
            self._errors = (zstandard.ZstdError,)
        self._decompressor: Any = self._new_decompressor()

    def _add(self, out: bytes) -> None:
        if out:
            self._size += len(out)
            if self._size > self._max_size:
                raise _TooLarge
            self._parts.append(out)

    def _feed_stdlib(self, data: bytes | bytearray) -> None:
        decompressor = self._decompressor
        while True:
            if decompressor.eof:  # the last frame ended: these bytes start the next one
                decompressor = self._decompressor = self._new_decompressor()
            # One byte over the room left tells "too large" from "exactly full".
            self._add(decompressor.decompress(data, self._max_size - self._size + 1))
            if decompressor.eof:
                data = decompressor.unused_data
                if not data:
                    return
            elif decompressor.needs_input:
                return
            else:  # pragma: no cover - stopped at max_length: _add raised already
                raise _TooLarge

    def _feed_zstandard(self, data: bytes | bytearray) -> None:
        view, position, end = memoryview(data), 0, len(data)
        while position < end:
            decompressor = self._decompressor
            if decompressor.eof:  # the last frame ended: these bytes start the next one
                decompressor = self._decompressor = self._new_decompressor()
            room = self._max_size - self._size
            step = end - position
            if step * _MAX_RATIO > room:  # could overflow: small enough pieces cannot
                step = max(1, room // _MAX_RATIO)
            self._add(decompressor.decompress(view[position : position + step]))
            if decompressor.eof:  # zstandard stops at the end of a frame
                step -= len(decompressor.unused_data)
            position += step

    def message(self, data: bytes | bytearray) -> bytes | bytearray | None:
        """``feed(data, True)``, in one step in the common case: zstandard, nothing
        buffered, and ``data`` too short to inflate past the cap (any longer
        input is fed in pieces by ``_feed_zstandard``)."""
        decompressor = self._decompressor
        if (
            self._stdlib
            or self._parts
            or decompressor.eof
            or len(data) * _MAX_RATIO > self._max_size
        ):
            return self.feed(data, message_finished=True)
        try:
            out: bytes = decompressor.decompress(data)
        except self._errors as exc:
            raise RemoteProtocolError(f"corrupt zstd-stream data: {exc}") from exc
        if not decompressor.eof:
            return out
        # A frame ended inside the message: what follows starts the next frame.
        self._add(out)  # within the cap (the length check above)
        return self.feed(decompressor.unused_data, message_finished=True)

    def feed(self, data: bytes | bytearray, message_finished: bool) -> bytes | bytearray | None:
        try:
            if self._stdlib:  # Python >= 3.14 (tested with backports.zstd)
                self._feed_stdlib(data)
            else:
                self._feed_zstandard(data)
        except _TooLarge:
            raise PayloadTooLarge(
                f"zstd-stream message inflates to more than {self._max_size} bytes"
            ) from None
        except self._errors as exc:
            raise RemoteProtocolError(f"corrupt zstd-stream data: {exc}") from exc
        if not message_finished:
            return None
        parts = self._parts
        message = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        self._size = 0
        return message
