"""``compress=zstd-stream`` (spec 35): one streaming decompressor per connection.

Each WebSocket message is one gateway message and does *not* end a zstd
frame, so a one-shot decoder would report "premature end": we keep one
decompression context for the connection and feed it every message.

Output is bounded while decompressing, not after: a few kilobytes of zstd can
expand to gigabytes, so the decompressor must stop as soon as a message
exceeds ``max_size`` (:class:`PayloadTooLarge`) instead of materialising it
first. With ``zstandard`` (the ``zstd`` extra) that is a ``stream_writer``
whose sink refuses to grow past the cap; with the stdlib ``compression.zstd``
(Python >= 3.14), when present, it is ``max_length``.
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

#: Output chunk size of the zstandard stream writer: the most a message can
#: overshoot ``max_size`` by in memory before it is refused.
_WRITE_SIZE = 64 * 1024


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
        self.parts.append(bytes(data))
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
            self._decompressor = zstandard.ZstdDecompressor().stream_writer(
                self._sink, write_size=_WRITE_SIZE, write_return_read=True
            )

    def feed(self, data: bytes, message_finished: bool) -> bytes | None:
        sink = self._sink
        try:
            if _stdlib_zstd is not None:  # pragma: no cover - Python >= 3.14
                room = sink.cap - sink.size
                out = self._decompressor.decompress(data, room + 1)
                sink.write(out)
                if not self._decompressor.needs_input and not self._decompressor.eof:
                    raise _TooLarge
            else:
                self._decompressor.write(data)
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
