"""ETF (Erlang External Term Format) through erlpack, the ``etf`` extra (spec J).

Received terms are normalised so that dispatch data has the same shape as
with JSON: atom keys and values become ``str`` (``nil`` becomes None, ``true``
and ``false`` are already bools), binaries become ``str``, tuples become
lists. Snowflakes stay ``int`` as Discord sends them in ETF (spec 37).
We send string (binary) keys only: atom keys get 4002 (spec 39).
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError, RemoteProtocolError

try:
    import erlpack
except ImportError:  # pragma: no cover - depends on the environment
    erlpack = None

__all__ = ("dumps", "loads", "require")


def require() -> None:
    if erlpack is None:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "encoding='etf' needs erlpack: pip install 'discord-gateway[etf]'"
        )


def _normalise(term: Any) -> Any:
    if isinstance(term, dict):
        return {_normalise(k): _normalise(v) for k, v in term.items()}
    if isinstance(term, (list, tuple)):
        return [_normalise(v) for v in term]
    if isinstance(term, bytes):
        return term.decode("utf-8", "surrogateescape")
    if isinstance(term, str):  # erlpack.Atom is a str subclass
        if term == "nil" and type(term) is not str:
            return None
        return str(term)
    return term


def loads(data: bytes) -> Any:
    try:
        term = erlpack.unpack(data)
    except Exception as exc:  # erlpack raises several unrelated types
        raise RemoteProtocolError(f"malformed ETF from the gateway: {exc}") from exc
    return _normalise(term)


def dumps(payload: dict[str, Any]) -> bytes:
    packed: bytes = erlpack.pack(payload)
    return packed
