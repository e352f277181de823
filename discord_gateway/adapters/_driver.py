"""The recovery loop's decisions, made once for every adapter, without I/O.

Theory of operation
-------------------
An adapter owns a socket, a way to wait and a queue of events for its user.
Everything else is decided here, by a :class:`Driver` (one per shard), so the
threading, asyncio and trio adapters cannot drift apart (the shape of
aioquic's protocol layer and httpcore's one-code-path rule)::

    attempt = driver.next_attempt()            # None: finished, see driver.error
    while attempt is not None:
        sleep(attempt.delay)                    # close() may cut it short
        try:
            sock = open(attempt.host, attempt.port, attempt.tls)
        except network error as exc:
            deliver(driver.connect_failed(exc, host, port))
        else:
            step = driver.connect(now)          # every core call goes through
            ...                                 # receive / timer / lost / greet
            deliver(driver.connection_lost())   # when step.alive went False
        attempt = driver.next_attempt()

What the driver decides:

* what one core call means (:meth:`Driver.step`): bytes to write, events to
  hand on, whether this socket is finished, RESUME or IDENTIFY after HELLO;
* why a connection ended, and whether that is a *protocol failure before
  READY* (a close frame, undecodable data, a refused or garbled upgrade, no
  HELLO/READY/RESUMED in time) or a *network failure* (refused, unreachable,
  timed out, or the transport lost without a close frame): only the first
  kind counts towards giving up, and not while reading was paused for a
  consumer that fell behind;
* the backoff (the core's ``reconnect()``), and the :class:`Disconnected`
  event (logged at WARNING) for every lost connection;
* giving up: ``max_failed_attempts`` protocol failures in a row before READY
  raise :class:`ConnectionFailed` with the causes; READY or RESUMED resets the
  count; a fatal close code raises its named error at once;
* when the adapter must stop and restart reading (:class:`EventBound`), and
  what the user's ``close()`` writes (:meth:`Driver.close_frame`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ..connection import DiscordConnection
from ..errors import (
    CloseDiscordConnection,
    ConnectionFailed,
    ConnectionRejected,
    GatewayClosed,
    GatewayError,
    RejectedConnectionData,
    RemoteProtocolError,
    fatal_close_error,
)
from ..events import Disconnected, Dispatch, Event, Hello, Ready, Resumed
from ..fsm import State
from ..fsm.states import OPEN_STATES, SENDING_STATES
from ._base import ShardOptions, shard_logger

__all__ = ("Attempt", "Driver", "EventBound", "Step", "Stop")

#: A refused upgrade with one of these statuses is the service being down, not us.
_OUTAGE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_STARTING = (State.CONNECTING, State.HELLO, State.IDENTIFYING, State.RESUMING)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Where and when to open the next connection."""

    delay: float
    host: str
    port: int
    tls: ssl.SSLContext | None


@dataclass(slots=True)
class Step:
    """What one core call asks of the adapter.

    ``out``: bytes to write, in order. ``events``: to hand to the user.
    ``alive``: False once this socket is finished (close it, then call
    :meth:`Driver.connection_lost`). ``ready``: commands may be sent.
    ``identify_due``: HELLO arrived but IDENTIFY waits for the caller's gate
    (``ShardManager``'s identify scheduler), which then calls
    :meth:`Driver.greet`.
    """

    out: list[bytes]
    events: list[Event]
    alive: bool
    ready: bool
    identify_due: bool = False


class Stop:
    """The end of an adapter's event stream; ``error`` is raised to the consumer if set."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class EventBound:
    """When a consumer that fell behind makes the adapter stop reading, and resume.

    At ``limit`` pending events the adapter stops reading the socket (nothing is
    dropped: the bytes wait in the kernel, then the server); below ``limit // 2``
    it reads again. Events already read still arrive, so the queue can exceed
    ``limit`` by what one read holds. A pause longer than a heartbeat interval
    leaves the ACKs unread: the core closes the connection as a zombie and,
    once the consumer catches up, it is resumed (the missed dispatches are
    replayed). The adapter opens no new connection while paused.
    """

    __slots__ = ("limit", "log", "low", "paused", "pauses")

    def __init__(self, limit: int, log: logging.Logger | None = None) -> None:
        self.log = log if log is not None else shard_logger(None)
        self.limit = limit
        self.low = limit // 2
        self.paused = False
        #: How many times reading was paused (each logged once, at WARNING).
        self.pauses = 0

    def after_put(self, pending: int) -> bool:
        """True if reading must stop now (``pending`` events wait)."""
        if self.paused or pending < self.limit:
            return False
        self.paused = True
        self.pauses += 1
        self.log.warning(
            "%d events are waiting for your code; reading from the gateway is paused "
            "until it catches up (read events faster, or raise max_pending_events)",
            pending,
        )
        return True

    def after_get(self, pending: int) -> bool:
        """True if reading may start again now."""
        if not self.paused or pending > self.low:
            return False
        self.paused = False
        self.log.info(
            "your code caught up (%d events waiting); reading from the gateway again", pending
        )
        return True


class Driver:
    """The decisions of one shard's recovery loop. Not thread-safe: callers lock."""

    def __init__(self, options: ShardOptions, *, gate_identify: bool = False) -> None:
        self.options = options
        #: This shard's logger, ``discord_gateway.shard.<id>``.
        self.log = shard_logger(options.shard)
        #: Built now, so the core validates its options in the caller's constructor.
        self.conn: DiscordConnection = options.new_connection()
        self.bound = EventBound(options.max_pending_events, self.log)
        #: The user asked to close: no new connection, no Disconnected.
        self.closing = False
        #: Set once the shard is finished; ``error`` is what to raise to the user.
        self.finished = False
        self.error: BaseException | None = None
        self._gate_identify = gate_identify
        self._next: Attempt | None = None
        self._ready = False
        self._failures: list[str] = []  # protocol failures before READY, in a row
        self._lost_in_a_row = 0
        self._new_connection()

    # -- one connection ----------------------------------------------------------

    def _new_connection(self) -> None:
        self._started = False  # READY or RESUMED on this connection
        self._code: int | None = None
        self._reason: str | None = None
        self._cause: str | None = None
        self._counts = False  # the cause is a protocol failure
        self._pauses_before = self.bound.pauses

    def _note(self, cause: str, *, counts: bool) -> None:
        """Remember why this connection is ending (the first reason wins)."""
        if self._cause is None:
            self._cause = cause
            self._counts = counts

    @property
    def ready(self) -> bool:
        """Commands may be sent: READY or RESUMED arrived on this connection."""
        return self._ready and self.conn.state in SENDING_STATES

    @property
    def reading(self) -> bool:
        """Read the socket now? Not at the bound, unless closing (the handshake needs it)."""
        return not self.bound.paused or self.closing

    def close_frame(self, code: int, now: float) -> bytes | None:
        """The user's close: the frame to write (b"" if already closing), or None
        when there is no WebSocket yet and the socket is just dropped."""
        conn = self.conn
        if conn.state is State.CONNECTING:
            return None
        return conn.close(code, now=now) if conn.state in OPEN_STATES else b""

    def connect(self, now: float) -> Step:
        conn = self.conn
        return self.step(lambda t: [conn.connect(now=t)], now)

    def receive(self, data: bytes, now: float) -> Step:
        if not data:
            return self.lost(now)
        conn = self.conn
        before = conn.state
        result = self.step(lambda t: conn.receive(data, now=t), now)
        if before in _STARTING and conn.state is State.CLOSING and not self.closing:
            # op 7 or op 9 before the session started: we are closing at its request.
            self._note("the gateway ended the connection before READY (op 7 or 9)", counts=True)
        return result

    def timer(self, now: float) -> Step:
        conn = self.conn
        before = conn.state
        if before is State.CONNECTING:
            first = self._cause is None
            result = self.step(conn.handle_timer, now)
            if first and not result.alive:
                # A HELLO timeout (CloseDiscordConnection 1006, not a lost transport).
                self._cause, self._counts = "no HELLO in time after the upgrade", True
            return result
        result = self.step(conn.handle_timer, now)
        if before in _STARTING and conn.state is State.CLOSING:
            awaited = "RESUMED" if before is State.RESUMING else "READY"
            self._note(f"no {awaited} in time (or heartbeat ACKs missed)", counts=True)
        return result

    def lost(self, now: float) -> Step:
        """The transport is gone (EOF, reset, a failed write)."""
        self._note("the connection was lost", counts=False)
        conn = self.conn
        return self.step(lambda t: conn.receive(None, now=t), now)

    def greet(self, now: float) -> Step:
        """Send IDENTIFY once the gate allows it (only if still waiting to)."""
        conn = self.conn
        if conn.state is not State.HELLO:
            return self.step(lambda t: [], now)
        return self.step(lambda t: [self.options.greeting(conn, t)], now)

    def step(self, call: Callable[[float], list[bytes]], now: float) -> Step:
        """Run one core call at ``now``; the answer to every error a core call raises.

        ``CloseDiscordConnection``: write its data, then drop the socket.
        ``RemoteProtocolError``: write its data (the close frame) and keep
        reading: the core is closing. A refused upgrade: drop the socket. Any
        other ``GatewayError`` is a bug or bad options and propagates. Anything
        else breaks the core's contract: it is logged with its traceback and
        the socket dropped, so no server bytes can kill the adapter.
        """
        conn = self.conn
        out: list[bytes] = []
        alive = True
        try:
            out.extend(call(now))
        except CloseDiscordConnection as closed:
            if closed.data:
                out.append(closed.data)
            alive = False
            self._code, self._reason = closed.code, closed.reason
            if closed.code is not None and closed.code != 1006:
                what = f"the gateway closed with {closed.code}"
                self._note(f"{what} ({closed.reason})" if closed.reason else what, counts=True)
            else:
                self._note(closed.reason or "the connection was lost", counts=False)
        except RemoteProtocolError as err:
            self.log.warning("the gateway sent bad data: %s", err)
            self._note(f"bad data from the gateway: {err}", counts=True)
            out.append(err.data)
        except ConnectionRejected as err:
            self.log.warning("%s", err)
            self._note(
                f"the gateway refused the upgrade with HTTP {err.code}",
                counts=err.code not in _OUTAGE_STATUSES,
            )
            alive = False
        except RejectedConnectionData:  # pragma: no cover - we stop at ConnectionRejected
            alive = False
        except GatewayError:
            raise
        except Exception as exc:  # the core broke its error contract: never die of it
            self.log.error(
                "unexpected error from the core, please report it: %r", exc, exc_info=True
            )
            self._note(f"unexpected error: {exc!r}", counts=True)
            alive = False
        events: list[Event] = []
        append = events.append
        identify_due = False
        for event in conn.events():
            if type(event) is Dispatch:  # most events: nothing to decide (not READY/RESUMED)
                append(event)
                continue
            if isinstance(event, Hello):
                if conn.state is not State.HELLO:
                    # The read that carried HELLO also carried op 7, op 9, a close
                    # frame or garbage: the core is already closing, and greeting
                    # now would be refused. The next connection greets instead.
                    pass
                elif self._gate_identify and not conn.should_resume:
                    identify_due = True
                else:
                    out.append(self.options.greeting(conn, now))
            elif isinstance(event, Ready):
                self._session_started()
                self.log.info("session %s is ready", event.session_id)
            elif isinstance(event, Resumed):
                self._session_started()
                self.log.info("session %s resumed", conn.session_id)
            append(event)
        if conn.state not in SENDING_STATES:
            self._ready = False
        if conn.state in (State.RECONNECTING, State.CLOSED):
            alive = False
        return Step([chunk for chunk in out if chunk], events, alive, self.ready, identify_due)

    def _session_started(self) -> None:
        self._started = True
        self._ready = True
        self._failures.clear()
        self._lost_in_a_row = 0

    # -- between connections -----------------------------------------------------

    def next_attempt(self) -> Attempt | None:
        """The next connection to open, or None once the shard is finished."""
        if self.finished:
            return None
        if self.closing:
            self._finish(None)
            return None
        attempt = self._next
        if attempt is None:  # the first one
            attempt = self._prepare(self.conn.reconnect())
        self._next = None
        self._new_connection()
        self.log.info(
            "connecting to %s:%d%s",
            attempt.host,
            attempt.port,
            f" in {attempt.delay:.2f} s" if attempt.delay else "",
        )
        return attempt

    def connect_failed(self, exc: BaseException, host: str, port: int) -> list[Event]:
        """The TCP/TLS connection could not be opened: a network failure, retried for ever."""
        self._note(f"could not connect to {host}:{port}: {exc!r}", counts=False)
        return self.connection_lost()

    def connection_lost(self) -> list[Event]:
        """The socket is finished: stop, or plan the next attempt and say so."""
        conn = self.conn
        self._ready = False
        if self.closing:
            self._finish(None)
            return []
        if conn.state is State.CLOSED:
            error = self.stop_error()
            if error is not None:
                self.log.error("stopping: %s", error)
            self._finish(error)
            return []
        cause = self._cause or "the connection was lost"
        # Reading paused for a stalled consumer makes zombies: not the gateway's fault.
        paused = self.bound.paused or self.bound.pauses != self._pauses_before
        counts = self._counts and not self._started and not paused
        limit = self.options.max_failed_attempts
        if counts:
            self._failures.append(cause)
            if limit is not None and len(self._failures) >= limit:
                error = ConnectionFailed(tuple(self._failures), self._code or 1006)
                self.log.error("%s", error)
                self._finish(error)
                return []
        self._lost_in_a_row += 1
        delay = conn.reconnect()
        code, reason, resumable, attempt = (
            self._code,
            self._reason or cause,
            conn.should_resume,
            self._lost_in_a_row,
        )
        data = {"code": code, "reason": reason, "resumable": resumable, "delay": delay}
        data["attempt"] = attempt
        event = Disconnected(code, reason, resumable, delay, attempt, {"op": None, "d": data})
        self.log.warning(
            "lost the connection to the gateway (%s); %s in %.2f s (attempt %d%s)",
            f"{event.code}: {event.reason}" if event.code is not None else event.reason,
            "resuming" if event.resumable else "identifying",
            delay,
            event.attempt,
            f", {len(self._failures)} of {limit} failures before giving up"
            if counts and limit is not None
            else "",
        )
        self._next = self._prepare(delay)
        return [event]

    def _prepare(self, delay: float) -> Attempt:
        host, port = self.conn.destination
        return Attempt(delay, host, port, self.options.tls(self.conn))

    def stop_error(self) -> GatewayClosed | None:
        """The exception to raise when the gateway ended the connection for good."""
        conn = self.conn
        if conn.state is State.CLOSED and conn.fatal_close_code is not None:
            return fatal_close_error(
                conn.fatal_close_code, conn.fatal_close_reason, intents=self.options.intents
            )
        return None

    def _finish(self, error: BaseException | None) -> None:
        if not self.finished:
            self.finished = True
            self.error = error
