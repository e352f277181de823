"""The ``discord_gateway`` fixture: registered by the ``pytest11`` entry point (nothing in
conftest.py provides it), usable from threads and from an asyncio test alike."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import urllib.request
from typing import Any

import pytest

from discord_gateway import Dispatch
from discord_gateway.adapters.asyncio import Shard as AsyncShard
from discord_gateway.adapters.threading import Shard
from discord_gateway.errors import AuthenticationFailed
from discord_gateway.testing import Close, SendReconnect
from discord_gateway.testing.pytest_plugin import GatewayFixture

IDENTIFY, RESUME = 2, 6


def post(gateway: GatewayFixture, route: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"{gateway.api_url}/{route}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bot {gateway.token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_a_threaded_bot_is_driven_and_observed(discord_gateway: GatewayFixture) -> None:
    assert discord_gateway.url.startswith("ws://127.0.0.1:")
    # GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT: guild messages arrive with their content
    with Shard(discord_gateway.token, intents=513 | 1 << 15, url=discord_gateway.url) as shard:
        discord_gateway.wait_ready()
        discord_gateway.push(discord_gateway.world.message("!ping"))
        for event in shard:
            if isinstance(event, Dispatch) and event.name == "MESSAGE_CREATE":
                assert event.data["content"] == "!ping"
                channel = event.data["channel_id"]
                post(discord_gateway, f"channels/{channel}/messages", {"content": "pong"})
                break
        request = discord_gateway.wait_for_request("POST", "channels/{channel_id}/messages")
        assert request.json == {"content": "pong"}
        discord_gateway.inject(SendReconnect())
        discord_gateway.wait_for(lambda: any(r.op == RESUME for r in discord_gateway.commands()))
        assert [r.op for r in discord_gateway.commands(IDENTIFY)] == [IDENTIFY]
        assert len(discord_gateway.connections) == 2 and len(discord_gateway.sessions) == 1


@pytest.mark.discord_gateway(guild_ids=(5, 6), heartbeat_interval=5.0)
def test_marker_configures_and_an_asyncio_bot_works(discord_gateway: GatewayFixture) -> None:
    assert sorted(discord_gateway.world.guilds) == ["5", "6"]

    async def bot() -> None:
        async with AsyncShard(discord_gateway.token, intents=513, url=discord_gateway.url) as shard:
            with pytest.raises(AuthenticationFailed):
                async for event in shard:
                    if isinstance(event, Dispatch) and event.name == "READY":
                        await asyncio.to_thread(discord_gateway.inject, Close(4004))

    asyncio.run(asyncio.wait_for(bot(), 10))


def threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_outside_the_fixture_a_with_block_serves_wss_and_stops_its_thread() -> None:
    with GatewayFixture(tls=True) as gateway:
        assert gateway.url.startswith("wss://127.0.0.1:")
        assert gateway.api_url.startswith("https://127.0.0.1:")
        assert gateway.client_ssl_context is not None
        with Shard(
            gateway.token, intents=513, url=gateway.url, ssl_context=gateway.client_ssl_context
        ):
            gateway.wait_ready()
        # the shard's I/O thread ended; the gateway's, named apart from it, did not
        assert not threads_named("discord-gateway")
        assert threads_named("local-gateway")
    assert not threads_named("local-gateway")


def test_tls_is_either_generated_or_brought() -> None:
    with GatewayFixture() as gateway:
        assert gateway.url.startswith("ws://") and gateway.client_ssl_context is None
    with pytest.raises(ValueError, match="not both"):
        GatewayFixture(tls=True, ssl_context=ssl.create_default_context())


def test_a_gateway_that_cannot_start_leaves_no_thread_behind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            GatewayFixture(port=taken.getsockname()[1])
    assert not threads_named("local-gateway")
