"""The local gateway on a socket under buggy bots: deadlines, slow readers, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from discord_gateway import DiscordConnection
from discord_gateway.events import Hello, Ready
from discord_gateway.testing import ServerConfig, serve
from tests.test_server_serve import Client, run


def config(**changes: Any) -> ServerConfig:
    return ServerConfig(**{"heartbeat_interval": 5.0, "guild_ids": (), **changes})


def test_a_connection_that_never_sends_its_request_gets_408() -> None:
    async def main() -> None:
        async with serve(config(handshake_timeout=0.2)) as gateway:
            reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
            writer.write(b"GET / HTT")  # ... and nothing more
            reply = await asyncio.wait_for(reader.read(), 2.0)
            assert reply.startswith(b"HTTP/1.1 408 ")
            writer.close()
            await gateway.wait_for(lambda: not gateway._tasks)

    run(main())


def test_a_bot_that_stops_reading_is_reset_and_its_queue_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        cfg = config(max_write_buffer=256 * 1024, write_timeout=1.0)
        async with serve(cfg) as gateway:
            client = Client(gateway)
            await client.open()
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
            client.writer.write(client.conn.identify(token=gateway.token, intents=1))
            await client.until(lambda: any(isinstance(e, Ready) for e in client.events))
            server = gateway.connections[0]
            # The bot stops reading; tests keep pushing 20,000 dispatches of 1 kB.
            for _ in range(200):
                for _ in range(100):
                    gateway.dispatch("MESSAGE_CREATE", {"content": "x" * 1000})
                await asyncio.sleep(0)
                if server.aborted:
                    break
            await gateway.wait_for(lambda: server.aborted, timeout=5.0)
            assert server.closed_by == "server"
            client.writer.close()

    with caplog.at_level(logging.INFO, logger="discord_gateway.testing"):
        run(main(), timeout=20.0)
    assert any("stopped reading" in r.getMessage() for r in caplog.records)


def test_detached_sessions_expire_with_no_connection_left() -> None:
    async def main() -> None:
        async with serve(config(session_ttl=0.2)) as gateway:
            client = Client(gateway)
            await client.open()
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
            client.writer.write(client.conn.identify(token=gateway.token, intents=1))
            await client.until(lambda: any(isinstance(e, Ready) for e in client.events))
            client.writer.transport.abort()
            await gateway.wait_for(lambda: not gateway._tasks)
            assert len(gateway.store.sessions) == 1
            await gateway.wait_for(lambda: not gateway.store.sessions, timeout=3.0)

    run(main())


def test_cancelling_serve_forever_with_a_bot_connected_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What Ctrl-C does to ``python -m discord_gateway serve``."""

    async def main() -> None:
        gateway = await serve(config()).start()
        forever = asyncio.ensure_future(gateway.serve_forever())
        conn = DiscordConnection(gateway.url)
        reader, writer = await asyncio.open_connection(*conn.destination)
        writer.write(conn.connect())
        await reader.read(1)
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        assert not gateway._tasks
        assert await reader.read() is not None  # the bot sees the connection end
        writer.close()

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
