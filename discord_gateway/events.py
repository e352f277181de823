"""Events that :meth:`DiscordConnection.events` yields.

Frozen dataclasses, one per kind of gateway message. Each keeps the decoded
``payload`` (the whole ``{op, d, s, t}`` envelope) and, for code written
against discord-gateway 0.4.0 (whose events were those dicts), supports
``event["op"]``, ``event["d"]`` and ``event.get("t")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = (
    "CommandsDropped",
    "Disconnected",
    "Dispatch",
    "Event",
    "HeartbeatAck",
    "HeartbeatRequest",
    "Hello",
    "InvalidSession",
    "Ready",
    "Reconnect",
    "Resumed",
    "UnknownMessage",
)

Payload = dict[str, Any]


class Event:
    """Base class: mapping-style access to the raw payload (0.4.0 compatibility)."""

    __slots__ = ()

    payload: Payload

    def __getitem__(self, key: str) -> Any:
        return self.payload[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.payload.get(key, default)


@dataclass(frozen=True, slots=True)
class Hello(Event):
    """op 10: the first message of every connection."""

    heartbeat_interval: float  # seconds
    payload: Payload


@dataclass(frozen=True, slots=True)
class Dispatch(Event):
    """op 0: a bot event such as MESSAGE_CREATE. ``data`` is the payload's ``d``."""

    name: str
    seq: int | None
    data: Any
    payload: Payload


@dataclass(frozen=True, slots=True)
class Ready(Dispatch):
    """The READY dispatch: a new session started."""

    session_id: str
    resume_gateway_url: str | None


@dataclass(frozen=True, slots=True)
class Resumed(Dispatch):
    """The RESUMED dispatch: every missed dispatch has been replayed before it."""


@dataclass(frozen=True, slots=True)
class InvalidSession(Event):
    """op 9. Hidden unless ``dispatch_handled=True``: the connection acts on it."""

    resumable: bool
    payload: Payload


@dataclass(frozen=True, slots=True)
class Reconnect(Event):
    """op 7. Hidden unless ``dispatch_handled=True``: the connection acts on it."""

    payload: Payload


@dataclass(frozen=True, slots=True)
class HeartbeatAck(Event):
    """op 11. ``latency`` is seconds since the heartbeat it acknowledges (None if unknown)."""

    latency: float | None
    payload: Payload


@dataclass(frozen=True, slots=True)
class HeartbeatRequest(Event):
    """op 1 from the gateway; answered at once. Hidden unless ``dispatch_handled=True``."""

    payload: Payload


@dataclass(frozen=True, slots=True)
class UnknownMessage(Event):
    """A message with an opcode we do not know (logged, never fatal: protocol 7)."""

    op: Any
    payload: Payload


@dataclass(frozen=True, slots=True)
class CommandsDropped(Event):
    """Commands that waited for the send limit were dropped because the session was lost.

    ``commands`` are the ``{"op", "d"}`` payloads, oldest first; they were
    never sent, and will not be sent into the new session.
    """

    commands: tuple[Payload, ...]
    reason: str
    payload: Payload  # {"op": None, "d": [the commands]}: no gateway message carried it


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """An adapter lost its connection (or could not open one) and will try again.

    Handed to you by every adapter for every lost connection, and logged at
    WARNING, so a shard never loops silently. ``code`` and ``reason`` are the
    close frame's; ``code`` is 1006 when the transport was lost without one and
    None when no connection could be opened (refused, unreachable, timed out),
    and ``reason`` then says what happened. ``resumable``:
    the session survives and the next connection RESUMEs (no events are
    lost); otherwise it IDENTIFYs anew. ``delay``: seconds before the next
    attempt. ``attempt``: how many attempts in a row have now failed without
    READY or RESUMED (1 when a working connection drops). When the shard stops
    for good you get its exception instead.
    """

    code: int | None
    reason: str | None
    resumable: bool
    delay: float
    attempt: int
    payload: Payload  # {"op": None, "d": {...the fields...}}: no gateway message carried it


_new = object.__new__
_set_name = Dispatch.__dict__["name"].__set__
_set_seq = Dispatch.__dict__["seq"].__set__
_set_data = Dispatch.__dict__["data"].__set__
_set_payload = Dispatch.__dict__["payload"].__set__


def new_dispatch(name: str, seq: int | None, data: Any, payload: Payload) -> Dispatch:
    """``Dispatch(name, seq, data, payload)``, built for the hot path.

    A frozen dataclass's ``__init__`` goes through ``object.__setattr__`` once
    per field; writing the slots through their descriptors gives the same,
    equally immutable object in 0.34 us instead of 0.77 us (measured here,
    CPython 3.11): ~3% of the whole per-event cost of a small zlib-stream event.
    """
    event = _new(Dispatch)
    _set_name(event, name)
    _set_seq(event, seq)
    _set_data(event, data)
    _set_payload(event, payload)
    return event
