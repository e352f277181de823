"""Real bot libraries against the local gateway, configured only (no monkeypatching).

discord.py is pointed at it with ``discord.http.Route.BASE`` and finds the
gateway the way it does when sharding (``AutoShardedClient`` asks
``GET /gateway/bot``); hikari with ``rest_url`` and the update check off. Each
bot reaches READY with every guild parsed, answers a pushed MESSAGE_CREATE
over REST (and sees its own reply), survives op 7 with the replay of what it
missed, and stops on close 4004 with the library's own error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from discord_gateway.testing import Close, LocalGateway, SendReconnect, ServerConfig, serve

GUILDS = (961969618123483218, 931282703477784690)
RESUME = 6


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def config() -> ServerConfig:
    return ServerConfig(guild_ids=GUILDS, heartbeat_interval=5.0)


async def push_reconnect_then_message(gateway: LocalGateway, content: str) -> None:
    """op 7, and right behind it on the same socket a message the bot cannot read
    any more: it only arrives through the RESUME's replay."""
    gateway.inject(SendReconnect())
    gateway.dispatch(*gateway.world.message(content))
    await gateway.wait_for(lambda: len(gateway.connections) == 2, 10)
    await gateway.wait_for(lambda: any(r.op == RESUME for r in gateway.connections[1].received))
    replayed = [p["d"].get("content") for p in gateway.connections[1].sent if p.get("t")]
    assert content in replayed


def test_discord_py() -> None:
    discord = pytest.importorskip(
        "discord", reason="discord.py (in the test extra) is not installed on this Python"
    )
    logging.getLogger("discord").setLevel(logging.ERROR)  # no voice (PyNaCl) warnings

    async def main() -> None:
        async with serve(config()) as gateway:
            real_api = discord.http.Route.BASE
            discord.http.Route.BASE = f"http://{gateway.host}:{gateway.port}/api/v10"
            intents = discord.Intents.default()
            intents.message_content = True
            client = discord.AutoShardedClient(intents=intents)
            seen: list[str] = []

            @client.event
            async def on_message(message: Any) -> None:
                seen.append(message.content)
                if message.author != client.user and message.content == "ping":
                    await message.reply("pong")

            task = asyncio.ensure_future(client.start(gateway.token))
            try:
                await gateway.wait_for(client.is_ready, 10)
                assert sorted(g.id for g in client.guilds) == sorted(GUILDS)
                for guild in client.guilds:
                    assert guild.default_role is not None and guild.default_role.is_default()
                    assert guild.me is not None and guild.me.id == client.user.id
                    assert guild.owner_id is not None and guild.member_count == 2
                    assert [c.name for c in guild.text_channels] == ["general"]

                gateway.dispatch(*gateway.world.message("ping"))
                await gateway.wait_for(lambda: "pong" in seen, 10)
                [post] = [r for r in gateway.rest.requests if r.method == "POST"]
                assert post.json["content"] == "pong" and "message_reference" in post.json

                await push_reconnect_then_message(gateway, "missed")
                await gateway.wait_for(lambda: "missed" in seen, 10)
                assert seen.count("missed") == 1

                gateway.inject(Close(4004, "Authentication failed."))
                with pytest.raises(discord.ConnectionClosed) as closed:
                    await asyncio.wait_for(task, 10)
                assert closed.value.code == 4004
            finally:
                discord.http.Route.BASE = real_api
                await client.close()
                if not task.done():
                    task.cancel()

    run(main())


def test_hikari() -> None:
    hikari = pytest.importorskip(
        "hikari", reason="hikari (in the test extra) is not installed on this Python"
    )
    logging.getLogger("hikari").setLevel(logging.ERROR)  # no optimization-level warning

    async def main() -> None:
        async with serve(config()) as gateway:
            bot = hikari.GatewayBot(
                gateway.token,
                rest_url=f"http://{gateway.host}:{gateway.port}/api/v10",
                banner=None,
                intents=hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT,
            )
            seen: list[str | None] = []
            available: list[Any] = []

            async def on_guild(event: Any) -> None:
                available.append(event.guild)

            async def on_message(event: Any) -> None:
                seen.append(event.content)
                if not event.is_bot and event.content == "ping":
                    await event.message.respond("pong", reply=True)

            bot.subscribe(hikari.GuildAvailableEvent, on_guild)
            bot.subscribe(hikari.GuildMessageCreateEvent, on_message)

            await bot.start(check_for_updates=False)
            try:
                await gateway.wait_for(lambda: len(available) == len(GUILDS), 10)
                assert sorted(int(g.id) for g in available) == sorted(GUILDS)
                for guild in available:
                    assert guild.get_my_member() is not None
                    assert guild.get_role(guild.id).name == "@everyone"
                    assert guild.owner_id in guild.get_members()
                    assert guild.member_count == 2
                    assert [c.name for c in guild.get_channels().values()] == [
                        "Text Channels",
                        "general",
                    ]

                gateway.dispatch(*gateway.world.message("ping"))
                await gateway.wait_for(lambda: "pong" in seen, 10)
                [post] = [r for r in gateway.rest.requests if r.method == "POST"]
                assert post.json["content"] == "pong" and "message_reference" in post.json

                await push_reconnect_then_message(gateway, "missed")
                await gateway.wait_for(lambda: "missed" in seen, 10)
                assert seen.count("missed") == 1

                gateway.inject(Close(4004, "Authentication failed."))
                with pytest.raises(hikari.errors.GatewayServerClosedConnectionError) as closed:
                    await asyncio.wait_for(bot.join(), 10)
                assert closed.value.code == 4004 and not closed.value.can_reconnect
            finally:
                await bot.close()

    run(main())
