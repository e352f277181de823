"""``serve()`` on real loopback sockets (each test bounded by timeouts) and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from discord_gateway import (
    CloseDiscordConnection,
    DiscordConnection,
    Dispatch,
    Event,
    Hello,
    InvalidSession,
    Ready,
)
from discord_gateway.testing import (
    ConnectionFaults,
    LocalGateway,
    ResetConnection,
    ServerConfig,
    serve,
    tls_contexts,
)

ROOT = Path(__file__).resolve().parent.parent


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


class Client:
    """A minimal asyncio driver of ``DiscordConnection``."""

    def __init__(self, gateway: LocalGateway, **kwargs: Any) -> None:
        self.conn = DiscordConnection(gateway.url, **kwargs)
        self.gateway = gateway
        self.events: list[Event] = []
        self.closed: CloseDiscordConnection | None = None

    async def open(self, ssl_context: ssl.SSLContext | None = None) -> None:
        host, port = self.conn.destination
        self.reader, self.writer = await asyncio.open_connection(host, port, ssl=ssl_context)
        self.writer.write(self.conn.connect())

    async def until(self, done: Callable[[], bool]) -> None:
        while not done() and self.closed is None:
            data = await self.reader.read(65536)
            try:
                out = self.conn.receive(data)
            except CloseDiscordConnection as closed:
                if closed.data:
                    self.writer.write(closed.data)
                self.closed = closed
                self.writer.close()
                return
            for chunk in out:
                self.writer.write(chunk)
            self.events.extend(self.conn.events())

    def send(self, data: bytes) -> None:
        self.writer.write(data)


def config(**changes: Any) -> ServerConfig:
    return ServerConfig(**{"heartbeat_interval": 5.0, "guild_ids": (), **changes})


async def http_get(gateway: LocalGateway, path: str, headers: str = "") -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    response = await reader.read()  # the server closes after answering
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_get_gateway_and_gateway_bot_on_the_same_port() -> None:
    async def main() -> None:
        async with serve(config(recommended_shards=2)) as gateway:
            assert await http_get(gateway, "/api/v10/gateway") == (200, {"url": gateway.url})
            status, _ = await http_get(gateway, "/api/v10/gateway/bot")
            assert status == 401  # protocol 46: needs a bot token
            status, body = await http_get(
                gateway, "/api/v10/gateway/bot", f"Authorization: Bot {gateway.token}\r\n"
            )
            assert status == 200
            assert body["url"] == gateway.url and body["shards"] == 2
            assert body["session_start_limit"]["remaining"] == 1000
            # Discord's JSON error shape for an unknown route
            assert await http_get(gateway, "/api/v10/no/such/route") == (
                404,
                {"message": "404: Not Found", "code": 0},
            )

    run(main())


def test_a_bot_identifies_gets_pushed_dispatches_and_sees_a_reset() -> None:
    async def main() -> None:
        async with serve(config()) as gateway:
            client = Client(gateway)
            await client.open()
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
            # GUILDS | DIRECT_MESSAGES: the MESSAGE_CREATE pushed below has no guild (a DM)
            client.send(client.conn.identify(token=gateway.token, intents=4097))
            await client.until(lambda: any(isinstance(e, Ready) for e in client.events))
            assert gateway.dispatch("MESSAGE_CREATE", {"content": "hi"}) == [2]
            await client.until(
                lambda: (
                    isinstance(client.events[-1], Dispatch)
                    and client.events[-1].name == "MESSAGE_CREATE"
                )
            )
            gateway.inject(ResetConnection())
            await client.until(lambda: False)
            assert client.closed is not None and client.closed.code == 1006  # protocol 53
            await gateway.wait_for(lambda: gateway.connections[0].state.value == "closed")
            assert len(gateway.store.sessions) == 1  # the session survives a reset

    run(main())


def test_tls_with_a_test_ca() -> None:
    async def main() -> None:
        tls = tls_contexts()
        async with serve(config(), ssl_context=tls.server) as gateway:
            assert gateway.url.startswith("wss://127.0.0.1:")
            client = Client(gateway)
            assert client.conn.secure
            await client.open(tls.client)
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
            assert b"BEGIN CERTIFICATE" in tls.ca_pem

    run(main())


def test_split_writes_over_tcp() -> None:
    async def main() -> None:
        faults = [ConnectionFaults(split_writes=True, split_messages=4)]
        async with serve(config(), faults=faults) as gateway:
            client = Client(gateway, compress="zlib-stream")
            await client.open()
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
            client.send(client.conn.identify(token=gateway.token, intents=1))
            await client.until(lambda: any(isinstance(e, Ready) for e in client.events))
            assert gateway.connections[0].faults.split_writes

    run(main())


def test_server_times_out_a_silent_client() -> None:
    async def main() -> None:
        async with serve(config(heartbeat_interval=0.05, heartbeat_grace=0.05)) as gateway:
            client = Client(gateway)
            await client.open()
            await client.until(lambda: False)  # never heartbeats
            assert client.closed is not None and client.closed.code == 4009

    run(main())


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_cli_serve_prints_url_and_token_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "discord_gateway", "serve", "--port", "0", "--token", "abc"),
            *("--profile", "seq-from-zero", "--profile", "inclusive-replay"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Local Discord gateway: ws://127.0.0.1:")
        url = first.split()[-1]
        assert proc.stdout.readline().split() == ["token:", "abc"]
        banner = [proc.stdout.readline().strip() for _ in range(4)]
        assert banner[2:] == [
            "deviates from Discord: seq_from_zero, inclusive_replay",
            "Serving until Ctrl-C.",
        ]

        async def probe() -> None:
            gateway = serve()
            gateway.port = int(url.rsplit(":", 1)[1].strip("/"))
            assert await http_get(gateway, "/api/v10/gateway") == (200, {"url": url})

        run(probe())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert "REST GET /api/v10/gateway -> 200" in log  # lifecycle logging
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("limits", ["enforced", "off"])
def test_cli_serve_no_identify_limits_accepts_identifies_back_to_back(limits: str) -> None:
    flags = ["--no-identify-limits"] if limits == "off" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "discord_gateway", "serve", "--port", "0", "--quiet", *flags],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline().strip()]
        while banner[-1] not in ("Serving until Ctrl-C.", ""):
            banner.append(proc.stdout.readline().strip())
        assert any("identify limits: off" in line for line in banner) == (limits == "off")
        gateway = serve()  # only for its url and token
        gateway.port = int(banner[0].rsplit(":", 1)[1].strip("/"))

        async def two_identifies() -> None:
            first, second = Client(gateway), Client(gateway)
            for client in (first, second):  # the same bucket, well within 5 s
                await client.open()
                await client.until(lambda c=client: any(isinstance(e, Hello) for e in c.events))
                client.send(client.conn.identify(token=gateway.token, intents=1))
                await client.until(
                    lambda c=client: any(isinstance(e, (Ready, InvalidSession)) for e in c.events)
                )
            assert any(isinstance(e, Ready) for e in first.events)
            second_ready = any(isinstance(e, Ready) for e in second.events)
            assert second_ready == (limits == "off")  # enforced: op 9 (protocol 21)
            for client in (first, second):
                client.writer.close()

        run(two_identifies())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_diagram_prints_the_mermaid_table() -> None:
    from discord_gateway.fsm import mermaid_diagram

    out = subprocess.run(
        [sys.executable, "-m", "discord_gateway", "diagram"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=30,
        check=True,
    ).stdout
    assert out == mermaid_diagram()


def test_cli_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from discord_gateway.__main__ import main
    from discord_gateway.fsm import mermaid_diagram

    assert main(["diagram"]) == 0
    assert capsys.readouterr().out == mermaid_diagram()
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--heartbeat-interval MS" in out and "--profile NAME" in out
    assert "seq-from-zero," in "".join(out.split())  # the presets, however wrapped
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--profile", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_docs_example_reconnect_and_resume_over_tcp() -> None:
    """The asyncio example of docs/local-server.md, with a real reconnecting bot."""
    from discord_gateway.testing import AfterDispatches, SendReconnect

    async def bot(gateway: LocalGateway, seen: list[Dispatch]) -> None:
        conn = DiscordConnection(gateway.url)
        while True:
            host, port = conn.destination
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(conn.connect())
            try:
                while True:
                    data = await reader.read(65536)
                    for chunk in conn.receive(data):
                        writer.write(chunk)
                    for event in conn.events():
                        if isinstance(event, Hello):
                            writer.write(
                                conn.resume(gateway.token)
                                if conn.should_resume
                                # GUILDS | DIRECT_MESSAGES: the messages pushed are DMs
                                else conn.identify(token=gateway.token, intents=4097)
                            )
                        elif isinstance(event, Dispatch):
                            seen.append(event)
            except CloseDiscordConnection as closed:
                if closed.data:
                    writer.write(closed.data)
                writer.close()
            await asyncio.sleep(conn.reconnect())

    async def main() -> None:
        script = ConnectionFaults(script=((AfterDispatches(3), SendReconnect()),))
        async with serve(config(), faults=[script]) as gateway:
            seen: list[Dispatch] = []
            task = asyncio.ensure_future(bot(gateway, seen))
            await gateway.wait_for(lambda: bool(gateway.store.sessions))
            for n in range(5):
                gateway.dispatch("MESSAGE_CREATE", {"content": "hi", "n": n})
            await gateway.wait_for(lambda: len(gateway.connections) == 2)
            assert gateway.connections[0].close_code == 4000  # the bot left on op 7
            await gateway.wait_for(lambda: bool(gateway.connections[1].received))
            assert gateway.connections[1].received[0].op == 6  # ... and resumed
            await gateway.wait_for(lambda: [e.name for e in seen][-1:] == ["RESUMED"])
            task.cancel()
            assert [e.data["n"] for e in seen if e.name == "MESSAGE_CREATE"] == list(range(5))
            assert [e.seq for e in seen] == list(range(1, 8))

    run(main())


def test_wait_for_rechecks_a_predicate_over_the_clients_side() -> None:
    """A predicate that turns true after the server's last action is still seen.

    Only server activity woke ``wait_for()``: a predicate over what the bot had
    seen, checked just before the bot read the server's last message, was never
    checked again (every time on Python 3.12+, whose ``asyncio.wait_for`` runs the
    waiting coroutine in the caller's task).
    """

    async def main() -> None:
        async with serve(config()) as gateway:
            seen: list[int] = []
            asyncio.get_running_loop().call_later(0.05, seen.append, 1)
            await gateway.wait_for(lambda: bool(seen), timeout=2.0)

    run(main())


def test_close_with_live_connections_logs_no_asyncio_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing the gateway ends its connections' loops without cancelling them
    (a cancelled handler makes asyncio 3.11/3.12.1 log a CancelledError)."""

    async def main() -> None:
        async with serve(config()) as gateway:
            client = Client(gateway)
            await client.open()
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
        await client.until(lambda: False)
        assert client.closed is not None and client.closed.code == 1006
        assert gateway.connections[0].state.value == "closed"

    with caplog.at_level("ERROR", logger="asyncio"):
        run(main())
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_serve_takes_a_deviant_profile_by_name() -> None:
    async def main() -> None:
        async with serve(config(), deviations="bare-control-payloads") as gateway:
            assert gateway.store.deviations.names == ("bare_control_payloads",)
            client = Client(gateway)
            await client.open()
            await client.until(lambda: any(isinstance(e, Hello) for e in client.events))
            assert set(gateway.connections[0].sent[0]) == {"op", "d"}  # HELLO without s/t

    run(main())
    with pytest.raises(ValueError, match="unknown server profile"):
        serve(deviations="nope")
