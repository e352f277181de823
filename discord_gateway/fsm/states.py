"""The gateway lifecycle, as data.

Theory of operation
-------------------
Everything that changes the *lifecycle* of a connection is in this file: the
states and the table of which trigger moves which state where. Nothing else
in the package decides which lifecycle moves are legal; ``fsm/machine.py``
builds a ``transitions.Machine`` from ``TRANSITIONS`` and the connection only
*fires* triggers. The diagram in ``docs/lifecycle.mmd`` is generated from the
same table, and a test fails when the committed copy is stale.

One ``DiscordConnection`` object lives across many WebSockets. Its life::

    CONNECTING  a fresh WebSocket: the upgrade request (``connect()``) is out or
                about to be; waiting for HELLO. Also the state right after
                construction and after ``reconnect()``.
    HELLO       HELLO arrived: heartbeats run; the caller sends IDENTIFY or RESUME.
    IDENTIFYING IDENTIFY sent, waiting for READY (a new session).
    RESUMING    RESUME sent, waiting for the replayed dispatches and RESUMED.
    READY       the session is live.
    CLOSING     we sent a close frame (by choice, or because of op 7, op 9, a
                missed heartbeat ACK or a bad payload) and wait for the reply.
    RECONNECTING the WebSocket is gone; ``reconnect()`` (then ``connect()``) next.
    CLOSED      the connection ended: either the gateway closed with a fatal code
                (4004, 4010-4014; connecting again cannot succeed, so
                ``reconnect()`` refuses: terminal), or the user's own
                ``close(1000)``/``close(1001)`` finished (``should_reconnect()`` is
                False; ``reconnect()`` may still start afresh with IDENTIFY). Which
                of the two is session data (``fatal_close_code``), not a state.

What is deliberately *not* here: DISPATCH handling, sequence numbers and
heartbeat ACKs. They happen thousands of times per lifecycle change, so the
connection handles them in plain code on its hot path (a ``transitions``
trigger costs ~7 us, ~23x a dict lookup). Whether a closed connection may
resume is session data, not a state: the close-code table in ``opcodes.py``
decides it.

Sending rules that follow from the states (enforced by the connection):
heartbeats only in HELLO, IDENTIFYING, RESUMING and READY (protocol 18 allows
them before IDENTIFY); commands only after IDENTIFY or RESUME was sent;
nothing at all while CLOSING or after.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = (
    "INITIAL_STATE",
    "OPEN_STATES",
    "SENDING_STATES",
    "TRANSITIONS",
    "State",
    "Transition",
    "Trigger",
    "transition_table",
)


class State(enum.Enum):
    CONNECTING = "connecting"
    HELLO = "hello"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"
    READY = "ready"
    CLOSING = "closing"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Trigger(str, enum.Enum):
    """Every lifecycle trigger. The value is the ``transitions`` trigger name."""

    HELLO_RECEIVED = "hello_received"
    IDENTIFY_SENT = "identify_sent"
    RESUME_SENT = "resume_sent"
    READY_RECEIVED = "ready_received"
    RESUMED_RECEIVED = "resumed_received"
    CLOSE_SENT = "close_sent"
    DISCONNECTED = "disconnected"
    CLOSED_FATALLY = "closed_fatally"
    CLOSED_BY_USER = "closed_by_user"
    RECONNECT = "reconnect"


@dataclass(frozen=True, slots=True)
class Transition:
    trigger: Trigger
    sources: tuple[State, ...]
    dest: State
    why: str


INITIAL_STATE = State.CONNECTING

#: States in which a WebSocket is (being) opened and nothing has closed it yet.
OPEN_STATES = (State.CONNECTING, State.HELLO, State.IDENTIFYING, State.RESUMING, State.READY)
#: States in which heartbeats may be sent (after HELLO, before any close).
HEARTBEAT_STATES = (State.HELLO, State.IDENTIFYING, State.RESUMING, State.READY)
#: States in which commands (presence, voice, members, ...) may be sent:
#: any payload before IDENTIFY gets 4003 (protocol 18).
SENDING_STATES = (State.IDENTIFYING, State.RESUMING, State.READY)

_S = State
_T = Trigger

TRANSITIONS: tuple[Transition, ...] = (
    Transition(_T.HELLO_RECEIVED, (_S.CONNECTING,), _S.HELLO, "op 10 HELLO (protocol 9)"),
    Transition(_T.IDENTIFY_SENT, (_S.HELLO,), _S.IDENTIFYING, "identify() (protocol 17, 18)"),
    Transition(_T.RESUME_SENT, (_S.HELLO,), _S.RESUMING, "resume() (protocol 26)"),
    Transition(_T.READY_RECEIVED, (_S.IDENTIFYING,), _S.READY, "READY dispatch (protocol 22)"),
    Transition(_T.RESUMED_RECEIVED, (_S.RESUMING,), _S.READY, "RESUMED dispatch (protocol 24)"),
    Transition(
        _T.CLOSE_SENT,
        OPEN_STATES,
        _S.CLOSING,
        "close(), op 7, op 9, missed ACK or bad payload (protocol 13, 16, 25, 28)",
    ),
    Transition(
        _T.DISCONNECTED,
        (*OPEN_STATES, _S.CLOSING),
        _S.RECONNECTING,
        "close handshake done or transport lost (protocol 25, 53)",
    ),
    Transition(
        _T.CLOSED_FATALLY,
        (*OPEN_STATES, _S.CLOSING),
        _S.CLOSED,
        "fatal close code 4004, 4010-4014 (protocol 31)",
    ),
    Transition(
        _T.CLOSED_BY_USER,
        (_S.CONNECTING, _S.CLOSING),
        _S.CLOSED,
        "the user's close(1000/1001) is done: handshake, its timeout or a lost "
        "transport; from connecting when no WebSocket was open yet (protocol 30)",
    ),
    Transition(
        _T.RECONNECT,
        (*OPEN_STATES, _S.CLOSING, _S.RECONNECTING, _S.CLOSED),
        _S.CONNECTING,
        "reconnect(): a fresh WebSocket (protocol 25, 27); out of closed only after "
        "the user's own close - the connection refuses it after a fatal code (protocol 31)",
    ),
)


def transition_table() -> dict[tuple[State, Trigger], State]:
    """``{(state, trigger): next_state}`` for every legal pair; the rest are illegal."""
    table: dict[tuple[State, Trigger], State] = {}
    for transition in TRANSITIONS:
        for source in transition.sources:
            key = (source, transition.trigger)
            if key in table:  # pragma: no cover - guards edits to the table above
                raise AssertionError(f"ambiguous transition {key}")
            table[key] = transition.dest
    return table
