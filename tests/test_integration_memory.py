"""The sans-I/O client core against the local gateway, in memory and in virtual time.

``Bot`` is the smallest honest driver of ``DiscordConnection`` (its wiring is
``tests/memory_link.py``): it identifies or resumes on HELLO, writes whatever
either side produces, runs both sides' timers, and reconnects when the client
says the WebSocket is gone. The invariant every scenario checks: across all
connections, the bot sees every dispatch of its session exactly once, in seq
order - nothing lost, nothing duplicated.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway import (
    Dispatch,
    Hello,
    Ready,
    Resumed,
    State,
)
from discord_gateway.testing import (
    AfterDispatches,
    Close,
    ConnectionFaults,
    ConnectionState,
    CorruptCompressed,
    InvalidateSession,
    OnHeartbeat,
    ResetConnection,
    SendHeartbeatRequest,
    SendInvalidSession,
    SendMalformed,
    SendReconnect,
    ServerConfig,
    SessionStore,
    Stall,
)
from tests.memory_link import MemoryLink

INTERVAL = 10.0


class Bot(MemoryLink):
    """The driver (``tests/memory_link.py``) and what the scenarios read of it."""

    def push(self, count: int, start: int = 0) -> None:
        for n in range(start, start + count):
            self.store.dispatch("MESSAGE_CREATE", {"n": n})
        self.pump()

    # -- reading -----------------------------------------------------------------

    def dispatches(self) -> list[Dispatch]:
        return [e for e in self.events if isinstance(e, Dispatch)]

    def messages(self) -> list[int]:
        return [e.data["n"] for e in self.dispatches() if e.name == "MESSAGE_CREATE"]

    def session_seqs(self) -> list[int | None]:
        """The seqs seen since the last READY (one session's stream)."""
        last_ready = max(i for i, e in enumerate(self.dispatches()) if isinstance(e, Ready))
        return [e.seq for e in self.dispatches()[last_ready:]]


def new_store(**config: object) -> SessionStore:
    defaults: dict[str, object] = {
        "heartbeat_interval": INTERVAL,
        "heartbeat_grace": 2.0,
        "url": "ws://gateway.local/",
        "resume_gateway_url": "ws://resume.gateway.local/",
        "guild_ids": (),
        # op 9 tests re-identify 1-5 s later, sooner than protocol 21's 5 s bucket
        # allows; the identify concurrency limit is opted out of here.
        "enforce_identify_concurrency": False,
    }
    return SessionStore(ServerConfig(**{**defaults, **config}), seed=1)  # type: ignore[arg-type]


def assert_exactly_once(bot: Bot) -> None:
    seqs = bot.session_seqs()
    assert seqs == list(range(1, len(seqs) + 1)), seqs


# -- the scenario -------------------------------------------------------------


@pytest.mark.parametrize(
    "client_kwargs",
    [
        {},
        {"compress": "zlib-stream"},
        {"compress": "zstd-stream"},
        {"compress": True},
        {"encoding": "etf"},
    ],
    ids=["json", "zlib-stream", "zstd-stream", "payload-compression", "etf"],
)
def test_identify_ready_dispatch_reconnect_resume_replay(client_kwargs: dict[str, object]) -> None:
    store = new_store()
    bot = Bot(store, **client_kwargs)
    ready = bot.events[1]
    assert isinstance(bot.events[0], Hello) and isinstance(ready, Ready)
    assert ready.resume_gateway_url == "ws://resume.gateway.local/"
    assert bot.client.state is State.READY
    bot.push(3)

    bot.servers[0].inject(SendReconnect())  # op 7: the client closes with 4000
    bot.pump()
    assert bot.closes == [4000]
    assert bot.servers[0].close_code == 4000 and bot.servers[0].closed_by == "client"
    bot.push(2, start=3)  # missed while disconnected: kept for the replay
    bot.advance(bot.now + 1)

    assert len(bot.servers) == 2
    assert bot.targets[1].startswith("ws://resume.gateway.local/")  # protocol 26
    assert bot.servers[1].received[0].op == 6  # RESUME, not IDENTIFY
    assert isinstance(bot.events[-1], Resumed)
    bot.push(1, start=5)
    assert bot.messages() == [0, 1, 2, 3, 4, 5]
    assert_exactly_once(bot)
    assert [e.seq for e in bot.dispatches()] == [1, 2, 3, 4, 5, 6, 7, 8]  # RESUMED has s=7
    # The server itself replayed exactly the missed ones (the client would hide duplicates).
    assert [p["s"] for p in bot.servers[1].sent if p["op"] == 0] == [5, 6, 7, 8]


def test_split_writes_and_split_zlib_messages() -> None:
    store = new_store()
    faults = ConnectionFaults(split_writes=True, split_messages=3)
    bot = Bot(store, compress="zlib-stream", faults=lambda n: faults)
    bot.push(20)
    assert bot.messages() == list(range(20))
    assert_exactly_once(bot)


def test_heartbeats_flow_in_virtual_time() -> None:
    store = new_store()
    bot = Bot(store)
    bot.advance(5 * INTERVAL)
    assert bot.closes == []
    assert bot.servers[0].heartbeats >= 4
    assert bot.client.latency == 0.0


# -- faults: the client recovers without losing or repeating a dispatch --------------------


@pytest.mark.parametrize(
    ("fault", "close_code"),
    [
        (Close(1001, "Discord WebSocket requesting client reconnect."), 1001),  # protocol 52
        (Close(1000), 1000),  # protocol 32: a server 1000 is not the client's
        (Close(4000), 4000),
        (ResetConnection(), 1006),  # protocol 53
        (SendInvalidSession(resumable=True), 4000),
        (SendMalformed(), 4000),
        (CorruptCompressed(), 4000),
    ],
)
def test_resumable_disruptions(fault: object, close_code: int) -> None:
    store = new_store()
    bot = Bot(store, compress="zlib-stream")
    bot.push(2)
    bot.servers[0].inject(fault)  # type: ignore[arg-type]
    bot.pump()
    assert bot.closes == [close_code]
    bot.push(2, start=2)
    bot.advance(bot.now + 70)
    assert bot.servers[-1].received[0].op == 6
    assert isinstance(bot.dispatches()[-1], Resumed)
    assert bot.messages() == [0, 1, 2, 3]
    assert_exactly_once(bot)


def test_op9_false_starts_a_new_session() -> None:
    store = new_store()
    bot = Bot(store)
    bot.push(2)
    bot.servers[0].inject(SendInvalidSession(resumable=False))
    bot.pump()
    bot.advance(bot.now + 10)  # 1-5 s wait (protocol 28)
    assert bot.servers[-1].received[0].op == 2  # IDENTIFY
    assert sum(isinstance(e, Ready) for e in bot.events) == 2
    assert bot.targets[-1].startswith("ws://gateway.local/")  # protocol 27: the cached URL
    assert_exactly_once(bot)


def test_invalidated_session_fails_the_resume_then_identifies() -> None:
    store = new_store()
    bot = Bot(store)
    bot.servers[0].inject(InvalidateSession())
    bot.servers[0].inject(SendReconnect())
    bot.pump()
    bot.advance(bot.now + 10)
    ops = [[r.op for r in s.received if r.op != 1] for s in bot.servers]
    assert ops[1] == [6]  # the resume, answered with op 9 d:false
    assert ops[-1] == [2]
    assert sum(isinstance(e, Ready) for e in bot.events) == 2


def test_dropped_acks_make_the_client_close_a_zombie_and_resume() -> None:
    store = new_store()
    faults = [ConnectionFaults(drop_heartbeat_acks=1.0)]
    bot = Bot(store, faults=lambda n: faults[n - 1] if n <= len(faults) else None)
    bot.push(1)
    bot.advance(3 * INTERVAL)
    assert bot.closes[0] == 4000  # protocol 13: not 1000/1001, so the session survives
    assert bot.servers[0].close_code == 4000
    assert isinstance(bot.dispatches()[-1], Resumed)
    assert_exactly_once(bot)


def test_delayed_acks_within_the_interval_are_fine() -> None:
    store = new_store()
    bot = Bot(store, faults=lambda n: ConnectionFaults(heartbeat_ack_delay=INTERVAL / 2))
    bot.advance(6 * INTERVAL)
    assert bot.closes == []
    assert bot.client.latency == INTERVAL / 2


def test_a_stalled_server_is_a_zombie_the_client_leaves() -> None:
    store = new_store()
    first = ConnectionFaults(script=((AfterDispatches(1), Stall()),))
    bot = Bot(store, faults=lambda n: first if n == 1 else None)
    bot.push(2)  # written to the log, never to the stalled socket
    assert bot.messages() == []
    bot.advance(5 * INTERVAL)
    assert bot.closes[0] == 1006  # our close frame was never answered
    assert bot.messages() == [0, 1]  # replayed on resume
    assert_exactly_once(bot)


def test_heartbeat_request_is_answered_at_once() -> None:
    store = new_store()
    bot = Bot(store)
    before = bot.servers[0].heartbeats
    bot.servers[0].inject(SendHeartbeatRequest())
    bot.pump()
    assert bot.servers[0].heartbeats == before + 1  # protocol 12


def test_reconnect_instead_of_hello() -> None:
    store = new_store()
    first = ConnectionFaults(reconnect_instead_of_hello=True)
    bot = Bot(store, faults=lambda n: first if n == 1 else None)
    bot.advance(10)
    assert bot.closes[0] == 4000
    assert isinstance(bot.events[-1], Dispatch) and bot.events[-1].name == "READY"


def test_close_4009_ends_the_session_and_the_bot_identifies() -> None:
    store = new_store()
    first = ConnectionFaults(script=((OnHeartbeat(2), Close(4009)),))
    bot = Bot(store, faults=lambda n: first if n == 1 else None)
    bot.advance(4 * INTERVAL)
    assert bot.closes[0] == 4009
    assert sum(isinstance(e, Ready) for e in bot.events) == 2  # protocol H: identify


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
def test_fatal_closes_stop_the_client(code: int) -> None:
    store = new_store()
    faults = ConnectionFaults(script=((AfterDispatches(1), Close(code)),))
    bot = Bot(store, faults=lambda n: faults)
    bot.advance(100)
    assert bot.closes == [code]
    assert len(bot.servers) == 1 and not bot.client.should_reconnect()  # protocol 31


# -- property: whatever resumable trouble happens, every dispatch arrives exactly once ----------

RESUMABLE_FAULTS = [
    SendReconnect(),
    Close(4000),
    Close(1000),
    Close(1001),
    ResetConnection(),
    SendInvalidSession(resumable=True),
    SendMalformed(),
    CorruptCompressed(),
    SendHeartbeatRequest(),
    Stall(),
]


@given(
    compress=st.sampled_from([None, "zlib-stream", "zstd-stream"]),
    actions=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(1, 4)),
            st.tuples(st.just("fault"), st.sampled_from(RESUMABLE_FAULTS)),
            st.tuples(st.just("wait"), st.floats(0.0, 3 * INTERVAL)),
        ),
        max_size=12,
    ),
)
@settings(max_examples=60, deadline=None)
def test_every_dispatch_arrives_exactly_once(
    compress: str | None, actions: list[tuple[str, object]]
) -> None:
    store = new_store()
    bot = Bot(store, compress=compress)
    pushed = 0
    for kind, arg in actions:
        if kind == "push":
            assert isinstance(arg, int)
            bot.push(arg, start=pushed)
            pushed += arg
        elif kind == "fault":
            server = bot.server
            if server is not None and server.state is ConnectionState.CONNECTED:
                server.inject(arg)  # type: ignore[arg-type]
                bot.pump()
        else:
            assert isinstance(arg, float)
            bot.advance(bot.now + arg)
    bot.advance(bot.now + 10 * INTERVAL)  # let any reconnect finish
    assert bot.client.state is State.READY
    assert sum(isinstance(e, Ready) for e in bot.events) == 1  # never a new session
    assert bot.messages() == list(range(pushed))
    assert_exactly_once(bot)


def test_the_clients_send_limit_keeps_the_server_from_closing_4008() -> None:
    store = new_store()
    bot = Bot(store)
    presence = {"since": None, "activities": [], "status": "online", "afk": False}
    for _ in range(300):
        data = bot.client.send_command(3, presence, now=bot.now)
        if data:
            bot.to_server(data)
    bot.servers[0].inject(SendHeartbeatRequest())  # answers to op 1 count on the server too
    bot.pump()
    bot.advance(200.0)
    server = bot.servers[0]
    assert server.close_code is None and bot.closes == []  # protocol 41: never 4008
    assert sum(r.op == 3 for r in server.received) == 300  # all of them, eventually
