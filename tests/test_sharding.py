"""shard_for_guild, the GET /gateway/bot body, and the identify scheduler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_gateway.errors import ConfigurationError, GatewayError, LocalProtocolError
from discord_gateway.sharding import (
    IDENTIFY_INTERVAL,
    GatewayBotInfo,
    IdentifyLimitExhausted,
    IdentifyScheduler,
    SessionStartLimit,
    shard_for_guild,
)

FIXTURES = Path(__file__).parent / "fixtures"

# -- shard_for_guild (protocol 44) ------------------------------------------------------


def test_shard_for_guild_formula() -> None:
    guild_id = 41771983444115456
    assert shard_for_guild(guild_id, 1) == 0
    assert shard_for_guild(guild_id, 16) == (guild_id >> 22) % 16
    assert shard_for_guild(str(guild_id), 16) == (guild_id >> 22) % 16
    # a guild created at the Discord epoch + 7 ms lands on shard 7 of 10
    assert shard_for_guild((7 << 22) | 0x3FFFFF, 10) == 7


@given(st.integers(1, 2**64 - 1), st.integers(1, 5000))
def test_shard_for_guild_is_in_range(guild_id: int, num_shards: int) -> None:
    """Invariant: the shard is one of 0..num_shards-1 and ignores the low 22 bits."""
    shard = shard_for_guild(guild_id, num_shards)
    assert 0 <= shard < num_shards
    assert shard == shard_for_guild(guild_id | 0x3FFFFF, num_shards)


@pytest.mark.parametrize(
    ("guild_id", "num_shards", "rule"),
    [
        (1, 0, "num_shards"),
        (1, -1, "num_shards"),
        (1, True, "num_shards"),
        (0, 1, "guild_id"),
        (2**64, 1, "guild_id"),
        ("x1", 1, "guild_id"),
        (None, 1, "guild_id"),
        (1.0, 1, "guild_id"),
    ],
)
def test_shard_for_guild_refuses(guild_id: Any, num_shards: Any, rule: str) -> None:
    with pytest.raises(ConfigurationError, match=rule):
        shard_for_guild(guild_id, num_shards)


# -- GET /gateway/bot (protocol 46) --------------------------------------------------------


def test_gateway_bot_docs_example() -> None:
    body = json.loads((FIXTURES / "docs_examples" / "get_gateway_bot_response.json").read_text())
    info = GatewayBotInfo.from_payload(body)
    assert info == GatewayBotInfo(
        url="wss://gateway.discord.gg/",
        shards=9,
        session_start_limit=SessionStartLimit(
            total=1000, remaining=999, reset_after=14400.0, max_concurrency=1
        ),
    )
    # reset_after is milliseconds on the wire, seconds here
    assert info.session_start_limit.reset_after == 14_400_000 / 1000


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"url": None}, "url"),
        ({"url": "https://gateway.discord.gg"}, "url"),
        ({"shards": 0}, "shards"),
        ({"shards": "9"}, "shards"),
        ({"session_start_limit": None}, "session_start_limit"),
        (
            {
                "session_start_limit": {
                    "total": 1,
                    "remaining": 2,
                    "reset_after": 0,
                    "max_concurrency": 1,
                }
            },
            "remaining <= total",
        ),
        (
            {
                "session_start_limit": {
                    "total": 1,
                    "remaining": 1,
                    "reset_after": -1,
                    "max_concurrency": 1,
                }
            },
            "reset_after",
        ),
        (
            {
                "session_start_limit": {
                    "total": 1,
                    "remaining": 1,
                    "reset_after": 0,
                    "max_concurrency": 0,
                }
            },
            "max_concurrency",
        ),
        (
            {"session_start_limit": {"total": 1, "remaining": 1, "max_concurrency": 1}},
            "reset_after",
        ),
    ],
)
def test_gateway_bot_refuses_bad_bodies(change: dict[str, Any], rule: str) -> None:
    body: dict[str, Any] = {
        "url": "wss://gateway.discord.gg",
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 0,
            "max_concurrency": 1,
        },
    }
    body.update(change)
    with pytest.raises(ConfigurationError, match=rule):
        GatewayBotInfo.from_payload(body)


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"reset_after": -1.0}, "reset_after"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"remaining": -1}, "remaining <= total"),
    ],
)
def test_session_start_limit_validates_itself(kwargs: dict[str, Any], rule: str) -> None:
    fields: dict[str, Any] = {"total": 5, "remaining": 5, "reset_after": 1.0, "max_concurrency": 1}
    fields.update(kwargs)
    with pytest.raises(ConfigurationError, match=rule):
        SessionStartLimit(**fields)


@pytest.mark.parametrize("body", [None, [], "wss://gateway.discord.gg"])
def test_gateway_bot_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(ConfigurationError, match="body must be an object"):
        GatewayBotInfo.from_payload(body)


# -- IdentifyScheduler: examples ---------------------------------------------------------


def test_startup_identifies_buckets_in_order() -> None:
    scheduler = IdentifyScheduler(max_concurrency=2)
    for shard_id in (5, 3, 1, 4, 0, 2):  # requested out of order at the same instant
        scheduler.request(shard_id, 0.0)
    assert scheduler.poll(0.0) == [0, 1]
    assert scheduler.next_deadline() == 30.0  # waiting for READY (or the answer timeout)
    scheduler.released(0, 1.0)
    scheduler.released(1, 1.2)
    assert scheduler.next_deadline() == IDENTIFY_INTERVAL
    assert scheduler.poll(4.999) == []
    assert scheduler.poll(5.0) == [2, 3]
    scheduler.released(2, 5.5)
    scheduler.released(3, 5.5)
    assert scheduler.poll(10.0) == [4, 5]
    assert scheduler.next_deadline() is None


def test_release_never_shortens_the_five_second_window() -> None:
    scheduler = IdentifyScheduler(max_concurrency=1)
    scheduler.request(0, 0.0)
    scheduler.request(1, 0.0)
    assert scheduler.poll(0.0) == [0]
    assert scheduler.released(0, 0.5) is True
    assert scheduler.poll(0.5) == []
    assert scheduler.next_deadline() == 5.0


def test_an_unanswered_identify_holds_its_bucket_past_five_seconds() -> None:
    # protocol 60: READY for shard 0 has not arrived; shard 1 must wait for it.
    scheduler = IdentifyScheduler(max_concurrency=1, answer_timeout=20.0)
    scheduler.request(0, 0.0)
    scheduler.request(1, 0.0)
    assert scheduler.poll(0.0) == [0]
    assert scheduler.poll(6.0) == []
    assert scheduler.released(0, 7.0) is True
    assert scheduler.poll(7.0) == [1]


def test_a_forgotten_release_frees_the_bucket_after_the_answer_timeout() -> None:
    scheduler = IdentifyScheduler(max_concurrency=1, answer_timeout=20.0)
    scheduler.request(0, 0.0)
    scheduler.request(1, 0.0)
    assert scheduler.poll(0.0) == [0]
    assert scheduler.next_deadline() == 20.0
    assert scheduler.poll(19.9) == []
    assert scheduler.poll(20.0) == [1]


def test_reidentify_after_op9_goes_through_the_scheduler() -> None:
    scheduler = IdentifyScheduler(max_concurrency=1)
    scheduler.request(0, 0.0)
    assert scheduler.poll(0.0) == [0]
    # op 9 arrives 3 s later: asking again releases the held slot implicitly,
    # but the 5 s window from the first identify still applies.
    scheduler.request(0, 3.0)
    assert scheduler.poll(3.0) == []
    assert scheduler.next_deadline() == 5.0
    assert scheduler.poll(5.0) == [0]


def test_released_is_false_when_nothing_is_held() -> None:
    scheduler = IdentifyScheduler(max_concurrency=2)
    assert scheduler.released(0, 0.0) is False
    scheduler.request(0, 0.0)
    scheduler.poll(0.0)
    assert scheduler.released(2, 0.0) is False  # same bucket, other shard
    assert scheduler.released(0, 0.0) is True
    assert scheduler.released(0, 0.0) is False


def test_first_come_first_served_within_a_bucket() -> None:
    scheduler = IdentifyScheduler(max_concurrency=1)
    scheduler.request(0, 0.0)
    assert scheduler.poll(0.0) == [0]
    scheduler.released(0, 0.1)
    scheduler.request(7, 1.0)
    scheduler.request(3, 2.0)
    assert scheduler.pending == [7, 3]
    assert scheduler.poll(5.0) == [7]


def test_duplicate_request_and_cancel() -> None:
    scheduler = IdentifyScheduler()
    scheduler.request(0, 0.0)
    with pytest.raises(LocalProtocolError, match="already has an identify queued"):
        scheduler.request(0, 0.0)
    assert scheduler.cancel(0) is True
    assert scheduler.cancel(0) is False
    assert scheduler.next_deadline() is None
    assert scheduler.poll(0.0) == []


@pytest.mark.parametrize("shard_id", [-1, True, 1.0, "0"])
def test_request_refuses_bad_shard_ids(shard_id: Any) -> None:
    with pytest.raises(ConfigurationError, match="shard_id"):
        IdentifyScheduler().request(shard_id, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"remaining": -1, "resets_at": 0.0}, "remaining"),
        ({"remaining": 5}, "resets_at is required"),
        ({"answer_timeout": 1.0}, "answer_timeout"),
    ],
)
def test_scheduler_refuses_bad_configuration(kwargs: dict[str, Any], rule: str) -> None:
    with pytest.raises(ConfigurationError, match=rule):
        IdentifyScheduler(**kwargs)


def test_session_start_limit_is_spent_and_refused_when_exhausted() -> None:
    limit = SessionStartLimit(total=1000, remaining=2, reset_after=100.0, max_concurrency=4)
    scheduler = IdentifyScheduler.from_session_start_limit(limit, now=50.0)
    assert scheduler.resets_at == 150.0
    scheduler.request(0, 50.0)
    scheduler.request(1, 50.0)
    with pytest.raises(IdentifyLimitExhausted) as info:
        scheduler.request(2, 50.0)
    assert info.value.resets_at == 150.0
    assert isinstance(info.value, GatewayError)
    assert "2 remaining, 2 already queued" in str(info.value)
    assert scheduler.poll(50.0) == [0, 1]
    assert scheduler.remaining == 0
    with pytest.raises(IdentifyLimitExhausted):
        scheduler.request(2, 149.9)
    # at the reset the budget is back to total, the next reset assumed 24 h later
    scheduler.request(2, 150.0)
    assert scheduler.remaining == 1000
    assert scheduler.resets_at == 150.0 + 86400
    assert scheduler.poll(150.0) == [2]
    assert scheduler.remaining == 999


def test_update_limit_lowering_remaining_holds_queued_requests_until_reset() -> None:
    scheduler = IdentifyScheduler(max_concurrency=1, remaining=5, resets_at=100.0)
    scheduler.request(0, 0.0)
    scheduler.update_limit(
        SessionStartLimit(total=5, remaining=0, reset_after=60.0, max_concurrency=1), now=1.0
    )
    assert scheduler.poll(1.0) == []
    assert scheduler.next_deadline() == 61.0
    assert scheduler.poll(61.0) == [0]


def test_update_limit_changing_max_concurrency_is_conservative() -> None:
    scheduler = IdentifyScheduler(max_concurrency=1)
    scheduler.request(0, 0.0)
    assert scheduler.poll(0.0) == [0]
    scheduler.update_limit(
        SessionStartLimit(total=5, remaining=5, reset_after=60.0, max_concurrency=2), now=1.0
    )
    assert scheduler.max_concurrency == 2
    scheduler.released(0, 1.0)
    scheduler.request(1, 1.0)  # a new bucket, but it inherits the last identify
    assert scheduler.poll(1.0) == []
    assert scheduler.poll(5.0) == [1]


def test_update_limit_merging_buckets_keeps_the_latest_in_flight_identify() -> None:
    scheduler = IdentifyScheduler(max_concurrency=2)
    scheduler.request(0, 0.0)
    assert scheduler.poll(0.0) == [0]
    scheduler.request(1, 2.0)
    assert scheduler.poll(2.0) == [1]
    scheduler.update_limit(
        SessionStartLimit(total=5, remaining=5, reset_after=60.0, max_concurrency=1), now=3.0
    )
    # one bucket now; shard 1's identify (the later one) holds it
    assert scheduler.released(0, 3.0) is False
    scheduler.request(2, 3.0)
    assert scheduler.next_deadline() == 2.0 + 30.0
    assert scheduler.released(1, 3.0) is True
    assert scheduler.poll(5.0) == []  # the last identify (t=2) still sets the window
    assert scheduler.poll(7.0) == [2]


# -- IdentifyScheduler: properties ---------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["request", "release", "poll", "cancel"]),
        st.integers(0, 11),  # shard id
        st.floats(0, 8, allow_nan=False),  # time step
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(
    max_concurrency=st.integers(1, 4),
    remaining=st.none() | st.integers(0, 12),
    reset_after=st.floats(1, 100, allow_nan=False),
    ops=operations,
)
def test_scheduler_invariants(
    max_concurrency: int, remaining: int | None, reset_after: float, ops: list[Any]
) -> None:
    """Invariants: never two identifies of one rate-limit key within 5 s; never more
    identifies than remain before a reset; every accepted request is eventually
    granted once shards release their slots."""
    scheduler = IdentifyScheduler(
        max_concurrency,
        remaining=remaining,
        total=remaining,
        resets_at=None if remaining is None else reset_after,
    )
    now = 0.0
    grants: list[tuple[float, int]] = []
    accepted: set[int] = set()

    def record(shard_ids: list[int]) -> None:
        for shard_id in shard_ids:
            grants.append((now, shard_id))
            accepted.discard(shard_id)

    for op, shard_id, step in ops:
        now += step
        if op == "request":
            if shard_id in scheduler.pending:
                continue
            try:
                scheduler.request(shard_id, now)
            except IdentifyLimitExhausted as exc:
                assert remaining is not None and exc.resets_at > now
                continue
            accepted.add(shard_id)
        elif op == "release":
            scheduler.released(shard_id, now)
        elif op == "cancel":
            if scheduler.cancel(shard_id):
                accepted.discard(shard_id)
        else:
            record(scheduler.poll(now))
    # drain: release everything as soon as it is granted, follow next_deadline
    for _ in range(1000):
        deadline = scheduler.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        granted = scheduler.poll(now)
        record(granted)
        for shard_id in granted:
            scheduler.released(shard_id, now)
    assert scheduler.next_deadline() is None
    assert not accepted, "an accepted request was never granted"

    last_by_key: dict[int, float] = {}
    for at, shard_id in grants:
        key = shard_id % max_concurrency
        if key in last_by_key:
            assert at >= last_by_key[key] + IDENTIFY_INTERVAL  # the same sum as the scheduler
        last_by_key[key] = at
    if remaining is not None:
        before_reset = [at for at, _ in grants if at < reset_after]
        assert len(before_reset) <= remaining
        for day in range(1, 3):  # each later 24 h period spends at most total
            start = reset_after + (day - 1) * 86400
            in_period = [at for at, _ in grants if start <= at < start + 86400]
            assert len(in_period) <= remaining


@given(st.integers(1, 16), st.permutations(list(range(40))))
def test_startup_order_is_by_bucket_then_shard(max_concurrency: int, order: list[int]) -> None:
    """Invariant: shards requested together start in waves 0..c-1, c..2c-1, ...,
    each wave 5 s after the previous one, whatever order they were requested in."""
    scheduler = IdentifyScheduler(max_concurrency)
    for shard_id in order:
        scheduler.request(shard_id, 0.0)
    started: list[tuple[float, int]] = []
    now = 0.0
    while (deadline := scheduler.next_deadline()) is not None:
        now = max(now, deadline)
        for shard_id in scheduler.poll(now):
            started.append((now, shard_id))
            scheduler.released(shard_id, now + 0.5)
    assert [shard_id for _, shard_id in started] == list(range(40))
    for at, shard_id in started:
        assert at == (shard_id // max_concurrency) * IDENTIFY_INTERVAL
