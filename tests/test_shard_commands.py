"""Typed commands on every shard and on ShardManager, and typed options.

Each adapter's ``Shard`` (and ``ShardManager``, routed by guild id) offers
``update_presence``, ``update_voice_state``, ``request_guild_members``,
``request_soundboard_sounds`` and ``request_channel_info``; these tests check
what the local gateway receives. ``latency``, ``state`` and ``session_id``
are read from the shard. A misspelt option fails ``mypy --strict`` (and
``ConfigurationError`` at run time).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from adapter_scenarios import ThreadedGateway, until

from discord_gateway import (
    Activity,
    ActivityType,
    ConfigurationError,
    Intents,
    InvalidCommand,
    State,
    Status,
)
from discord_gateway.adapters import asyncio as asyncio_adapter
from discord_gateway.adapters import threading as threading_adapter
from discord_gateway.adapters import trio as trio_adapter
from discord_gateway.adapters.manager import ShardManager
from discord_gateway.sharding import shard_for_guild
from discord_gateway.testing import ServerConfig, serve

GUILD = (5 << 22) + 1
EXPECTED = [
    (
        3,
        {
            "since": None,
            "activities": [{"name": "tests", "type": 3}],
            "status": "idle",
            "afk": False,
        },
    ),
    (4, {"guild_id": str(GUILD), "channel_id": "7", "self_mute": True, "self_deaf": False}),
    (8, {"guild_id": str(GUILD), "user_ids": ["9"]}),
    (31, {"guild_ids": [str(GUILD)]}),
    (43, {"guild_id": str(GUILD), "fields": ["status"]}),
]
COMMAND_OPS = {op for op, _ in EXPECTED}
# Heartbeats every second leave room for 60 commands a minute: the core keeps
# what heartbeats need out of the send limit (a 0.2 s interval would leave none).
CONFIG = ServerConfig(heartbeat_interval=1.0)


def options() -> dict[str, Any]:
    return {"close_timeout": 0.5, "rng": random.Random(0)}


def commands_received(received: list[Any]) -> list[tuple[int, Any]]:
    return [(r.op, r.data) for r in received if r.op in COMMAND_OPS]


def test_threading_shard_sends_every_typed_command() -> None:
    with ThreadedGateway(config=CONFIG) as gateway:
        shard = threading_adapter.Shard(
            gateway.token, intents=Intents.DEFAULT, url=gateway.url, **options()
        )
        assert shard.state is State.CONNECTING and shard.session_id is None
        with shard:
            assert shard.wait_ready(5)
            assert shard.state is State.READY
            assert shard.session_id is not None
            shard.update_presence(
                status=Status.IDLE, activities=[Activity("tests", ActivityType.WATCHING)]
            )
            shard.update_voice_state(GUILD, 7, self_mute=True)
            shard.request_guild_members(GUILD, user_ids=[9])
            shard.request_soundboard_sounds([GUILD])
            shard.request_channel_info(GUILD, ["status"])
            with pytest.raises(InvalidCommand):  # validated in the caller's thread
                shard.request_channel_info(GUILD, ["nope"])
            until(lambda: len(commands_received(gateway.server(0, "received"))) == 5)
            until(lambda: shard.latency is not None)
            assert shard.latency is not None and 0 <= shard.latency < 5
        assert commands_received(gateway.server(0, "received")) == EXPECTED


async def _async_commands(shard: Any) -> None:
    await shard.wait_ready()
    assert shard.state is State.READY and shard.session_id is not None
    await shard.update_presence(
        status="idle", activities=[{"name": "tests", "type": ActivityType.WATCHING}]
    )
    await shard.update_voice_state(GUILD, "7", self_mute=True)
    await shard.request_guild_members(GUILD, user_ids=9)
    await shard.request_soundboard_sounds([GUILD])
    await shard.request_channel_info(GUILD, ("status",))


def test_asyncio_shard_sends_every_typed_command() -> None:
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            shard = asyncio_adapter.Shard(gateway.token, intents=513, url=gateway.url, **options())
            async with shard:
                await asyncio.wait_for(_async_commands(shard), 5)
                while len(commands_received(gateway.connections[0].received)) < 5:
                    await asyncio.sleep(0.01)
            assert commands_received(gateway.connections[0].received) == EXPECTED

    asyncio.run(asyncio.wait_for(main(), 20))


def test_trio_shard_sends_every_typed_command() -> None:
    async def main() -> None:
        with ThreadedGateway(config=CONFIG) as gateway:
            shard = trio_adapter.Shard(gateway.token, intents=513, url=gateway.url, **options())
            async with shard:
                with trio.fail_after(5):
                    await _async_commands(shard)
                    while len(commands_received(gateway.server(0, "received"))) < 5:
                        await trio.sleep(0.01)
            assert commands_received(gateway.server(0, "received")) == EXPECTED

    trio.run(main)


def test_manager_routes_commands_to_the_guilds_shard() -> None:
    count = 3
    other = (7 << 22) + 1  # served by shard 7 % 3 = 1
    assert shard_for_guild(GUILD, count) == 2 and shard_for_guild(other, count) == 1

    async def main() -> None:
        # The gateway allows what the manager is told: three IDENTIFYs at once.
        async with serve(dataclasses.replace(CONFIG, max_concurrency=count)) as gateway:
            bot = ShardManager(
                gateway.token,
                intents=513,
                url=gateway.url,
                shard_count=count,
                max_concurrency=count,  # all three identify at once
                **options(),
            )
            async with bot:
                await asyncio.wait_for(bot.wait_ready(), 10)
                assert bot.shard_for_guild(GUILD) is bot.shards[2]
                await bot.update_voice_state(GUILD, 7, self_mute=True)
                await bot.request_guild_members(GUILD, user_ids=[9])
                await bot.request_channel_info(GUILD, ["status"])
                await bot.request_soundboard_sounds([GUILD, other])
                await bot.update_presence(status=Status.DND)
                await asyncio.sleep(0.3)
            by_shard: dict[int, list[tuple[int, Any]]] = {}
            for connection in gateway.connections:
                identify = next(r for r in connection.received if r.op == 2)
                by_shard[identify.data["shard"][0]] = commands_received(connection.received)
            presence = (3, {"since": None, "activities": [], "status": "dnd", "afk": False})
            assert by_shard[2] == [*EXPECTED[1:3], EXPECTED[4], EXPECTED[3], presence]
            assert by_shard[1] == [(31, {"guild_ids": [str(other)]}), presence]
            assert by_shard[0] == [presence]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_manager_names_a_guild_it_does_not_serve() -> None:
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = ShardManager(
                gateway.token,
                intents=513,
                url=gateway.url,
                shard_count=3,
                shard_ids=[0],
                **options(),
            )
            async with bot:
                with pytest.raises(Exception, match="served by shard 2, which this manager"):
                    await bot.update_voice_state(GUILD, None)

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.parametrize(
    "make",
    [
        lambda: threading_adapter.Shard("t", intents=1, conect_timeout=1),
        lambda: asyncio_adapter.Shard("t", intents=1, conect_timeout=1),
        lambda: trio_adapter.Shard("t", intents=1, conect_timeout=1),
        lambda: ShardManager("t", intents=1, conect_timeout=1),
    ],
)
def test_a_misspelt_option_is_refused_at_run_time(make: Any) -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'connect_timeout'"):
        make()


def test_a_misspelt_option_fails_mypy_strict(tmp_path: Path) -> None:
    source = tmp_path / "bot.py"
    source.write_text(
        "from discord_gateway import Intents\n"
        "from discord_gateway.adapters import asyncio, threading, trio\n"
        "from discord_gateway.adapters.manager import ShardManager\n"
        "threading.Shard('t', intents=Intents.GUILDS, conect_timeout=1.0)\n"
        "asyncio.Shard('t', intents=1, hello_timout=1.0)\n"
        "trio.Shard('t', intents=1, max_pending_event=5)\n"
        "ShardManager('t', intents=1, encodin='json')\n"
        "threading.Shard('t', intents=1, connect_timeout='10')\n"
        "threading.Shard('t', intents=1, connect_timeout=1.0, shard=(0, 1))\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    out = result.stdout
    for line, name in [(4, "conect_timeout"), (5, "hello_timout"), (6, "max_pending_event")]:
        assert f"bot.py:{line}: error" in out and name in out, out
    assert "bot.py:7: error" in out and "encodin" in out, out
    assert "bot.py:8: error" in out, out  # a str where seconds go
    assert "bot.py:9:" not in out, out  # every correct option passes


def test_the_typed_options_are_exactly_shard_options_fields() -> None:
    # ShardKwargs types Shard(**options); ShardOptions checks them at run time.
    # An option added to one and not the other would be untyped or unusable.
    from dataclasses import fields

    from discord_gateway.adapters import ManagerOptions, ShardKwargs, ShardOptions

    def annotation(value: object) -> str:
        return str(getattr(value, "__forward_arg__", value))

    declared = {f.name: str(f.type) for f in fields(ShardOptions)}
    typed = {name: annotation(v) for name, v in ShardKwargs.__annotations__.items()}
    assert typed == {k: v for k, v in declared.items() if k not in ("token", "intents", "url")}
    assert set(ManagerOptions.__annotations__) == set(typed) - {"shard"}
