"""Fault injection for the local gateway: what can go wrong, and when.

A :class:`Fault` is one thing the server does to a connection (send op 7,
close with 4000, reset the TCP connection, ...). Apply one at once with
``GatewayServer.inject(fault)``, or script them per connection with
:class:`ConnectionFaults`: a tuple of ``(trigger, fault)`` pairs plus a few
standing behaviours (dropping or delaying heartbeat ACKs, splitting writes).
Anything random (which ACK to drop, where to split) comes from the
connection's ``random.Random``, itself seeded from the store's seed and the
connection's number, so a scripted run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = (
    "AfterDispatches",
    "AtTime",
    "Close",
    "ConnectionFaults",
    "CorruptCompressed",
    "Fault",
    "InvalidateSession",
    "OnHeartbeat",
    "ResetConnection",
    "SendHeartbeatRequest",
    "SendInvalidSession",
    "SendMalformed",
    "SendReconnect",
    "Stall",
    "Trigger",
)


# --- faults -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendReconnect:
    """Send op 7 RECONNECT (protocol 16: at any point)."""


@dataclass(frozen=True, slots=True)
class SendInvalidSession:
    """Send op 9. With ``resumable=False`` the session is destroyed first (protocol 28)."""

    resumable: bool = False


@dataclass(frozen=True, slots=True)
class SendHeartbeatRequest:
    """Send op 1: the client must heartbeat at once (protocol 12)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the WebSocket with ``code`` (any code, 1000/1001 included: protocol 32, 52).

    The session survives unless the code's policy says it must not (4007, 4009,
    ...), as :func:`discord_gateway.opcodes.close_policy` tells.
    """

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResetConnection:
    """Drop the TCP connection without a close frame (protocol 53: 1006 on the client)."""


@dataclass(frozen=True, slots=True)
class Stall:
    """Stop reading and writing; the socket stays open (a zombie connection, protocol 13)."""


@dataclass(frozen=True, slots=True)
class SendMalformed:
    """Send a text frame that is not JSON."""


@dataclass(frozen=True, slots=True)
class CorruptCompressed:
    """Send bytes that break the client's decompressor (or a bad zlib payload)."""


@dataclass(frozen=True, slots=True)
class InvalidateSession:
    """Silently invalidate the session: the next RESUME gets op 9 ``d: false``."""


Fault = (
    SendReconnect
    | SendInvalidSession
    | SendHeartbeatRequest
    | Close
    | ResetConnection
    | Stall
    | SendMalformed
    | CorruptCompressed
    | InvalidateSession
)


# --- triggers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AfterDispatches:
    """Right after the ``count``-th dispatch sent on this connection (READY is 1;
    replayed dispatches and RESUMED count too). ``AfterDispatches(0)`` fires
    right after HELLO."""

    count: int


@dataclass(frozen=True, slots=True)
class AtTime:
    """``seconds`` after the connection was opened (fires from ``handle_timer``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class OnHeartbeat:
    """When the ``count``-th heartbeat of this connection arrives (after its ACK)."""

    count: int


Trigger = AfterDispatches | AtTime | OnHeartbeat


@dataclass(frozen=True, slots=True)
class ConnectionFaults:
    """How one connection misbehaves.

    ``script``: ``(trigger, fault)`` pairs, each fired once.
    ``drop_heartbeat_acks``: probability in [0, 1] that an ACK is never sent.
    ``heartbeat_ack_delay``: seconds to hold each ACK back.
    ``reconnect_instead_of_hello``: send op 7 and close 1001 instead of HELLO (protocol 16, 52).
    ``split_writes``: cut the outgoing byte stream at random boundaries
    (``data_to_send()`` returns several chunks; write them one by one).
    ``split_messages``: with ``zlib-stream``, spread each compressed message over
    up to this many WebSocket messages (protocol 34, 58).
    ``fragment_frames``: send each WebSocket message as up to this many frames
    (continuation frames, RFC 6455 section 5.4).
    """

    script: tuple[tuple[Trigger, Fault], ...] = ()
    drop_heartbeat_acks: float = 0.0
    heartbeat_ack_delay: float = 0.0
    reconnect_instead_of_hello: bool = False
    split_writes: bool = False
    split_messages: int = 1
    fragment_frames: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_heartbeat_acks <= 1.0:
            raise ValueError("drop_heartbeat_acks is a probability in [0, 1]")
        if self.heartbeat_ack_delay < 0:
            raise ValueError("heartbeat_ack_delay must not be negative")
        if self.split_messages < 1:
            raise ValueError("split_messages must be at least 1")
        if self.fragment_frames < 1:
            raise ValueError("fragment_frames must be at least 1")
