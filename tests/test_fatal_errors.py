"""A fatal close reaches the user wherever they wait, in every adapter and ShardManager.

A bad token (4004) or a privileged intent the bot may not use (4014) ends the
shard. The named ``GatewayClosed`` subclass must come out of ``send()``
before READY, out of ``wait_ready()``, out of iteration, and out of the
``with`` / ``async with`` block when the body waited on nothing - never a bare
"the shard is closed", and never silence.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
import trio
from adapter_scenarios import INTERVAL, ThreadedGateway

from discord_gateway import (
    AuthenticationFailed,
    DisallowedIntents,
    Intents,
    LocalProtocolError,
    Opcode,
)
from discord_gateway.adapters import asyncio as asyncio_adapter
from discord_gateway.adapters import threading as threading_adapter
from discord_gateway.adapters import trio as trio_adapter
from discord_gateway.adapters.manager import ShardManager
from discord_gateway.testing import ServerConfig, serve

OPTIONS: dict[str, Any] = {"close_timeout": 0.5}
PRESENCE = {"status": "online"}


def options() -> dict[str, Any]:
    return {**OPTIONS, "rng": random.Random(0)}


# -- threading --------------------------------------------------------------------


def test_threading_send_before_ready_raises_authentication_failed() -> None:
    with ThreadedGateway() as gateway:
        shard = threading_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
        with pytest.raises(AuthenticationFailed) as info, shard:
            shard.send(Opcode.PRESENCE_UPDATE, PRESENCE, timeout=5)
        assert info.value.code == 4004


def test_threading_commands_and_wait_ready_raise_the_fatal_error() -> None:
    with ThreadedGateway() as gateway:
        shard = threading_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
        with pytest.raises(AuthenticationFailed), shard:
            assert shard.wait_ready(5) is False  # never reached: it raises
        with pytest.raises(AuthenticationFailed):
            shard.update_presence(status="idle")  # after the block too


def test_threading_leaving_with_raises_an_error_nobody_waited_for() -> None:
    with ThreadedGateway() as gateway:
        shard = threading_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
        with pytest.raises(AuthenticationFailed), shard:
            deadline = time.monotonic() + 5
            while not shard._stopped and time.monotonic() < deadline:
                time.sleep(0.01)  # the body waits on nothing of the shard's


def test_threading_an_error_already_raised_is_not_raised_again_on_exit() -> None:
    with ThreadedGateway() as gateway:
        shard = threading_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
        with shard, pytest.raises(AuthenticationFailed):
            for _ in shard:
                pass
        # leaving the block raised nothing: the user was told already


def test_threading_closing_yourself_is_a_local_protocol_error_not_a_fatal_one() -> None:
    with ThreadedGateway() as gateway:
        shard = threading_adapter.Shard(gateway.token, intents=513, url=gateway.url, **options())
        with shard:
            assert shard.wait_ready(5)
        assert shard.wait_ready(0.1) is False
        with pytest.raises(LocalProtocolError, match="the shard is closed"):
            shard.send(Opcode.PRESENCE_UPDATE, PRESENCE)


def test_disallowed_intents_names_the_privileged_intents_asked_for() -> None:
    config = ServerConfig(heartbeat_interval=INTERVAL, allowed_intents=0)
    with ThreadedGateway(config=config) as gateway:
        intents = Intents.GUILDS | Intents.MESSAGE_CONTENT | Intents.GUILD_MEMBERS
        shard = threading_adapter.Shard(
            gateway.token, intents=intents, url=gateway.url, **options()
        )
        with pytest.raises(DisallowedIntents) as info, shard:
            shard.wait_ready(5)
    error = info.value
    assert error.code == 4014
    assert error.privileged == ("GUILD_MEMBERS", "MESSAGE_CONTENT")
    text = str(error)
    assert "GUILD_MEMBERS, MESSAGE_CONTENT" in text
    assert "Developer Portal > your app > Bot > Privileged Gateway Intents" in text
    assert "GUILD_PRESENCES" not in text  # not asked for, not named


# -- asyncio ----------------------------------------------------------------------


def test_asyncio_send_before_ready_raises_authentication_failed() -> None:
    async def main() -> None:
        async with serve() as gateway:
            shard = asyncio_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
            with pytest.raises(AuthenticationFailed):
                async with shard:
                    await asyncio.wait_for(shard.send(Opcode.PRESENCE_UPDATE, PRESENCE), 5)
            with pytest.raises(AuthenticationFailed):
                await shard.wait_ready()
            with pytest.raises(AuthenticationFailed):
                await shard.request_guild_members(1, user_ids=[2])

    asyncio.run(asyncio.wait_for(main(), 20))


def test_asyncio_leaving_async_with_raises_an_error_nobody_waited_for() -> None:
    async def main() -> None:
        async with serve() as gateway:
            shard = asyncio_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
            with pytest.raises(AuthenticationFailed):
                async with shard:
                    await asyncio.wait_for(shard._stopped_event.wait(), 5)
            # Told once: iterating afterwards raises it again, leaving again does not.
            async with shard:
                with pytest.raises(AuthenticationFailed):
                    async for _ in shard:
                        pass

    asyncio.run(asyncio.wait_for(main(), 20))


# -- trio -------------------------------------------------------------------------


def test_trio_send_before_ready_raises_authentication_failed() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            shard = trio_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
            with pytest.raises(AuthenticationFailed):
                async with shard:
                    with trio.fail_after(5):
                        await shard.send(Opcode.PRESENCE_UPDATE, PRESENCE)
            with pytest.raises(AuthenticationFailed):
                await shard.wait_ready()

    trio.run(main)


def test_trio_leaving_async_with_raises_an_error_nobody_waited_for() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            shard = trio_adapter.Shard("wrong", intents=513, url=gateway.url, **options())
            with pytest.raises(AuthenticationFailed):
                async with shard:
                    with trio.fail_after(5):
                        while not shard._stopped:
                            await trio.sleep(0.01)

    trio.run(main)


# -- ShardManager -----------------------------------------------------------------


def test_manager_send_wait_ready_and_exit_raise_the_fatal_error() -> None:
    async def main() -> None:
        async with serve() as gateway:
            bot = ShardManager("wrong", intents=513, url=gateway.url, shard_count=2, **options())
            with pytest.raises(AuthenticationFailed):
                async with bot:
                    await asyncio.wait_for(bot.wait_ready(), 5)
            with pytest.raises(AuthenticationFailed):
                await bot.send(0, Opcode.PRESENCE_UPDATE, PRESENCE)
            quiet = ShardManager("wrong", intents=513, url=gateway.url, shard_count=1, **options())
            with pytest.raises(AuthenticationFailed):
                async with quiet:
                    shard = quiet.shards[0]
                    await asyncio.wait_for(shard._stopped_event.wait(), 5)
                    await asyncio.sleep(0.05)  # the forwarder hands the error on

    asyncio.run(asyncio.wait_for(main(), 20))


def test_manager_does_not_raise_again_on_exit_what_you_caught() -> None:
    async def main() -> None:
        async with serve() as gateway:
            bot = ShardManager("wrong", intents=513, url=gateway.url, shard_count=1, **options())
            async with bot:
                with pytest.raises(AuthenticationFailed):
                    await asyncio.wait_for(bot.wait_ready(), 5)
                await asyncio.sleep(0.05)  # the forwarder hands the error on meanwhile
            # leaving raised nothing: you were told already

    asyncio.run(asyncio.wait_for(main(), 20))
