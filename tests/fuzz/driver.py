"""Run one fuzz case against a fresh ``DiscordConnection`` and check the error contract.

The driver does what an adapter does (``discord_gateway/adapters/_base.py``
``step()``): ``connect()``, feed what the socket reads, IDENTIFY or RESUME after
HELLO, run ``handle_timer()`` at ``next_deadline()``, write nothing back (nobody
listens), and ``reconnect()`` when a WebSocket is gone. Where an adapter could do
one of several things (how the bytes are split into reads, timers at the deadline
or at a random time, ending a socket by silence, a lost transport, a user's
close or by abandoning it), a ``random.Random(driver_seed)`` decides, so a
(case, driver_seed) pair replays exactly.

What it checks (:class:`Violation` otherwise):

* ``receive()`` raises nothing but ``RemoteProtocolError`` (``PayloadTooLarge``),
  ``ConnectionRejected``, ``RejectedConnectionData`` and ``CloseDiscordConnection``,
  and never ``InternalError`` (its last-resort net caught a bug: the failure is
  classed by the bug's own exception and site);
* ``handle_timer()`` raises nothing but ``CloseDiscordConnection``: it decodes
  nothing, so a ``RemoteProtocolError`` there would be server data refused too
  late, and any other error is one the adapters treat as a bug and let kill the shard;
* ``next_deadline()`` and ``events()`` raise nothing; the deadline is None or a
  finite number less than a day ahead, and after ``handle_timer(now)`` at a due
  deadline the next one is later than ``now`` (a timer loop would spin);
* what the driver calls as a well-behaved adapter and bot (IDENTIFY/RESUME in
  ``hello``, ``reconnect()`` unless a fatal code ended the connection, ``connect()``
  after it, ``close()`` while open, commands after IDENTIFY/RESUME - bursts over the
  send limit included - and a manual ``heartbeat()``) raises nothing: a
  ``LocalProtocolError`` or ``InvalidCommand`` there comes from state the server's
  bytes left behind;
* never wedged: after the bytes of a connection, the WebSocket is gone or there is
  a deadline, and with nothing more from the server, running the timers ends the
  WebSocket within :data:`MAX_SILENT_TIMERS` calls;
* no ERROR log record saying something went wrong inside the library;
* with ``memory=True``: the tracemalloc peak stays under :func:`memory_bound`.
"""

from __future__ import annotations

import logging
import math
import random
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from discord_gateway import (
    CloseDiscordConnection,
    CommandQueueFull,
    ConnectionRejected,
    DiscordConnection,
    Hello,
    InternalError,
    RejectedConnectionData,
    RemoteProtocolError,
    State,
    _etf,
)

from .corpus import Case, answer, frame_ends, split_head

T = TypeVar("T")

#: The fuzzer's cap on one received message (the default is 16 MiB): small, so
#: inputs over the cap stay cheap and the memory bound means something.
MAX_PAYLOAD_SIZE = 64 * 1024
URL = "wss://gateway.discord.gg"
TOKEN = "fuzz-token"
#: How far ahead a deadline may be: an adapter's selector must be able to wait for it.
MAX_DEADLINE_AHEAD = 86_400.0
#: Timer calls with nothing from the server before the WebSocket must be gone:
#: first heartbeat, zombie close frame, close timeout, and room to spare.
MAX_SILENT_TIMERS = 12
OPEN = (State.CONNECTING, State.HELLO, State.IDENTIFYING, State.RESUMING, State.READY)
SENDING_STATES = (State.IDENTIFYING, State.RESUMING, State.READY)
GONE = (State.RECONNECTING, State.CLOSED)
RECEIVE_MAY_RAISE = (
    CloseDiscordConnection,
    RemoteProtocolError,
    ConnectionRejected,
    RejectedConnectionData,
)


def memory_bound(input_size: int) -> int:
    """Peak traced memory allowed for one input.

    A message at the cap decodes to at most ~35 times its size in JSON (``[[],[],...]``:
    a 56-byte list and an 8-byte pointer per 3 bytes; measured 2.3 MB for 64 KiB).
    ETF's NIL_EXT is one byte per list: the codec caps the terms of a message
    (``_etf.max_terms``, at least 65,536, so at the fuzzer's small cap ETF may reach
    ~4.5 MB). Plus copies of the input and a fixed allowance for the connection.
    """
    etf = 72 * _etf.max_terms(MAX_PAYLOAD_SIZE)  # ~64 B per term, as many as the codec allows
    return max(48 * MAX_PAYLOAD_SIZE, etf) + 8 * input_size + 1024 * 1024


class Violation(AssertionError):
    """The error contract broke. ``signature`` names the class of the failure."""

    def __init__(self, kind: str, where: str, detail: str, exc: BaseException | None = None):
        self.kind = kind
        self.where = where
        self.exc = exc
        site = ""
        if exc is not None:
            site = "@" + _innermost(exc)
            kind = f"{kind}:{type(exc).__name__}"
        self.signature = f"{where}:{kind}{site}"
        super().__init__(f"{self.signature}: {detail}")


def _innermost(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback that is not in the fuzz driver."""
    frames = traceback.extract_tb(exc.__traceback__)
    for entry in reversed(frames):
        if "tests/fuzz" not in entry.filename.replace("\\", "/"):
            parts = entry.filename.replace("\\", "/").split("/")
            return f"{'/'.join(parts[-2:])}:{entry.name}"
    return "?"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_HANDLER = _Records()
LOGGER = logging.getLogger("discord_gateway.fuzz")
LOGGER.addHandler(_HANDLER)
LOGGER.setLevel(logging.ERROR)
LOGGER.propagate = False


def _is_internal(record: logging.LogRecord) -> bool:
    message = record.getMessage().lower()
    return record.exc_info is not None or "internal" in message or "bug" in message


@dataclass
class Stats:
    reads: int = 0
    connections: int = 0
    timers: int = 0
    hellos: int = 0
    readies: int = 0
    peak: int = 0


def _by_frame(stream: bytes) -> Iterator[bytes]:
    head, _ = split_head(stream)
    if head:
        yield head
    start = len(head)
    for end in frame_ends(stream[start:]):
        yield stream[start : len(head) + end]
        start = len(head) + end
    if start < len(stream):
        yield stream[start:]


class _Run:
    def __init__(
        self,
        case: Case,
        seed: int,
        factory: Callable[..., DiscordConnection] = DiscordConnection,
        timers: bool = True,
    ) -> None:
        self.case = case
        self.timers = timers
        self.rng = random.Random(seed)
        self.now = 0.0
        self.stats = Stats()
        self.conn = factory(
            URL,
            encoding=case.encoding,
            compress=case.compress,
            max_payload_size=MAX_PAYLOAD_SIZE,
            dispatch_handled=self.rng.random() < 0.5,
            etf_snowflakes_as_str=self.rng.random() < 0.5,
            rng=random.Random(seed),
            clock=lambda: self.now,
            logger=LOGGER,
        )

    # -- calls into the core, each with what it may raise --------------------------

    def call(self, where: str, fn: Callable[[], T], may_raise: tuple[type[Exception], ...]) -> T:
        try:
            return fn()
        except InternalError as exc:
            # receive()'s last-resort net caught a bug: classify it by the bug's own site.
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise Violation("internal", where, str(exc), cause) from exc
        except may_raise:
            raise
        except Exception as exc:
            raise Violation("raised", where, f"{type(exc).__name__}: {exc}", exc) from exc

    def deadline(self, where: str) -> float | None:
        when = self.call("next_deadline", self.conn.next_deadline, ())
        if when is None:
            return None
        if (
            not isinstance(when, (int, float))
            or not math.isfinite(when)
            or when > self.now + MAX_DEADLINE_AHEAD
        ):
            raise Violation("deadline", where, f"next_deadline() is {when!r} at now={self.now}")
        return float(when)

    def drain(self) -> None:
        conn = self.conn
        events = self.call("events", lambda: list(conn.events()), ())
        for event in events:
            if isinstance(event, Hello):
                self.stats.hellos += 1
                if conn.state is State.HELLO:  # an adapter greets only while it may
                    if conn.should_resume:
                        self.call("resume", lambda: conn.resume(TOKEN, now=self.now), ())
                    else:
                        self.call(
                            "identify",
                            lambda: conn.identify(token=TOKEN, intents=513, now=self.now),
                            (),
                        )
            elif type(event).__name__ == "Ready":
                self.stats.readies += 1

    def command(self) -> None:
        """What a bot does between reads: commands (a burst over the send limit now and
        then, so some wait in the queue for handle_timer), or a manual heartbeat."""
        conn = self.conn
        if conn.state in SENDING_STATES:
            for _ in range(self.rng.choice((1, 1, 2, 130))):
                try:
                    self.call(
                        "send_command",
                        lambda: conn.update_presence(status="idle", now=self.now),
                        (CommandQueueFull,),  # documented: the bot sends too fast
                    )
                except CommandQueueFull:
                    return
        elif conn.state is State.HELLO and self.rng.random() < 0.5:
            self.call("heartbeat", lambda: conn.heartbeat(now=self.now), ())

    def timer(self, when: float) -> bool:
        """``handle_timer`` at ``when`` (never back in time); False once the socket is gone."""
        self.now = max(self.now, when)
        due = self.deadline("before handle_timer")
        self.stats.timers += 1
        try:
            self.call(
                "handle_timer", lambda: self.conn.handle_timer(self.now), (CloseDiscordConnection,)
            )
        except CloseDiscordConnection:
            self.drain()
            return False
        self.drain()
        if self.conn.state in GONE:
            return False
        after = self.deadline("handle_timer")
        if due is not None and due <= self.now and after is not None and after <= self.now:
            raise Violation(
                "spinning timer",
                "handle_timer",
                f"deadline {due} handled at {self.now}, next deadline {after} is not later",
            )
        return True

    def receive(self, data: bytes | None) -> bool:
        """Feed ``data``; False once the socket is gone."""
        self.stats.reads += 1
        conn = self.conn
        try:
            self.call("receive", lambda: conn.receive(data, self.now), RECEIVE_MAY_RAISE)
        except CloseDiscordConnection:
            self.drain()
            return False
        except RemoteProtocolError:
            pass  # the core is closing: write err.data, keep reading (as step() does)
        except RejectedConnectionData:
            self.drain()
            return False
        except ConnectionRejected:
            self.drain()
            return self.rng.random() < 0.5  # read the body, or drop the socket
        self.drain()
        return conn.state not in GONE

    # -- one case ----------------------------------------------------------------------

    def split(self, stream: bytes) -> Iterator[bytes]:
        """The reads ``stream`` arrives in: whole, one per frame, fixed sizes or random cuts.

        The cuts are drawn here, the reads made one at a time (the memory check
        counts what the client holds, not the driver's copies).
        """
        rng = self.rng
        mode = rng.random()
        if not self.timers or 0.25 <= mode < 0.4:
            # One read per frame, as a socket often delivers them: the client answers
            # HELLO before the bytes that answer its IDENTIFY or RESUME arrive.
            return _by_frame(stream)
        cuts: list[int] = []
        if mode < 0.25 or len(stream) < 2:
            pass
        elif mode < 0.7:
            if mode < 0.45:
                size = 1 if len(stream) <= 4096 else rng.randint(1, 16)
            else:
                size = rng.choice((2, 3, 7, 64, 127, 1024))
            return (stream[i : i + size] for i in range(0, len(stream), size))
        else:
            cuts = sorted(
                rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(1, 8)))
            )
        bounds = zip([0, *cuts], [*cuts, len(stream)], strict=True)
        return (stream[start:end] for start, end in bounds if end > start)

    def maybe_timer(self, rate: float) -> bool:
        """Before a read: now and then, ``handle_timer`` at the deadline or a random time."""
        rng = self.rng
        if rng.random() >= rate:
            return True
        if rng.random() < 0.7:
            due = self.deadline("before handle_timer")
            when = self.now if due is None else due
        else:
            when = self.now + rng.choice((0.0, 0.001, 0.5, 5.0, 30.0, 1_000.0))
        return self.timer(when)

    def silence(self) -> None:
        """Nothing more from the server: the timers must end the WebSocket."""
        for _ in range(MAX_SILENT_TIMERS):
            due = self.deadline("silence")
            if due is None:
                if self.conn.state in GONE:
                    return
                raise Violation(
                    "wedged",
                    "silence",
                    f"state {self.conn.state.value} with no deadline and no more input",
                )
            if not self.timer(due):
                return
        raise Violation(
            "wedged",
            "silence",
            f"still {self.conn.state.value} after {MAX_SILENT_TIMERS} timer calls without input",
        )

    def end_socket(self) -> None:
        """The bytes ran out with the WebSocket still up: end it the way an adapter might."""
        conn = self.conn
        if conn.state not in GONE and self.deadline("after the bytes") is None:
            raise Violation(
                "wedged", "after the bytes", f"state {conn.state.value} with no deadline"
            )
        roll = self.rng.random()
        if roll < 0.5:
            self.silence()
        elif roll < 0.7:
            self.receive(None)  # the transport is lost
            if conn.state not in GONE:
                raise Violation(
                    "wedged", "receive(None)", f"state {conn.state.value} after the transport lost"
                )
        elif roll < 0.85 and conn.state in OPEN:
            code = self.rng.choice((1000, 4000))
            self.call("close", lambda: conn.close(code, now=self.now), ())
            self.drain()
            self.silence()
        # else: abandoned; reconnect() will account for it

    def run(self) -> Stats:
        conn = self.conn
        for index, stream in enumerate(self.case.conns):
            if index > 0:
                if conn.state is State.CLOSED and conn.fatal_close_code is not None:
                    break  # a fatal code: reconnecting cannot succeed (the user's own
                    # close(1000) also ends in closed, and may start afresh)
                delay = self.call("reconnect", conn.reconnect, ())
                if not (math.isfinite(delay) and 0 <= delay <= MAX_DEADLINE_AHEAD):
                    raise Violation("deadline", "reconnect", f"reconnect() asks to wait {delay!r}")
                self.now += delay
                self.drain()
            request = self.call("connect", lambda: conn.connect(now=self.now), ())
            self.stats.connections += 1
            alive = True
            rate = self.rng.choice((0.0, 0.0, 0.02, 0.1, 0.3)) if self.timers else 0.0
            commands = self.rng.choice((0.0, 0.0, 0.05, 0.2)) if self.timers else 0.0
            for chunk in self.split(answer(stream, request)):
                if not self.maybe_timer(rate) or not self.receive(chunk):
                    alive = False
                    break
                if self.rng.random() < commands:
                    self.command()
            if alive and conn.state not in GONE:
                self.end_socket()
        return self.stats


def run_case(
    case: Case,
    driver_seed: int,
    *,
    memory: bool = False,
    factory: Callable[..., DiscordConnection] = DiscordConnection,
    timers: bool = True,
) -> Stats:
    """Run ``case`` (raises :class:`Violation`); with ``memory``, under tracemalloc.

    ``factory`` builds the client (the driver's own tests hand it broken subclasses);
    ``timers=False`` runs no timer while bytes remain (the recorded sessions then play out
    as recorded).
    """
    _HANDLER.records.clear()
    if memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    try:
        stats = _Run(case, driver_seed, factory, timers).run()
        if memory:
            stats.peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if memory:
            tracemalloc.stop()
    if memory and stats.peak > memory_bound(case.size):
        raise Violation(
            "memory",
            "run",
            f"tracemalloc peak {stats.peak} bytes over the bound {memory_bound(case.size)}",
        )
    for record in _HANDLER.records:
        if _is_internal(record):
            raise Violation("error log", "logging", record.getMessage())
    return stats


def describe(case: Case) -> dict[str, Any]:
    return {
        "name": case.name,
        "encoding": case.encoding,
        "compress": case.compress,
        "bytes": case.size,
        "connections": len(case.conns),
    }
