"""Time as an input: next_deadline() / handle_timer(now), and the 0.4.0 heartbeat()."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discord_gateway import (
    CloseDiscordConnection,
    ConfigurationError,
    DiscordConnection,
    HeartbeatAck,
    RemoteProtocolError,
    State,
)
from discord_gateway.connection import CLOSE_TIMEOUT

from peer import Link


def hello_link(interval_ms: float = 10_000, seed: int = 1, **kwargs: Any) -> Link:
    kwargs.setdefault("rng", random.Random(seed))
    conn = DiscordConnection("wss://g", clock=_no_clock, **kwargs)
    link = Link(conn)
    link.now = 100.0
    link.hello(interval_ms)
    return link


def _no_clock() -> float:
    raise AssertionError("the core read the clock although it was given `now`")


def fire(link: Link, now: float) -> list[bytes]:
    link.now = now
    out = link.conn.handle_timer(now)
    for chunk in out:
        link.client(chunk)
    return out


def test_no_heartbeat_before_hello_only_the_hello_timeout() -> None:
    conn = DiscordConnection("wss://g", hello_timeout=15.0)
    assert conn.next_deadline() is None
    assert conn.handle_timer(0.0) == []
    conn.connect(now=100.0)
    assert conn.next_deadline() == 115.0
    assert conn.handle_timer(114.9) == []
    with pytest.raises(CloseDiscordConnection) as info:
        conn.handle_timer(115.0)
    assert info.value.code == 1006
    assert conn.state is State.RECONNECTING


def test_first_heartbeat_is_jittered_then_every_interval() -> None:
    link = hello_link(10_000, seed=5)
    expected_jitter = random.Random(5).random()
    first = link.conn.next_deadline()
    assert first == pytest.approx(100.0 + 10.0 * expected_jitter)  # protocol 10
    assert fire(link, first - 0.001) == []  # not yet due
    assert len(fire(link, first)) == 1
    assert link.peer.received[-1] == {"op": 1, "d": None}  # protocol 11: null before any s
    link.server({"op": 11})
    assert link.conn.next_deadline() == pytest.approx(first + 10.0)


def test_heartbeats_carry_the_last_sequence() -> None:
    link = hello_link()
    link.identify()
    link.ready(seq=1)
    link.dispatch(2)
    link.dispatch(5)
    fire(link, link.conn.next_deadline() or 0)
    assert link.peer.received[-1] == {"op": 1, "d": 5}


def test_zombie_connection_is_closed_resumably_within_one_interval() -> None:
    # protocol 13: no ACK between two heartbeats -> close with a non-1000/1001 code.
    link = hello_link(10_000)
    link.identify()
    link.ready()
    first = link.conn.next_deadline()
    assert first is not None
    fire(link, first)  # heartbeat, never acknowledged
    second = link.conn.next_deadline()
    assert second == pytest.approx(first + 10.0)
    fire(link, second)
    assert link.peer.received[-1] == ("close", 4000)
    assert link.closed is not None  # the peer answered
    assert link.conn.state is State.RECONNECTING
    assert link.conn.should_resume


def test_a_slightly_late_timer_keeps_the_cadence() -> None:
    # protocol 10: every interval after the first beat, not every interval after the
    # moment the timer happened to fire.
    link = hello_link(10_000)
    first = link.conn.next_deadline()
    assert first is not None
    fire(link, first + 0.5)
    assert link.conn.next_deadline() == pytest.approx(first + 10.0)


# Issue 12 bounded the interval: 1 ms to 1 hour (0.5 ms is now refused).
@pytest.mark.parametrize("interval_ms", [1, 1.5, 41250, 3_600_000])
def test_any_heartbeat_interval_in_range_is_accepted(interval_ms: float) -> None:
    link = hello_link(interval_ms)
    assert link.conn.state is State.HELLO
    assert link.conn.heartbeat_interval == interval_ms / 1000


def test_no_timer_work_once_the_websocket_is_gone() -> None:
    link = hello_link(10_000)
    link.identify()
    link.ready()
    fire(link, link.conn.next_deadline() or 0)  # a heartbeat in flight
    with pytest.raises(CloseDiscordConnection):
        link.conn.receive(None, now=link.now)  # transport lost
    assert link.conn.state is State.RECONNECTING
    assert link.conn.next_deadline() is None
    assert link.conn.handle_timer(link.now + 100.0) == []  # no beat, no zombie close


def test_a_late_timer_does_not_burst() -> None:
    link = hello_link(10_000)
    first = link.conn.next_deadline()
    assert first is not None
    fire(link, first + 35.0)  # the event loop was blocked for 3.5 intervals
    assert link.conn.next_deadline() == pytest.approx(first + 45.0)


def test_ack_state_is_reset_by_every_hello() -> None:
    # protocol 14: a stale "unacked" flag from the last connection loops on 4000.
    link = hello_link(10_000)
    fire(link, link.conn.next_deadline() or 0)
    assert not link.conn.acknowledged
    with pytest.raises(CloseDiscordConnection):
        link.conn.receive(None, now=link.now)
    link.conn.reconnect()
    assert link.conn.acknowledged  # nothing is in flight on the next WebSocket
    again = Link(link.conn)
    again.now = 200.0
    again.hello(10_000)
    assert link.conn.acknowledged
    assert len(fire(again, link.conn.next_deadline() or 0)) == 1
    assert again.peer.received[-1]["op"] == 1


def test_heartbeat_request_is_answered_at_once() -> None:
    link = hello_link()
    link.identify()
    out = link.server({"op": 1, "d": None})  # protocol 12
    assert len(out) == 1
    assert link.peer.received[-1] == {"op": 1, "d": None}
    # it does not count as an unacknowledged heartbeat
    assert link.conn.acknowledged


def test_the_answer_to_a_heartbeat_request_is_timed_too() -> None:
    # An ACK is an ACK (protocol 13): the one answering our reply to op 1 gives a
    # round trip; a second ACK has nothing left to time and changes nothing.
    link = hello_link(dispatch_handled=True)
    link.identify()
    link.server({"op": 1, "d": None})  # answered at once, at t=100
    link.now = 100.5
    link.server({"op": 11})
    link.server({"op": 11})
    first, second = [e for e in link.events() if isinstance(e, HeartbeatAck)]
    assert first.latency == pytest.approx(0.5)
    assert second.latency is None
    assert link.conn.latency == pytest.approx(0.5)


def test_latency_is_the_mean_of_the_last_five_round_trips() -> None:
    link = hello_link(10_000)
    for round_trip in (1.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        due = link.conn.next_deadline() or 0
        fire(link, due)
        link.now = due + round_trip
        link.server({"op": 11})
    assert link.conn.latency == pytest.approx(0.3)  # the first one is forgotten


def test_latency_from_the_ack() -> None:
    link = hello_link()
    assert link.conn.latency is None
    due = link.conn.next_deadline() or 0
    fire(link, due)
    link.now = due + 0.25
    link.server({"op": 11})
    assert link.conn.latency == pytest.approx(0.25)


@pytest.mark.parametrize(("code", "resumable"), [(4000, True), (1000, False)])
def test_close_handshake_times_out_on_a_dead_peer(code: int, resumable: bool) -> None:
    link = hello_link()
    link.identify()
    link.ready()
    link.conn.close(code, now=link.now)
    deadline = link.conn.next_deadline()
    assert deadline == link.now + CLOSE_TIMEOUT
    assert link.conn.handle_timer(deadline - 0.01) == []
    with pytest.raises(CloseDiscordConnection) as info:
        link.conn.handle_timer(deadline)
    assert info.value.code == 1006
    # Our 1000 ends the connection (closed) even when the gateway never answers it.
    assert link.conn.state is (State.RECONNECTING if resumable else State.CLOSED)
    # protocol 30: our code still decides when the gateway never answers it.
    assert link.conn.should_resume is resumable


def test_no_heartbeat_while_closing() -> None:
    link = hello_link()
    due = link.conn.next_deadline() or 0
    link.conn.close(4000, now=link.now)
    assert link.conn.handle_timer(min(due, (link.conn.next_deadline() or 0) - 0.001)) == []


def test_manual_heartbeat_0_4_0_style() -> None:
    link = hello_link()
    link.client(link.conn.heartbeat(now=1.0))
    assert link.peer.received[-1] == {"op": 1, "d": None}
    assert not link.conn.acknowledged
    # A second one without an ACK is the zombie close, as in 0.4.0.
    frame = link.conn.heartbeat(now=2.0)
    assert link.conn.state is State.CLOSING
    link.client(frame)
    assert ("close", 4000) in link.peer.received


def test_manual_heartbeat_without_ack_expectation() -> None:
    link = hello_link()
    link.client(link.conn.heartbeat(acknowledge=False, now=1.0))
    assert link.conn.acknowledged


@pytest.mark.parametrize("ending", [{"op": 7}, {"op": 9, "d": False}, '{"broken'])
def test_the_clock_is_never_read_when_now_is_given(ending: dict[str, Any] | str) -> None:
    # The clock of hello_link() raises: every method given `now` must use it.
    link = hello_link()
    link.identify()
    link.ready()
    conn = link.conn
    for command in (
        conn.update_presence(status="idle", now=link.now),
        conn.update_voice_state(1, 2, now=link.now),
        conn.request_guild_members(1, query="", limit=0, now=link.now),
        conn.request_soundboard_sounds([1], now=link.now),
        conn.request_channel_info(1, now=link.now),
    ):
        link.client(command)
    assert [p["op"] for p in link.peer.received[-5:]] == [3, 4, 8, 31, 43]
    link.server({"op": 1, "d": None})  # answered at once
    link.now = 120.0
    if isinstance(ending, str):
        with pytest.raises(RemoteProtocolError):
            link.server(ending)
    else:
        link.server(ending)
    assert conn.state is State.CLOSING
    assert conn.next_deadline() == 120.0 + CLOSE_TIMEOUT


def test_clock_is_read_when_no_now_is_given() -> None:
    ticks = iter([50.0, 51.0, 52.0, 53.0])
    conn = DiscordConnection("wss://g", rng=random.Random(0), clock=lambda: next(ticks))
    link = Link(conn)
    link.conn.receive(link.peer.send({"op": 10, "d": {"heartbeat_interval": 1000}}))
    deadline = conn.next_deadline()  # HELLO read 50.0: first beat within one interval
    assert deadline is not None and 50.0 <= deadline <= 51.0


# -- heartbeat_grid: deadlines on a shared grid, so shards beat together -------------------


def _on_grid(deadline: float, grid: float) -> bool:
    return abs(deadline / grid - round(deadline / grid)) < 1e-6


def test_heartbeat_grid_is_off_by_default() -> None:
    link = hello_link(41_250, seed=5)
    assert link.conn.next_deadline() == 100.0 + 41.25 * random.Random(5).random()


@given(
    grid=st.sampled_from([0.05, 0.25, 0.5, 1.0, 2.5]),
    interval_ms=st.integers(1_000, 60_000),
    hello_at=st.floats(0.0, 1e6),
    seed=st.integers(0, 2**32 - 1),
    lateness=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=6),
)
def test_heartbeat_deadlines_are_on_the_grid_and_never_late(
    grid: float, interval_ms: int, hello_at: float, seed: int, lateness: list[float]
) -> None:
    # protocol 10, 13: at most one grid step early, never later than the exact time.
    conn = DiscordConnection("wss://g", rng=random.Random(seed), heartbeat_grid=grid)
    link = Link(conn)
    link.now = hello_at
    link.hello(interval_ms)
    interval = interval_ms / 1000
    step = min(grid, interval / 16)  # a grid coarser than 1/16 of the interval is capped
    exact = hello_at + interval * random.Random(seed).random()
    deadline = conn.next_deadline()
    assert deadline is not None and _on_grid(deadline, step)
    # The first one: jittered, at the grid's resolution (float rounding may cost a step).
    assert exact - step - 1e-9 <= deadline <= exact
    for late in lateness:
        fire(link, max(deadline, hello_at) + late * interval)
        link.server({"op": 11})
        after = conn.next_deadline()
        assert after is not None and _on_grid(after, step)
        assert deadline + interval - step - 1e-9 <= after <= deadline + interval  # phase-locked
        deadline = after


def test_connections_on_one_clock_beat_together() -> None:
    # Two shards greeted 0.3 s apart whose jitter falls in the same 1 s slot share a
    # deadline: an event loop runs both heartbeats in one wake-up.
    a = hello_link(41_250, heartbeat_grid=1.0, rng=_Fixed(0.5))
    b = DiscordConnection("wss://g", heartbeat_grid=1.0, rng=_Fixed(0.5), clock=_no_clock)
    link_b = Link(b)
    link_b.now = 100.3
    link_b.hello(41_250)
    first = a.conn.next_deadline()
    assert first == b.next_deadline() == 120.0  # 120.625 and 120.925, on the grid
    fire(a, first)
    fire(link_b, first)
    assert a.conn.next_deadline() == b.next_deadline() == 161.0  # 41 s later: not late


def test_the_grid_keeps_the_first_heartbeat_spread() -> None:
    # protocol 10: the jitter survives, at the grid's resolution: 41 slots of 1 s.
    rng = random.Random(7)
    slots = set()
    for _ in range(400):
        link = hello_link(41_250, heartbeat_grid=1.0, rng=rng)
        deadline = link.conn.next_deadline()
        assert deadline is not None
        slots.add(deadline)
    # Every whole second of the interval, and nothing outside it (141 holds 0.25 s).
    assert {float(t) for t in range(100, 141)} <= slots <= {float(t) for t in range(100, 142)}


def test_a_late_timer_on_the_grid_does_not_burst() -> None:
    link = hello_link(10_000, heartbeat_grid=0.5)
    first = link.conn.next_deadline()
    assert first is not None
    fire(link, first + 35.2)  # the event loop was blocked for 3.5 intervals
    assert link.conn.next_deadline() == math.floor((first + 45.2) / 0.5) * 0.5


def test_a_manual_heartbeat_moves_the_next_one_onto_the_grid() -> None:
    link = hello_link(10_000, heartbeat_grid=0.5)
    link.client(link.conn.heartbeat(now=103.3))
    assert link.conn.next_deadline() == 113.0


@pytest.mark.parametrize("grid", [-1, -0.5, math.nan, math.inf, "1", True, None])
def test_heartbeat_grid_must_be_seconds(grid: Any) -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_grid must be a number of seconds"):
        DiscordConnection("wss://g", heartbeat_grid=grid)


class _Fixed(random.Random):
    """Every jitter the same."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value
