"""The local gateway on a socket under buggy bots: deadlines, slow readers, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from discord_gateway import DiscordConnection
from discord_gateway.events import Hello, Ready
from discord_gateway.testing import ServerConfig, serve
from tests.test_server_serve import ROOT, Client, http_get, run


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
            # GUILDS | DIRECT_MESSAGES: the MESSAGE_CREATEs pushed below have no guild (DMs)
            client.writer.write(client.conn.identify(token=gateway.token, intents=4097))
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


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE and SIGINT semantics")
def test_out_of_fds_logs_once_and_serves_again_then_ctrl_c_is_clean() -> None:
    """A server with 64 fds and 100 silent connections: one warning, no traceback."""
    script = (
        "import resource, runpy, sys;"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64));"
        "sys.argv = ['discord_gateway', 'serve', '--port', '0'];"
        "runpy.run_module('discord_gateway', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        silent = []
        for _ in range(100):  # more than the server has fds for
            sock = socket.create_connection(("127.0.0.1", port))
            silent.append(sock)
        time.sleep(2.5)  # asyncio retries accepting every second
        for sock in silent:
            sock.close()

        async def probe() -> None:
            gateway = serve()
            gateway.port = port
            for _ in range(50):  # serving again once fds are free
                with contextlib.suppress(ConnectionError, OSError, ValueError):
                    assert await http_get(gateway, "/api/v10/gateway") == (200, {"url": url})
                    return
                await asyncio.sleep(0.2)
            raise AssertionError("the server did not come back")

        run(probe(), timeout=20.0)
        # A bot connected while Ctrl-C arrives.
        bot = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        bot.close()
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert "Traceback" not in log and "Exception in callback" not in log, log[-2000:]
        assert log.count("cannot accept connections") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
