"""Send rate limit (protocol 41): 120 per 60 s per connection, heartbeats never starved."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway import (
    CommandQueueFull,
    CommandsDropped,
    DiscordConnection,
    State,
)
from discord_gateway.ratelimit import SEND_LIMIT, SEND_WINDOW, CommandRateLimiter

from peer import Link

PRESENCE = {"since": None, "activities": [], "status": "online", "afk": False}


def ready_link(interval_ms: int = 41250, **kwargs: object) -> Link:
    conn = DiscordConnection("wss://g", rng=random.Random(0), **kwargs)  # type: ignore[arg-type]
    link = Link(conn)
    link.hello(interval_ms)
    link.identify()
    link.ready()
    link.events()
    return link


def test_budget_reserves_room_for_heartbeats() -> None:
    # 41.25 s interval: 2 heartbeats per window, +3 reserve -> 115 commands.
    assert CommandRateLimiter.budget(41.25) == SEND_LIMIT - 2 - 3
    assert CommandRateLimiter.budget(1.0) == SEND_LIMIT - 60 - 3
    assert CommandRateLimiter.budget(0.01) == 1  # never zero


def commands_received(link: Link) -> int:
    return sum(1 for p in link.peer.received if isinstance(p, dict) and p["op"] == 3)


def test_commands_over_the_budget_are_queued_and_released_by_the_timer() -> None:
    link = ready_link()
    conn = link.conn
    budget = CommandRateLimiter.budget(conn.heartbeat_interval)
    sent = [conn.send_command(3, PRESENCE, now=10.0) for _ in range(budget + 5)]
    assert all(sent[:budget]) and sent[budget:] == [b""] * 5
    for chunk in sent[:budget]:
        link.client(chunk)
    assert commands_received(link) == budget
    # The queue is released when the first of those leaves the window.
    assert conn.next_deadline() == pytest.approx(min(10.0 + SEND_WINDOW, link_heartbeat(conn)))
    for chunk in conn.handle_timer(10.0 + SEND_WINDOW - 0.001):
        link.client(chunk)
    assert commands_received(link) == budget
    for chunk in conn.handle_timer(10.0 + SEND_WINDOW):
        link.client(chunk)
    assert commands_received(link) == budget + 5


def link_heartbeat(conn: DiscordConnection) -> float:
    heartbeat = conn._next_heartbeat
    assert heartbeat is not None
    return heartbeat


def test_heartbeats_are_never_starved_by_commands() -> None:
    link = ready_link(interval_ms=10_000)
    conn = link.conn
    for _ in range(200):
        link.client(conn.send_command(3, PRESENCE, now=1.0))
    due = conn.next_deadline()
    assert due is not None and due <= 10.0
    (heartbeat,) = conn.handle_timer(due)
    link.client(heartbeat)
    assert link.peer.received[-1] == {"op": 1, "d": 1}


def test_queue_is_bounded() -> None:
    link = ready_link(max_queued_commands=3)
    conn = link.conn
    for _ in range(CommandRateLimiter.budget(conn.heartbeat_interval) + 3):
        conn.send_command(3, PRESENCE, now=0.0)
    with pytest.raises(CommandQueueFull):
        conn.send_command(3, PRESENCE, now=0.0)


def test_queue_holds_a_thousand_commands_by_default() -> None:
    link = ready_link()
    conn = link.conn
    for _ in range(CommandRateLimiter.budget(conn.heartbeat_interval) + 1000):
        conn.send_command(3, PRESENCE, now=0.0)
    with pytest.raises(CommandQueueFull, match="1000 commands"):
        conn.send_command(3, PRESENCE, now=0.0)


def test_queued_commands_survive_a_resume_and_the_window_resets() -> None:
    link = ready_link()
    conn = link.conn
    budget = CommandRateLimiter.budget(conn.heartbeat_interval)
    for _ in range(budget + 2):
        conn.send_command(3, PRESENCE, now=0.0)
    link.server({"op": 7})
    link.deliver(link.peer_replies)
    conn.reconnect()
    link2 = Link(conn)
    link2.hello()
    link2.client(conn.resume("t"))
    assert conn.state is State.RESUMING
    # Due now: a fresh window. Issue 12: a finite time already past (HELLO's),
    # never -inf, so no adapter is handed a deadline it cannot wait for.
    assert conn.next_deadline() == 0.0
    for chunk in conn.handle_timer(1.0):
        link2.client(chunk)
    assert [p["op"] for p in link2.peer.received] == [6, 3, 3]


def test_queued_commands_are_dropped_with_an_event_when_the_session_is_lost() -> None:
    link = ready_link()
    conn = link.conn
    budget = CommandRateLimiter.budget(conn.heartbeat_interval)
    for i in range(budget + 2):
        conn.send_command(3, {**PRESENCE, "since": i}, now=0.0)
    link.server({"op": 9, "d": False})
    (event,) = [e for e in link.events() if isinstance(e, CommandsDropped)]
    assert [c["d"]["since"] for c in event.commands] == [budget, budget + 1]
    assert event.reason == "the session was lost"
    assert event.payload == {"op": None, "d": list(event.commands)}
    link.deliver(link.peer_replies)
    conn.reconnect()
    link2 = Link(conn)
    link2.hello()
    link2.identify()
    link2.ready()
    for chunk in conn.handle_timer(1000.0):
        link2.client(chunk)
    assert commands_received(link2) == 0


@settings(max_examples=200)
@given(
    st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=400),
    st.sampled_from([41.25, 10.0, 1.0]),
)
def test_never_more_than_the_budget_in_any_window(gaps: list[float], interval: float) -> None:
    # Invariant: in every 60 s window, commands sent <= budget.
    limiter = CommandRateLimiter()
    now, sent = 0.0, []
    for gap in gaps:
        now += gap
        if limiter.try_acquire(now, interval):
            sent.append(now)
    budget = CommandRateLimiter.budget(interval)
    for i, start in enumerate(sent):
        in_window = [t for t in sent[i:] if t < start + SEND_WINDOW]
        assert len(in_window) <= budget
