"""Logging: one hierarchy, the lifecycle at INFO, and nothing from ``transitions``.

Every record comes from ``discord_gateway`` or a child: each shard logs as
``discord_gateway.shard.<id>``. ``transitions`` logs every trigger at INFO
("Finished processing state hello enter callbacks"); those lines are kept
below INFO unless the user sets a level on the ``transitions`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from discord_gateway.adapters.asyncio import Shard
from discord_gateway.fsm import machine
from discord_gateway.testing import ServerConfig, serve


async def _one_session(shard_id: int = 3) -> None:
    async with serve(ServerConfig(heartbeat_interval=0.2)) as gateway:
        shard = Shard(
            gateway.token,
            intents=513,
            url=gateway.url,
            shard=(shard_id, 4),
            rng=random.Random(0),
            close_timeout=0.5,
        )
        async with shard:
            await asyncio.wait_for(shard.wait_ready(), 5)


def test_no_transitions_record_at_info_reaches_a_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger and the handler take everything
    asyncio.run(asyncio.wait_for(_one_session(), 10))
    ours = [r for r in caplog.records if r.name.startswith("discord_gateway")]
    assert ours, "the shard logged nothing"
    noisy = [r for r in caplog.records if r.name.startswith("transitions")]
    assert not [r for r in noisy if r.levelno >= logging.INFO], noisy


def test_the_user_can_still_ask_for_transitions_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("transitions")
    before = log.level
    log.setLevel(logging.INFO)
    try:
        caplog.set_level(logging.INFO)
        asyncio.run(asyncio.wait_for(_one_session(), 10))
    finally:
        log.setLevel(before)
    assert [r for r in caplog.records if r.name.startswith("transitions")]


def test_a_level_the_user_set_first_is_kept() -> None:
    log = logging.getLogger("transitions")
    before = log.level
    try:
        log.setLevel(logging.DEBUG)
        machine._quiet_transitions()
        assert log.level == logging.DEBUG
        log.setLevel(logging.NOTSET)
        machine._quiet_transitions()
        assert log.level == logging.WARNING
    finally:
        log.setLevel(before)


def test_each_shard_logs_the_lifecycle_at_info_under_its_own_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    asyncio.run(asyncio.wait_for(_one_session(3), 10))
    shard = [r for r in caplog.records if r.name == "discord_gateway.shard.3"]
    messages = [r.getMessage() for r in shard if r.levelno == logging.INFO]
    assert any(m.startswith("connecting to 127.0.0.1:") for m in messages), messages
    assert any("gateway state hello -> identifying" in m for m in messages), messages
    assert any(m.startswith("session ") and m.endswith(" is ready") for m in messages), messages
    assert all(r.name.startswith("discord_gateway") for r in caplog.records if r in shard)
