"""``compress=zstd-stream`` (spec 35): one streaming decompressor per connection.

Each WebSocket message is one gateway message and does *not* end a zstd
frame, so a one-shot decoder would report "premature end": we keep one
decompression context for the connection and feed it every message.

Output is bounded while decompressing, not after: a few kilobytes of zstd can
expand to gigabytes, so the decompressor must stop as soon as a message
exceeds ``max_size`` (:class:`PayloadTooLarge`) instead of materialising it
first. With ``zstandard`` (the ``zstd`` extra) input that could expand past
the room left is fed in pieces small enough that none can (a ``stream_writer``
looked neater but keeps back output beyond its write size: messages over
64 KiB came out truncated); with the stdlib ``compression.zstd`` (Python >=
3.14), when present, it is ``max_length``.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError, PayloadTooLarge, RemoteProtocolError

_ZSTD_ERRORS: tuple[type[Exception], ...]
_stdlib_zstd: Any = None
zstandard: Any = None
try:  # pragma: no cover - depends on the Python version
    from compression import zstd as _stdlib_zstd  # type: ignore[import-not-found, no-redef]

    _ZSTD_ERRORS = (_stdlib_zstd.ZstdError,)
except ImportError:
    try:
        import zstandard

        _ZSTD_ERRORS = (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - depends on the environment
        _ZSTD_ERRORS = ()

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


class _CappedSink:
    """Collects decompressed chunks; raises once they exceed the cap."""

    __slots__ = ("cap", "parts", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.cap:
            raise _TooLarge
        if data:
            self.parts.append(data)
        return len(data)


class ZstdStreamInflater:
    """Feeds every binary chunk to one zstd context; one gateway message per
    WebSocket message, which may arrive in several chunks (``message_finished``)."""

    __slots__ = ("_decompressor", "_max_size", "_sink")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._sink = _CappedSink(max_size)
        if _stdlib_zstd is not None:  # pragma: no cover - Python >= 3.14
            self._decompressor = _stdlib_zstd.ZstdDecompressor()
        else:
            self._decompressor = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes | bytearray, message_finished: bool) -> bytes | bytearray | None:
        sink = self._sink
        try:
            if _stdlib_zstd is not None:  # pragma: no cover - Python >= 3.14
                room = sink.cap - sink.size
                out = self._decompressor.decompress(data, room + 1)
                sink.write(out)
                if not self._decompressor.needs_input and not self._decompressor.eof:
                    raise _TooLarge
            else:
                decompress = self._decompressor.decompress
                if len(data) * _MAX_RATIO <= sink.cap - sink.size:
                    sink.write(decompress(data))  # the common case: can't overflow
                else:
                    view, position = memoryview(data), 0
                    while position < len(view):
                        step = max(1, (sink.cap - sink.size) // _MAX_RATIO)
                        sink.write(decompress(view[position : position + step]))
                        position += step
        except _TooLarge:
            raise PayloadTooLarge(
                f"zstd-stream message inflates to more than {self._max_size} bytes"
            ) from None
        except _ZSTD_ERRORS as exc:
            raise RemoteProtocolError(f"corrupt zstd-stream data: {exc}") from exc
        if not message_finished:
            return None
        message = sink.parts[0] if len(sink.parts) == 1 else b"".join(sink.parts)
        sink.parts = []
        sink.size = 0
        return message
