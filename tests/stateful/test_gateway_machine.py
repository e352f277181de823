"""Model-based tests: ``DiscordConnection`` against the local gateway, in memory, in virtual time.

``GatewayMachine`` is a hypothesis ``RuleBasedStateMachine``. Each run draws a
deviant-server profile (``discord_gateway.testing.profiles``: none, one, or a
random mix: READY numbered 0 after a dispatch before it, RESUMED reusing the
last seq, inclusive replays, refused resumes, ...), which the reference model
accounts for. Its rules deliver bytes in any split, advance virtual time, make
the server misbehave (op 1, op 7, op 9, closes with any code, TCP resets,
stalls, dropped or late ACKs) and make the client act (commands, closing by
choice, reconnecting after the delay ``reconnect()`` asks for, or giving up on
a socket). After every step the invariants below (each names the checklist
item it guards) are checked against the reference model in ``harness.Model``;
at teardown the world is settled and the live session must have received every
dispatch the server logged for it.

Liveness: while the world is cooperative (no injected fault, ACK trouble or
stall on the current connection, no bytes held back while time passes, the
driver reconnecting when told), the client must reach READY (or end, CLOSED)
within ``LIVENESS_BOUND`` virtual seconds, and open at most
``MAX_CONNECTIONS_PER_MINUTE`` connections in any virtual minute. Settling (at
teardown, and for a warm start) is such a world, so a client that wedges (in
``identifying`` forever, say) or loops fails there at the latest.

``LifecycleMachine`` fires random triggers at the lifecycle alone and checks it
against ``transition_table()`` (h2's "every (state, input) pair" property).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import replace

from hypothesis import event as note_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from discord_gateway import (
    CloseDiscordConnection,
    DiscordConnection,
    LocalProtocolError,
    RemoteProtocolError,
)
from discord_gateway import connection as _connection
from discord_gateway.events import (
    CommandsDropped,
    Dispatch,
    Event,
    HeartbeatAck,
    Hello,
    InvalidSession,
    Ready,
    Resumed,
)
from discord_gateway.fsm import Lifecycle, State, Trigger
from discord_gateway.fsm.states import HEARTBEAT_STATES, OPEN_STATES, SENDING_STATES
from discord_gateway.fsm.states import transition_table as _table
from discord_gateway.testing import (
    PROFILES,
    Close,
    ConnectionFaults,
    ConnectionState,
    Deviations,
    GatewayServer,
    InvalidateSession,
    ResetConnection,
    SendHeartbeatRequest,
    SendInvalidSession,
    SendMalformed,
    SendReconnect,
    Stall,
)

from harness import (
    CLIENT_FAULT_CODES,
    INTENTS,
    INTERVAL,
    MAIN_URL,
    TOKEN,
    Link,
    Model,
    Sent,
    Tap,
    budget,
    new_store,
)

MAX_EXAMPLES, STEPS = budget()

SERVER_CLOSE_CODES = [1000, 1001, 3000, *range(4000, 4015), 4015, 4999]
# 4004 and 4009 are fatal / session-ending from the gateway, never from us (protocol 30).
CLIENT_CLOSE_CODES = [1000, 1001, 4000, 4900, 3000, 4004, 4009]
PRESENCE = {"since": None, "activities": [], "status": "online", "afk": False}
SPLITS = st.one_of(st.integers(1, 64), st.just(1 << 30))  # 1 byte .. all of it
PRE_READY_EVENT = "SESSIONS_REPLACE"  # what a seq_from_zero server sends before READY

#: The run's server: like Discord, one deviation, or any mix of them.
#: ``STATEFUL_PROFILE=name[,name...]`` pins it (to check one profile at a time).
DEVIATIONS = st.one_of(
    st.just(Deviations()),
    st.sampled_from([p for name, p in sorted(PROFILES.items()) if name not in ("discord", "all")]),
    st.builds(Deviations, **{f.name: st.booleans() for f in dataclasses.fields(Deviations)}),
)
if os.environ.get("STATEFUL_PROFILE"):
    from discord_gateway.testing import deviations_profile

    DEVIATIONS = st.just(deviations_profile(os.environ["STATEFUL_PROFILE"].split(",")))

# -- liveness ---------------------------------------------------------------------------
# The longest a cooperative world may take to bring the client from any state to
# READY: a reconnect delay (the backoff cap plus op 9's 1-5 s wait), HELLO, a
# RESUME that is refused (op 9), a second reconnect delay, IDENTIFY, READY, with
# every timeout of the way spent once (HELLO, RESUMED, READY, the close handshake).
_WAIT = _connection.BACKOFF_CAP + _connection.INVALID_SESSION_WAIT[1]
LIVENESS_BOUND = (
    2 * _WAIT
    + _connection.HELLO_TIMEOUT
    + _connection.RESUME_TIMEOUT
    + _connection.READY_TIMEOUT
    + _connection.CLOSE_TIMEOUT
)
#: A cooperative world needs at most two connections per disturbance (a refused
#: resume, then IDENTIFY); a reconnect loop (the 4002 loop of a server that wants
#: a User-Agent) opens five or more in its first minute, backoff or not.
MAX_CONNECTIONS_PER_MINUTE = 4


class GatewayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = new_store()
        self.now = 0.0
        self.model = Model()
        self.links: list[Link] = []
        self.link: Link | None = None  # the client's current WebSocket
        self.reconnect_at: float | None = None
        self.pushed = 0
        self.closing_code: int | None = None
        self.seen_seqs: list[int | None] = []  # seqs the client held during one receive()
        # CommandsDropped read with the close that lost the session, before the
        # model has heard of that close: checked once it has.
        self.dropped_at_close: bool | None = None
        self.client: DiscordConnection
        # Liveness: when the current cooperative, not-READY stretch began, and
        # when each connection of the current cooperative stretch was opened.
        self.waiting_since: float | None = None
        self.opened: list[float] = []

    # -- wiring -----------------------------------------------------------------------

    @initialize(
        transport=st.sampled_from(
            [("json", None), ("json", "zlib-stream"), ("json", "zstd-stream"), ("etf", None)]
        ),
        seed=st.integers(0, 2**32 - 1),
        # Most runs start from READY so the steps go to the session's life; the
        # rest start cold, to race the handshake itself.
        warm=st.sampled_from([True, True, True, False]),
        deviations=DEVIATIONS,
        # Heartbeats timed exactly, or on a grid (never late, up to a step early).
        heartbeat_grid=st.sampled_from([0.0, 0.0, 0.5]),
    )
    def start(
        self,
        transport: tuple[str, str | None],
        seed: int,
        warm: bool,
        deviations: Deviations,
        heartbeat_grid: float,
    ) -> None:
        encoding, compress = transport
        self.store.deviations = deviations
        self.model.deviations = deviations
        self.client = DiscordConnection(
            MAIN_URL,
            encoding=encoding,
            compress=compress,
            rng=random.Random(seed),
            clock=lambda: math.nan,  # every call passes now: the core never reads a clock
            dispatch_handled=True,
            heartbeat_grid=heartbeat_grid,
        )
        self.open_link()
        if warm:
            self.settle(caught_up=False)

    @rule()
    def deliver_everything(self) -> None:
        """Both ways, until nothing is in flight (no time passes)."""
        self.flush()

    def open_link(self) -> None:
        model = self.model
        assert model.state is State.CONNECTING
        assert self.client.url.startswith(model.expected_url_prefix()), (
            self.client.url,
            model.expected_url_prefix(),
        )  # protocol 1, 4, 26, 27
        server = GatewayServer(self.store, now=self.now)
        link = Link(
            len(self.links) + 1,
            server,
            self.client.url,
            Tap(self.client.encoding),
            resume_attempt=model.resumable,
        )
        self.links.append(link)
        self.link = link
        self.opened.append(self.now)
        self.reconnect_at = None
        self.emit(link, [self.client.connect(now=self.now)], origin="connect")

    def emit(
        self, link: Link, chunks: list[bytes], *, origin: str, seqs: tuple[int | None, ...] = ()
    ) -> None:
        """The client wrote ``chunks`` on ``link``: check each payload as it is produced."""
        model = self.model
        for chunk in chunks:
            if not chunk:
                continue
            assert not link.client_gone, "the client wrote to a socket it had closed"
            link.up += chunk
            for sent in link.tap.feed(chunk):
                self.check_sent(link, sent, origin, seqs)
                link.sent.append(sent)
        del model

    def check_sent(self, link: Link, sent: Sent, origin: str, seqs: tuple[int | None, ...]) -> None:
        model = self.model
        if sent.op is None:  # a close frame
            assert link.client_close is None and not link.client_answered_close, (
                "two close frames on one WebSocket"
            )
            if origin == "answer" and sent.close_code == self.closing_code:
                link.client_answered_close = True  # wsproto's echo of the gateway's code
                return
            link.client_close = sent.close_code
            if origin == "answer":
                # Our own close frame, read together with the gateway's (protocol 52).
                assert sent.close_code == 4000, sent
            elif origin == "close":
                assert sent.close_code == link.requested_close
            else:
                # protocol 13, 30: closes the client starts itself (op 7, op 9, zombie,
                # garbage) must keep the session: never 1000/1001.
                assert sent.close_code == 4000, sent
            model.state = State.CLOSING
            return
        # protocol 18 and the fsm's sending rules: nothing before HELLO, nothing after a close.
        assert link.hello, f"op {sent.op} sent before HELLO"
        assert link.client_close is None and not link.client_answered_close, (
            f"op {sent.op} sent after the close frame"
        )
        assert sent.op != 11, "protocol 12: never send op 11"
        if sent.op == 1:
            if origin == "timer":
                # protocol 11: the heartbeat carries the last seq the client got.
                assert sent.data == model.last_seq, (sent.data, model.last_seq)
                if link.unacked_since is None:
                    link.unacked_since = self.now
            else:
                # protocol 12: the answer to op 1 carries the seq at that moment (the
                # read may have delivered more dispatches, or op 9 dropped it since).
                assert sent.data in seqs, (sent.data, seqs)
        elif sent.op == 2:
            # protocol 18: IDENTIFY once per connection, only without a session to resume.
            assert link.identifies == 0 and link.resumes == 0
            assert not model.resumable
            link.identifies += 1
        elif sent.op == 6:
            assert link.identifies == 0 and link.resumes == 0
            assert model.resumable
            assert sent.data["session_id"] == model.session_id  # protocol 26
            assert sent.data["seq"] == model.last_seq
            assert link.url.startswith(link.url)
            link.resumes += 1
        else:
            assert origin == "command", sent

    def client_receive(self, link: Link, data: bytes | None) -> None:
        assert link is self.link
        self.seen_seqs = [self.model.last_seq]
        try:
            out = self.client.receive(data, now=self.now)
        except CloseDiscordConnection as closed:
            self.socket_gone(link, closed)
            return
        except RemoteProtocolError as garbage:
            self.drain(link)
            self.emit(link, [garbage.data], origin="garbage", seqs=tuple(self.seen_seqs))
            return
        self.drain(link)
        self.emit(link, out, origin="receive", seqs=tuple(self.seen_seqs))
        self.authenticate(link)

    def socket_gone(self, link: Link, closed: CloseDiscordConnection) -> None:
        """The client's WebSocket ended: answer, close the socket, update the model."""
        self.dropped_at_close = False
        self.drain(link)
        if closed.data:
            self.closing_code = closed.code
            self.emit(link, [closed.data], origin="answer", seqs=tuple(self.seen_seqs))
        if closed.code not in (None, 1006):
            # A close frame arrived: the handshake must be complete from our side.
            assert link.client_close is not None or link.client_answered_close, (
                "the gateway's close frame was never answered"
            )
        link.client_gone = True
        link.down.clear()
        self.model.connection_ended(link, closed.code)
        if self.dropped_at_close:
            assert self.model.session_id is None, "queued commands dropped; the session lives"
        self.dropped_at_close = None
        self.link = None
        assert self.client.state is self.model.state, (self.client.state, self.model.state)

    def drain(self, link: Link) -> None:
        """Feed the client's events to the model."""
        for event in self.client.events():
            self.on_event(link, event)

    def authenticate(self, link: Link) -> None:
        """IDENTIFY or RESUME right after HELLO."""
        model = self.model
        if model.state is State.HELLO and link.identifies == 0 and link.resumes == 0:
            # The driver follows should_resume; the model says whether that is right.
            assert self.client.should_resume == model.resumable
            if model.resumable:
                data = self.client.resume(TOKEN, now=self.now)
                model.state = State.RESUMING
            else:
                data = self.client.identify(token=TOKEN, intents=INTENTS, now=self.now)
                model.state = State.IDENTIFYING
            self.emit(link, [data], origin="hello")

    def on_event(self, link: Link, event: Event) -> None:
        model = self.model
        if isinstance(event, Hello):
            assert model.state is State.CONNECTING and not link.hello
            link.hello = True
            model.state = State.HELLO
        elif isinstance(event, Ready):
            # A READY read after our close frame still counts (it names a real session).
            assert model.state in (State.IDENTIFYING, State.CLOSING) and link.identifies == 1
            assert not link.got_ready
            # protocol 22: READY opens the session's stream (s=1; 0 from a server that
            # numbers from 0, after the dispatch it sent before READY).
            assert event.seq == model.ready_seq, (event.seq, model.ready_seq)
            assert link.pre_ready == (1 if model.deviations.seq_from_zero else 0)
            link.got_ready = True
            model.session_id = event.session_id
            model.session = self.store.created[event.session_id]
            model.last_seq = event.seq
            self.seen_seqs.append(event.seq)
            model.resume_url = event.resume_gateway_url
            assert (model.resume_url is None) == model.deviations.no_resume_gateway_url
            model.resume_failures = 0
            model.delivered[event.session_id] = [event.seq]
            if model.state is State.IDENTIFYING:
                model.state = State.READY
        elif isinstance(event, Dispatch) and link.identifies == 1 and not link.got_ready:
            # A dispatch before READY on an identifying connection (a server that
            # numbers from 0 sends one): delivered, once, and its s is remembered
            # like any other (protocol 6).
            assert model.deviations.seq_from_zero and link.pre_ready == 0, event
            assert (event.name, event.seq) == (PRE_READY_EVENT, 0), event
            link.pre_ready += 1
            model.last_seq = event.seq
            self.seen_seqs.append(event.seq)
        elif (
            isinstance(event, Resumed)
            and model.deviations.resumed_reuses_seq
            and model.state in (State.RESUMING, State.CLOSING)
        ):
            # A RESUMED numbered like the last event still ends the resume
            # (never a duplicate to drop); the seq stays where it is.
            assert model.session is not None and model.last_seq is not None, event
            assert event.seq == model.last_seq, (event.seq, model.last_seq)
            assert link.resumes == 1 and not link.got_resumed
            link.got_resumed = True
            model.resume_failures = 0
            if model.state is State.RESUMING:
                model.state = State.READY
        elif isinstance(event, Dispatch):
            # protocol 6, 24: every dispatch of the session exactly once, in order
            # (an inclusive replay's overlap, the event the client already had,
            # must be dropped).
            assert model.session is not None and model.last_seq is not None, event
            assert event.seq == model.last_seq + 1, (event.seq, model.last_seq)
            logged = model.logged(event.seq)
            assert logged["t"] == event.name
            assert logged["d"] == event.data or event.name == "RESUMED"
            model.last_seq = event.seq
            self.seen_seqs.append(event.seq)
            assert model.session_id is not None
            model.delivered[model.session_id].append(event.seq)
            if isinstance(event, Resumed):
                assert model.state in (State.RESUMING, State.CLOSING) and link.resumes == 1
                assert not link.got_resumed
                link.got_resumed = True
                model.resume_failures = 0
                if model.state is State.RESUMING:
                    model.state = State.READY
        elif isinstance(event, HeartbeatAck):
            link.unacked_since = None
        elif isinstance(event, InvalidSession):
            if not event.resumable:  # protocol 28: a new session, after 1-5 s
                model.drop_session()
                model.invalid_session_wait = True
        elif isinstance(event, CommandsDropped):
            if self.dropped_at_close is not None:
                self.dropped_at_close = True  # the close that comes with it decides
            else:
                assert model.session_id is None, "queued commands dropped while the session lives"

    def to_server(self, link: Link, data: bytes | None) -> None:
        link.server.receive_data(data, self.now)
        link.pull_server_output()

    # -- rules: the wire ----------------------------------------------------------------

    def busy_links(self, down: bool) -> list[Link]:
        if down:
            return [
                lk
                for lk in self.links
                if lk is self.link and (lk.down or (lk.server_eof_sent and not lk.client_saw_eof))
            ]
        return [lk for lk in self.links if not lk.server_saw_eof and (lk.up or lk.client_gone)]

    @precondition(lambda self: self.busy_links(down=True))
    @rule(size=SPLITS)
    def deliver_to_client(self, size: int) -> None:
        (link,) = self.busy_links(down=True)
        if link.down:
            data = bytes(link.down[:size])
            del link.down[:size]
            self.client_receive(link, data)
        else:
            link.client_saw_eof = True
            self.client_receive(link, None)

    @precondition(lambda self: self.busy_links(down=False))
    @rule(which=st.integers(0, 3), size=SPLITS)
    def deliver_to_server(self, which: int, size: int) -> None:
        links = self.busy_links(down=False)
        link = links[which % len(links)]
        if link.up:
            data = bytes(link.up[:size])
            del link.up[:size]
            self.to_server(link, data)
        else:
            link.server_saw_eof = True
            self.to_server(link, None)

    def flush(self) -> None:
        for _ in range(10_000):
            if self.busy_links(down=False):
                self.deliver_to_server(0, 1 << 30)
            elif self.busy_links(down=True):
                self.deliver_to_client(1 << 30)
            else:
                return
        raise AssertionError("the two sides never stop talking")

    # -- rules: time ----------------------------------------------------------------------

    def deadlines(self) -> list[float]:
        found = [lk.server.next_deadline() for lk in self.links if not lk.server_saw_eof]
        if self.link is not None:
            found.append(self.client.next_deadline())
        found.append(self.reconnect_at)
        return [t for t in found if t is not None]

    def run_timers(self) -> None:
        for link in self.links:
            deadline = link.server.next_deadline()
            if deadline is not None and deadline <= self.now and not link.server_saw_eof:
                link.server.handle_timer(self.now)
                link.pull_server_output()
                # The local gateway is held to the client's rule: a deadline its
                # handle_timer leaves in the past spins the caller's loop.
                after = link.server.next_deadline()
                assert after is None or after > self.now, (deadline, after, self.now)
        link = self.link
        deadline = self.client.next_deadline() if link is not None else None
        if link is not None and deadline is not None and deadline <= self.now:
            before = self.client.state
            self.seen_seqs = [self.model.last_seq]
            try:
                out = self.client.handle_timer(self.now)
            except CloseDiscordConnection as closed:
                self.socket_gone(link, closed)
            else:
                self.emit(link, out, origin="timer")
                after = self.client.next_deadline()
                # A deadline handle_timer leaves in place is a busy loop in every adapter.
                assert self.client.state is not before or after is None or after > self.now, (
                    before,
                    deadline,
                    after,
                    self.now,
                )
        if self.reconnect_at is not None and self.reconnect_at <= self.now:
            self.open_link()

    @rule(seconds=st.floats(0.0, 2.5 * INTERVAL), flush=st.booleans())
    def advance_time(self, seconds: float, flush: bool) -> None:
        """Let virtual time pass; every deadline on the way is honoured in order.

        With ``flush`` the network delivers at once and the driver reconnects
        when told: a cooperative world, held to the liveness bound all along.
        Without, bytes may wait while time passes: anything may time out.
        """
        if not flush:
            self.disturb()
        target = self.now + seconds
        for _ in range(1000):
            if flush:
                self.flush()
                self.reconnect_when_told()
                self.check_liveness()
            due = min(self.deadlines(), default=math.inf)
            if due > target:
                self.now = target
                return
            self.now = max(self.now, due)
            self.run_timers()
        raise AssertionError("timers never stop firing")

    # -- liveness -------------------------------------------------------------------------

    def reconnect_when_told(self) -> None:
        if self.model.state is State.RECONNECTING and self.reconnect_at is None:
            self.schedule_reconnect()

    def cooperative(self) -> bool:
        """Nothing in the world itself stands in the way of reaching READY now."""
        if self.model.state is State.RECONNECTING and self.reconnect_at is None:
            return False  # the driver has not reconnected yet
        link = self.link
        if link is not None:
            server = link.server
            faults = server.faults
            if server.stalled or faults.drop_heartbeat_acks or faults.heartbeat_ack_delay:
                return False
        return True

    def disturb(self) -> None:
        """A step that is not cooperative: the liveness clocks start again after it."""
        self.waiting_since = None
        self.opened.clear()

    def check_liveness(self) -> None:
        # With a cooperative server the client reaches READY (or ends) within a
        # bound, and does not loop through connections (the wedge in
        # `identifying` of a READY dropped as a duplicate; the 4002 loop).
        recent = [t for t in self.opened if t > self.now - 60.0]
        assert len(recent) <= MAX_CONNECTIONS_PER_MINUTE, (
            f"liveness: {len(recent)} connections within a virtual minute of a cooperative "
            f"server (now {self.model.state.value}, {len(self.links)} connections in all)"
        )
        if self.model.state in (State.READY, State.CLOSED) or not self.cooperative():
            self.waiting_since = None
            return
        if self.waiting_since is None:
            self.waiting_since = self.now
        waited = self.now - self.waiting_since
        assert waited <= LIVENESS_BOUND, (
            f"liveness: no READY after {waited:.0f} s of a cooperative server "
            f"(> {LIVENESS_BOUND:.0f} s; stuck in {self.model.state.value}, "
            f"{len(self.links)} connections in all)"
        )

    def settle(self, *, caught_up: bool) -> None:
        """Run a cooperative world (faults cleared, prompt network and driver)
        until the client is READY (and, with ``caught_up``, has every dispatch
        the server logged), or closed for good. The liveness bound holds all along."""
        for link in self.links:
            link.server.faults = ConnectionFaults()
        for _ in range(3000):  # settling may take many backoff rounds
            self.flush()
            if self.ended_not_fatally() and self.reconnect_at is None:
                self.schedule_reconnect()  # the user's own close too: start afresh
            self.check_liveness()
            model = self.model
            if model.state is State.CLOSED and model.fatal is not None:
                return
            if model.state is State.READY and (
                not caught_up or (model.session is not None and model.last_seq == model.session.seq)
            ):
                return
            due = min(self.deadlines(), default=math.inf)
            assert due < math.inf, f"stuck in {model.state}"
            self.now = max(self.now, due)
            self.run_timers()
        raise AssertionError(f"did not settle: {self.model.state} after {len(self.links)} links")

    # -- rules: the server ------------------------------------------------------------------

    def live_server(self) -> GatewayServer | None:
        link = self.link
        if link is None or link.server.state not in (
            ConnectionState.AWAITING_IDENTIFY,
            ConnectionState.CONNECTED,
        ):
            return None
        return link.server

    # Bursts too: with 1-4 per push, two runs in three ended with < 5 delivered.
    @rule(count=st.one_of(st.integers(1, 4), st.integers(5, 30)))
    def push_dispatches(self, count: int) -> None:
        for _ in range(count):
            self.store.dispatch("MESSAGE_CREATE", {"n": self.pushed})
            self.pushed += 1
        for link in self.links:
            link.pull_server_output()

    @precondition(lambda self: self.live_server() is not None)
    @rule(
        fault=st.one_of(
            st.sampled_from(
                [
                    SendHeartbeatRequest(),
                    SendReconnect(),
                    SendInvalidSession(resumable=True),
                    SendInvalidSession(resumable=False),
                    ResetConnection(),
                    Stall(),
                    InvalidateSession(),
                    SendMalformed(),
                ]
            ),
            st.sampled_from(SERVER_CLOSE_CODES).map(Close),
        )
    )
    def server_fault(self, fault: object) -> None:
        link = self.link
        assert link is not None
        self.disturb()
        if isinstance(fault, Close):
            link.injected_closes.add(fault.code)
        link.server.inject(fault, self.now)  # type: ignore[arg-type]
        link.pull_server_output()

    @precondition(lambda self: self.link is not None)
    @rule(drop=st.sampled_from([0.0, 0.0, 0.5, 1.0]), delay=st.sampled_from([0.0, 1.0, 12.0]))
    def server_ack_behaviour(self, drop: float, delay: float) -> None:
        """Drop a share of the heartbeat ACKs, or hold them back."""
        assert self.link is not None
        server = self.link.server
        server.faults = replace(server.faults, drop_heartbeat_acks=drop, heartbeat_ack_delay=delay)
        self.disturb()

    # -- rules: the client --------------------------------------------------------------------

    @precondition(lambda self: self.link is not None)
    @rule()
    def send_command(self) -> None:
        link = self.link
        assert link is not None
        if self.model.state not in SENDING_STATES:
            # The fsm's rule: no command before IDENTIFY/RESUME or while closing.
            try:
                self.client.send_command(3, PRESENCE, now=self.now)
            except LocalProtocolError:
                return
            raise AssertionError(f"a command was accepted in state {self.model.state}")
        self.emit(link, [self.client.send_command(3, PRESENCE, now=self.now)], origin="command")

    @precondition(lambda self: self.link is not None and self.model.state in OPEN_STATES)
    @rule(code=st.sampled_from(CLIENT_CLOSE_CODES))
    def client_close(self, code: int) -> None:
        link = self.link
        assert link is not None
        link.requested_close = code
        self.disturb()
        data = self.client.close(code, now=self.now)
        if data:
            self.emit(link, [data], origin="close")
            return
        # No WebSocket yet (the upgrade is unanswered): the connection just ends,
        # and our code decides as if the gateway had echoed it (protocol 30).
        link.client_close = code
        link.client_gone = True
        link.down.clear()
        self.model.connection_ended(link, code)
        self.link = None

    @precondition(lambda self: self.ended_not_fatally() and self.reconnect_at is None)
    @rule()
    def client_reconnect(self) -> None:
        """Reconnect as told, after the delay ``reconnect()`` asks for (also after
        the user's own close, which ends the connection: that starts afresh)."""
        assert self.client.should_reconnect() is (self.model.state is State.RECONNECTING)
        self.schedule_reconnect()

    def ended_not_fatally(self) -> bool:
        model = self.model
        return model.state is State.RECONNECTING or (
            model.state is State.CLOSED and model.fatal is None
        )

    def schedule_reconnect(self) -> None:
        model = self.model
        delay = self.client.reconnect()
        assert delay >= 0
        if model.invalid_session_wait:
            assert delay >= 1.0, delay  # protocol 28 [hist]: 1-5 s after op 9 d:false
            model.invalid_session_wait = False
        assert delay <= 60.0 + 5.0, delay  # the backoff cap plus the op 9 wait
        model.state = State.CONNECTING
        self.reconnect_at = self.now + delay

    @precondition(
        lambda self: self.link is not None and self.model.state in (*OPEN_STATES, State.CLOSING)
    )
    @rule()
    def client_abandons_socket(self) -> None:
        """The caller gives up on a socket (an error, a timeout) and reconnects."""
        link = self.link
        assert link is not None
        self.disturb()
        link.client_gone = True
        link.down.clear()
        self.link = None
        self.model.account_for_lost_connection(link)
        self.model.state = State.RECONNECTING
        self.schedule_reconnect()

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def state_matches_the_model(self) -> None:
        # spec: the state is one of the table's states, and the one the model expects.
        assert self.client.state in State
        assert self.client.state is self.model.state, (self.client.state, self.model.state)
        assert self.client.should_resume == self.model.resumable
        assert self.client.session_id == self.model.session_id

    @invariant()
    def sequence_never_goes_backwards(self) -> None:
        # protocol 6: within a session the client's seq is the last one delivered.
        assert self.client.sequence == self.model.last_seq
        first = self.model.ready_seq
        for seqs in self.model.delivered.values():
            assert seqs == list(range(first, first + len(seqs)))

    @invariant()
    def reaches_ready_with_a_cooperative_server(self) -> None:
        self.check_liveness()

    @invariant()
    def fatal_codes_stop_everything(self) -> None:
        # protocol 31: 4004, 4010-4014 end in CLOSED and nothing reconnects.
        if self.model.fatal is not None:
            assert self.client.state is State.CLOSED
            assert not self.client.should_reconnect()
            assert self.client.fatal_close_code == self.model.fatal
            assert self.reconnect_at is None and self.link is None

    @invariant()
    def zombies_are_closed_within_one_interval(self) -> None:
        # protocol 13: an ACK missed across a whole interval closes the connection.
        link = self.link
        interval = self.client.heartbeat_interval
        if link is None or link.unacked_since is None or interval is None:
            return
        if self.model.state in HEARTBEAT_STATES:
            assert self.now < link.unacked_since + interval + 1e-9, (
                link.unacked_since,
                self.now,
            )

    @invariant()
    def the_server_never_punishes_the_client(self) -> None:
        # protocol 12, 18, 41: the gateway never has a reason to close with 4001-4008.
        for link in self.links:
            server = link.server
            code = server.close_code
            if server.closed_by != "server" or code is None or code in link.injected_closes:
                continue
            if code == 4003 and any(p["op"] == 9 for p in server.sent):
                continue  # protocol 56: a payload in flight when op 9 went out gets 4003
            assert code not in CLIENT_FAULT_CODES, (code, server.close_reason)

    # -- teardown: settle, then nothing may be missing ---------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "client"):
            return
        # What the run exercised (shown by --hypothesis-show-statistics).
        note_event(f"connections: {min(len(self.links), 6)}")
        note_event(f"resumed: {sum(lk.got_resumed for lk in self.links) > 0}")
        note_event(f"sessions: {min(len(self.model.delivered), 3)}")
        note_event(f"fatal: {self.model.fatal is not None}")
        delivered = sum(map(len, self.model.delivered.values()))
        note_event(f"dispatches delivered: {min(delivered // 5 * 5, 30)}+")
        note_event(f"server deviations: {len(self.model.deviations.names)}")
        # Settling must reach READY: a run that cannot is a livelock (the 1,505
        # connection loop of test_a_replayed_resumed_does_not_livelock_the_session)
        # or a wedge (READY dropped as a duplicate): the liveness bound says which.
        self.settle(caught_up=True)
        if self.model.state is State.CLOSED:
            return
        self.state_matches_the_model()
        session = self.model.session
        assert session is not None
        # protocol 24: no loss: the live session got every dispatch the server logged for it.
        assert self.model.last_seq == session.seq, (self.model.last_seq, session.seq)


GatewayMachine.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None
)
TestGatewayMachine = GatewayMachine.TestCase


class LifecycleMachine(RuleBasedStateMachine):
    """Every (state, trigger) pair: legal moves follow the table, illegal ones change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.lifecycle = Lifecycle()
        self.expected = State.CONNECTING

    @rule(trigger=st.sampled_from(list(Trigger)))
    def fire(self, trigger: Trigger) -> None:
        dest = _table().get((self.expected, trigger))
        if dest is None:
            try:
                self.lifecycle.fire(trigger)
            except LocalProtocolError as exc:
                assert trigger.value in str(exc) and self.expected.value in str(exc)
            else:
                raise AssertionError(f"{trigger} was accepted in {self.expected}")
        else:
            assert self.lifecycle.fire(trigger) is self.expected
            self.expected = dest

    @invariant()
    def state_is_the_tables(self) -> None:
        assert self.lifecycle.state is self.expected
        # Only reconnect() leads out of CLOSED (after the user's close; the
        # connection refuses it after a fatal code, protocol 31).
        assert all(t is Trigger.RECONNECT for src, t in _table() if src is State.CLOSED)


LifecycleMachine.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None
)
TestLifecycleMachine = LifecycleMachine.TestCase
