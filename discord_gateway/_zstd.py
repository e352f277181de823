"""``compress=zstd-stream`` (spec 35): one streaming decompressor per connection.

Each WebSocket message is one gateway message and does *not* end a zstd
frame, so a one-shot decoder would report "premature end": we keep one
decompression context for the connection and feed it every message.
Uses the stdlib ``compression.zstd`` (Python >= 3.14) when present, else
``zstandard`` (the ``zstd`` extra).
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError, PayloadTooLarge, RemoteProtocolError

_new_decompressor: Any
_ZSTD_ERRORS: tuple[type[Exception], ...]
try:  # pragma: no cover - depends on the Python version
    from compression import zstd as _stdlib_zstd  # type: ignore[import-not-found]

    _new_decompressor = _stdlib_zstd.ZstdDecompressor
    _ZSTD_ERRORS = (_stdlib_zstd.ZstdError,)
except ImportError:
    try:
        import zstandard

        def _new_decompressor() -> Any:
            return zstandard.ZstdDecompressor().decompressobj()

        _ZSTD_ERRORS = (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - depends on the environment
        _new_decompressor = None
        _ZSTD_ERRORS = ()

__all__ = ("ZstdStreamInflater", "require")


def require() -> None:
    if _new_decompressor is None:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "compress='zstd-stream' needs zstandard: pip install 'discord-gateway[zstd]'"
        )


class ZstdStreamInflater:
    __slots__ = ("_decompressor", "_max_size", "_parts", "_size")

    def __init__(self, max_size: int) -> None:
        self._decompressor = _new_decompressor()
        self._max_size = max_size
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes, message_finished: bool) -> bytes | None:
        try:
            out: bytes = self._decompressor.decompress(data)
        except _ZSTD_ERRORS as exc:
            raise RemoteProtocolError(f"corrupt zstd-stream data: {exc}") from exc
        self._size += len(out)
        if self._size > self._max_size:
            raise PayloadTooLarge(
                f"zstd-stream message inflates to more than {self._max_size} bytes"
            )
        if message_finished and not self._parts:
            self._size = 0
            return out
        self._parts.append(out)
        if not message_finished:
            return None
        message = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return message
