"""Hostile servers over real sockets, for every adapter: survive, or end with a named error.

``hostile_server.HostileServer`` writes exact bytes (a Ping after the
client's close frame, a garbled upgrade, a frame over the cap, a close right
after every upgrade). Whatever it does, a shard either carries on (resuming
where it can) or stops with a ``GatewayError`` subclass that says why; its I/O
thread or task never dies with a traceback, and nothing is logged with one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from hostile_server import (
    HELLO,
    PING,
    Conn,
    HostileServer,
    close,
    frame,
    ready,
    text,
)

from discord_gateway import (
    AuthenticationFailed,
    ConnectionFailed,
    Disconnected,
    Event,
    GatewayError,
    Ready,
    Resumed,
    connection,
)
from discord_gateway._etf import dumps as etf_dumps
from discord_gateway.adapters import asyncio as asyncio_adapter
from discord_gateway.adapters import threading as threading_adapter
from discord_gateway.adapters import trio as trio_adapter

ADAPTERS = ["asyncio", "threading", "trio"]


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "BACKOFF_BASE", 0.01)


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None

    def count(self, kind: type[Event]) -> int:
        return sum(1 for e in self.events if isinstance(e, kind))


Stop = Callable[[list[Event]], bool]


def run_shard(adapter: str, url: str, stop: Stop, timeout: float = 10.0, **options: Any) -> Outcome:
    """Run one shard of ``adapter`` until ``stop(events)``, the end of the stream, or an error."""
    options.setdefault("compress", None)
    options.setdefault("close_timeout", 0.5)
    outcome = Outcome()
    if adapter == "asyncio":

        async def main() -> None:
            async with asyncio_adapter.Shard("t0ken", intents=513, url=url, **options) as shard:
                try:
                    async for event in shard:
                        outcome.events.append(event)
                        if stop(outcome.events):
                            break
                except GatewayError as exc:
                    outcome.error = exc

        asyncio.run(asyncio.wait_for(main(), timeout))
    elif adapter == "threading":
        shard = threading_adapter.Shard("t0ken", intents=513, url=url, **options)
        watchdog = threading.Timer(timeout, shard.close)
        watchdog.start()
        try:
            with shard:
                try:
                    for event in shard:
                        outcome.events.append(event)
                        if stop(outcome.events):
                            break
                except GatewayError as exc:
                    outcome.error = exc
        finally:
            watchdog.cancel()
        assert shard._thread is not None and not shard._thread.is_alive()
    else:

        async def trio_main() -> None:
            with trio.fail_after(timeout):
                async with trio_adapter.Shard("t0ken", intents=513, url=url, **options) as shard:
                    try:
                        async for event in shard:
                            outcome.events.append(event)
                            if stop(outcome.events):
                                break
                    except GatewayError as exc:
                        outcome.error = exc

        trio.run(trio_main)
    return outcome


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing died: no record with a traceback, no asyncio 'Fatal error' or callback failure."""
    bad = [
        r.getMessage()
        for r in caplog.records
        if r.exc_info or (r.name == "asyncio" and r.levelno >= logging.ERROR)
    ]
    assert not bad, bad


def resumed(events: list[Event]) -> bool:
    return any(isinstance(e, Resumed) for e in events)


def serve_identify(conn: Conn) -> None:
    """A well-behaved start: HELLO, expect IDENTIFY, READY (s=1)."""
    conn.accept()
    conn.write(text(HELLO))
    assert conn.read_op()["op"] == 2
    conn.write(text(ready()))


def serve_resume(conn: Conn) -> None:
    """A well-behaved second connection: HELLO, expect RESUME, RESUMED, then idle."""
    conn.accept()
    conn.write(text(HELLO))
    assert conn.read_op()["op"] == 6
    conn.write(text({"op": 0, "s": 2, "t": "RESUMED", "d": {}}))
    conn.until_close()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_ping_right_after_op_7_is_survived_and_the_session_resumed(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    # op 7 makes the client send its close frame; the Ping arrives after it.
    def script(conn: Conn, index: int) -> None:
        if index > 0:
            serve_resume(conn)
            return
        serve_identify(conn)
        conn.write(text({"op": 7, "d": None}) + frame(PING, b"are you there"))
        conn.until_close()

    with HostileServer(script) as server:
        outcome = run_shard(adapter, server.url, resumed)
    assert server.errors == []
    assert outcome.error is None
    assert [type(e) for e in outcome.events if isinstance(e, (Ready, Disconnected, Resumed))] == [
        Ready,
        Disconnected,
        Resumed,
    ]
    no_tracebacks(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_ping_after_the_clients_close_frame_still_closes_cleanly(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    codes: list[int | None] = []

    def script(conn: Conn, index: int) -> None:
        serve_identify(conn)
        codes.append(conn.until_close(answer=False))
        conn.write(frame(PING, b"late") + close(1000))
        conn.until_close()

    with HostileServer(script) as server:
        outcome = run_shard(
            adapter, server.url, lambda events: any(isinstance(e, Ready) for e in events)
        )
    assert outcome.error is None and codes == [1000]
    assert ("pong", b"late") not in server.conns[0].received  # no Pong after our close
    no_tracebacks(caplog)


GARBLED = [
    pytest.param(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: \xff\xfe\xfd\r\nX-\xc3\x28: \x80\r\n\r\n",
        id="non-utf8-headers",
    ),
    pytest.param(b"\x00\x01\x02 garbage\r\n\r\n", id="not-http"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", id="101-without-upgrade"),
]


@pytest.mark.parametrize("response", GARBLED)
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_garbled_upgrade_response_ends_with_connection_failed(
    adapter: str, response: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: Conn, index: int) -> None:
        conn.read_request()
        conn.write(response)
        conn.until_close()

    with HostileServer(script) as server:
        outcome = run_shard(adapter, server.url, lambda events: False, max_failed_attempts=3)
    assert isinstance(outcome.error, ConnectionFailed), outcome.error
    assert len(outcome.error.causes) == 3 and len(server.conns) == 3
    assert outcome.count(Disconnected) == 2
    no_tracebacks(caplog)


HUGE_INTERVALS = [
    pytest.param(text({"op": 10, "d": {"heartbeat_interval": 1e300}}), "json", id="json-1e300"),
    pytest.param(
        frame(0x2, etf_dumps({"op": 10, "d": {"heartbeat_interval": 2**1100}}, atom_keys=True)),
        "etf",
        id="etf-bignum",
    ),
]


@pytest.mark.parametrize(("hello", "encoding"), HUGE_INTERVALS)
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_hello_with_an_absurd_heartbeat_interval_is_refused_not_fatal(
    adapter: str, hello: bytes, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: Conn, index: int) -> None:
        conn.accept()
        conn.write(hello)
        conn.until_close()

    with HostileServer(script) as server:
        outcome = run_shard(
            adapter, server.url, lambda events: False, encoding=encoding, max_failed_attempts=2
        )
    assert isinstance(outcome.error, ConnectionFailed), outcome.error
    assert all("heartbeat_interval" in cause for cause in outcome.error.causes)
    no_tracebacks(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_text_frame_over_the_cap_is_refused_and_the_session_resumed(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: Conn, index: int) -> None:
        if index > 0:
            serve_resume(conn)
            return
        serve_identify(conn)
        blob = "x" * 100_000
        conn.write(text({"op": 0, "s": 2, "t": "BIG", "d": {"blob": blob}}))
        conn.until_close()

    with HostileServer(script) as server:
        outcome = run_shard(adapter, server.url, resumed, max_payload_size=8192)
    assert outcome.error is None
    assert outcome.count(Resumed) == 1
    (lost,) = [e for e in outcome.events if isinstance(e, Disconnected)]
    assert lost.resumable and lost.code == 4000  # our close, echoed
    assert (lost.reason or "").startswith("bad data from the gateway")
    no_tracebacks(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_server_that_closes_4002_after_every_upgrade_is_given_up_on(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    agents: list[str | None] = []

    def script(conn: Conn, index: int) -> None:
        conn.accept()
        agents.append(conn.header("User-Agent"))
        conn.write(close(4002, "Error while decoding payload."))
        conn.until_close(answer=False)

    with caplog.at_level(logging.WARNING, "discord_gateway"), HostileServer(script) as server:
        outcome = run_shard(adapter, server.url, lambda events: False, max_failed_attempts=3)
    error = outcome.error
    assert isinstance(error, ConnectionFailed), error
    assert error.code == 4002 and len(error.causes) == 3
    assert all("4002" in cause and "decoding" in cause for cause in error.causes)
    assert len(server.conns) == 3  # and not one more
    lost = [e for e in outcome.events if isinstance(e, Disconnected)]
    assert [(e.code, e.attempt) for e in lost] == [(4002, 1), (4002, 2)]
    warnings = [r for r in caplog.records if "lost the connection" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert all(agent and agent.startswith("DiscordBot (") for agent in agents)
    no_tracebacks(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_identify_answered_with_4004_raises_authentication_failed_with_the_reason(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: Conn, index: int) -> None:
        conn.accept()
        conn.write(text(HELLO))
        assert conn.read_op()["op"] == 2
        conn.write(close(4004, "Authentication failed."))
        conn.until_close(answer=False)

    with HostileServer(script) as server:
        outcome = run_shard(adapter, server.url, lambda events: False)
    assert isinstance(outcome.error, AuthenticationFailed), outcome.error
    assert outcome.error.code == 4004
    assert outcome.error.reason == "Authentication failed."
    assert len(server.conns) == 1 and outcome.count(Disconnected) == 0
    no_tracebacks(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_refused_connections_are_retried_and_reported(adapter: str) -> None:
    # A network outage: never given up on, always visible.
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    outcome = run_shard(
        adapter,
        f"ws://127.0.0.1:{port}/",
        lambda events: len(events) >= 8,
        max_failed_attempts=1,
    )
    assert outcome.error is None
    assert [e.attempt for e in outcome.events if isinstance(e, Disconnected)] == list(range(1, 9))
    assert all(isinstance(e, Disconnected) and e.code is None for e in outcome.events)
