"""The threading adapter over real loopback sockets against the local gateway.

The scenarios of ``test_adapter_asyncio.py``; the gateway runs on its own
asyncio loop in a thread (``adapter_scenarios.ThreadedGateway``). Every
scenario checks the promise: each dispatch the server sent in a session
arrives exactly once, in order, whatever failed in between.
"""

from __future__ import annotations

import base64
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from adapter_scenarios import TLS, Recorder, ThreadedGateway, assert_reading_was_paused, until

from discord_gateway import (
    AuthenticationFailed,
    Disconnected,
    Dispatch,
    InvalidCommand,
    Ready,
    Resumed,
)
from discord_gateway.adapters import threading as threading_adapter
from discord_gateway.adapters.threading import Shard
from discord_gateway.testing import (
    AfterDispatches,
    ConnectionFaults,
    ResetConnection,
    SendInvalidSession,
    SendReconnect,
    ServerConfig,
    Stall,
)


class Bot(Recorder):
    """Runs a Shard and records what it yields, in a consumer thread."""

    def __init__(self, gateway: ThreadedGateway, **options: Any) -> None:
        super().__init__()
        options.setdefault("rng", random.Random(0))
        options.setdefault("close_timeout", 0.5)
        self.shard = Shard(
            options.pop("token", gateway.token),
            intents=513,
            url=gateway.url,
            ssl_context=gateway.client_ssl_context,
            **options,
        )
        self.consumer = threading.Thread(target=self.consume, daemon=True)
        self.gate = threading.Event()  # clear it to make the consumer slow
        self.gate.set()

    def consume(self) -> None:
        try:
            for event in self.shard:
                self.gate.wait()
                self.events.append(event)
        except Exception as exc:
            self.error = exc

    def io_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("discord-gateway")]


def scenario(
    tls: bool,
    faults: list[ConnectionFaults] | None,
    body: Callable[[ThreadedGateway, Bot], None],
    **options: Any,
) -> None:
    with ThreadedGateway(tls, faults) as gateway:
        bot = Bot(gateway, **options)
        with bot.shard:
            bot.consumer.start()
            until(lambda: bot.count(Ready) == 1)
            body(gateway, bot)
        bot.consumer.join(5)
        assert not bot.consumer.is_alive()
        assert bot.error is None, bot.error
        assert not bot.io_threads()


def push(gateway: ThreadedGateway, first: int, last: int) -> None:
    for i in range(first, last):
        gateway.dispatch("TEST", {"i": i})
        time.sleep(0.005)


@pytest.mark.parametrize("tls", TLS)
def test_identify_ready_dispatches_and_heartbeats(tls: bool) -> None:
    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        push(gateway, 0, 20)
        until(lambda: len(bot.tests()) == 20)
        until(lambda: gateway.server(0, "heartbeats") >= 2)  # heartbeating
        assert bot.tests() == list(range(20))
        assert bot.shard.connection.latency is not None

    scenario(tls, None, body)


@pytest.mark.parametrize("tls", TLS)
def test_server_reconnect_resumes_with_replay(tls: bool) -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(3), SendReconnect()),))]

    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        push(gateway, 0, 30)
        until(lambda: len(bot.tests()) == 30 and bot.count(Resumed) == 1)
        assert bot.tests() == list(range(30))
        ops = gateway.ops(1)
        assert 6 in ops and 2 not in ops  # RESUME, never IDENTIFY
        assert gateway.server(1, "target").startswith("/")

    scenario(tls, faults, body)


@pytest.mark.parametrize(
    "fault",
    [pytest.param(ResetConnection(), id="reset"), pytest.param(Stall(), id="stall")],
)
@pytest.mark.parametrize("tls", TLS)
def test_lost_or_stalled_connection_resumes(tls: bool, fault: Any) -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(4), fault),))]

    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        push(gateway, 0, 12)
        until(lambda: len(bot.tests()) == 12 and bot.count(Resumed) == 1)
        assert bot.tests() == list(range(12))
        assert gateway.connection_count() == 2
        # every lost connection is reported, and said to survive
        (lost,) = [e for e in bot.events if isinstance(e, Disconnected)]
        assert lost.resumable and lost.delay == 0.0 and lost.attempt == 1

    scenario(tls, faults, body)


def test_dropped_acks_are_a_zombie_that_resumes() -> None:
    faults = [ConnectionFaults(drop_heartbeat_acks=1.0)]

    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        push(gateway, 0, 5)
        until(lambda: bot.count(Resumed) == 1)
        push(gateway, 5, 10)
        until(lambda: len(bot.tests()) == 10)
        assert bot.tests() == list(range(10))
        code = gateway.server(0, "close_code")
        assert code is not None and code not in (1000, 1001)

    scenario(False, faults, body)


def test_invalid_session_starts_a_new_session() -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(2), SendInvalidSession(False)),))]

    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        push(gateway, 0, 2)
        until(lambda: bot.count(Ready) == 2, timeout=10)  # after the 1-5 s wait
        assert gateway.ops(1).count(2) == 1
        before = bot.tests()  # what the lost session delivered before op 9
        push(gateway, 2, 6)
        until(lambda: bot.tests()[-4:] == [2, 3, 4, 5])
        assert bot.tests() == [*before, 2, 3, 4, 5]  # nothing twice, nothing resent

    scenario(False, faults, body)


def test_bad_token_raises_authentication_failed() -> None:
    with ThreadedGateway() as gateway:
        bot = Bot(gateway, token="wrong")
        with bot.shard:
            bot.consumer.start()
            bot.consumer.join(5)
        assert isinstance(bot.error, AuthenticationFailed)
        assert bot.error.code == 4004
        assert gateway.connection_count() == 1  # never reconnected
        assert not bot.io_threads()


def test_close_sends_1000_and_ends_the_session() -> None:
    with ThreadedGateway() as gateway:
        bot = Bot(gateway)
        with bot.shard:
            bot.consumer.start()
            until(lambda: bot.count(Ready) == 1)
        bot.consumer.join(5)
        assert not bot.consumer.is_alive()  # iteration ended
        until(lambda: gateway.server(0, "close_code") is not None, timeout=5)
        assert gateway.server(0, "close_code") == 1000
        assert gateway.server(0, "closed_by") == "client"
        assert len(gateway.sessions) == 0  # 1000 destroyed it (protocol 30)


def test_an_exception_in_the_consumer_never_leaks_the_socket() -> None:
    with ThreadedGateway() as gateway:
        bot = Bot(gateway)
        with pytest.raises(KeyboardInterrupt), bot.shard:
            for event in bot.shard:
                if isinstance(event, Ready):
                    raise KeyboardInterrupt
        assert not bot.io_threads()
        until(lambda: gateway.server(0, "closed_by") is not None, timeout=5)


def test_close_on_a_stalled_gateway_is_bounded_by_the_close_timeout() -> None:
    with ThreadedGateway() as gateway:
        bot = Bot(gateway, close_timeout=0.3)
        with bot.shard:
            bot.consumer.start()
            until(lambda: bot.count(Ready) == 1)
            gateway.call(lambda: gateway.gateway.inject(Stall()))
            started = time.monotonic()
        assert time.monotonic() - started < 2.0
        assert not bot.io_threads()
        bot.consumer.join(5)
        assert bot.error is None


def test_a_slow_consumer_never_delays_heartbeats() -> None:
    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        bot.gate.clear()
        before = gateway.server(0, "heartbeats")
        push(gateway, 0, 3)
        time.sleep(6 * 0.2)  # the consumer is stuck on the first event meanwhile
        assert gateway.server(0, "heartbeats") >= before + 4
        assert bot.tests() == []
        bot.gate.set()
        until(lambda: bot.tests() == [0, 1, 2])
        assert gateway.connection_count() == 1
        assert bot.count(Resumed) == 0

    scenario(False, None, body)


def test_send_a_command() -> None:
    def body(gateway: ThreadedGateway, bot: Bot) -> None:
        bot.shard.send(3, {"since": None, "activities": [], "status": "idle", "afk": False})
        until(lambda: 3 in gateway.ops(0))
        with pytest.raises(InvalidCommand):
            bot.shard.send(2, {})  # IDENTIFY is the adapter's job

    scenario(False, None, body)


def test_send_after_close_is_refused() -> None:
    with ThreadedGateway() as gateway:
        bot = Bot(gateway)
        with bot.shard:
            assert bot.shard.wait_ready(5)
        with pytest.raises(Exception, match="closed"):
            bot.shard.send(1, None, timeout=1)


def test_the_token_is_never_in_a_repr() -> None:
    shard = Shard("secret-token-value", intents=1, url="ws://127.0.0.1:1/")
    assert "secret-token-value" not in repr(shard)
    assert "secret-token-value" not in repr(shard.options)


def test_close_while_the_gateway_is_unreachable_is_prompt() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens here: connections are refused
    shard = Shard("token", intents=1, url=f"ws://127.0.0.1:{port}/", rng=random.Random(0))
    with shard:
        time.sleep(0.5)  # a few refused attempts, then a backoff sleep
        assert not shard.wait_ready(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    assert shard._thread is not None and not shard._thread.is_alive()
    lost = list(shard)  # every refused attempt was reported, then the stream just ends
    assert lost and all(isinstance(e, Disconnected) and e.code is None for e in lost)


@pytest.mark.parametrize("tls", TLS)
def test_large_dispatches_arrive_whole(tls: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reads much smaller than a TLS record leave decrypted bytes inside the
    # SSLSocket where select() cannot see them: without the pending() check the
    # rest of a record would wait for the next heartbeat (far away here).
    monkeypatch.setattr(threading_adapter, "READ_SIZE", 1024)
    blob = base64.b64encode(random.Random(2).randbytes(200_000)).decode()  # zlib cannot shrink it
    with ThreadedGateway(tls, config=ServerConfig(heartbeat_interval=60)) as gateway:
        bot = Bot(gateway, rng=random.Random(1))
        with bot.shard:
            bot.consumer.start()
            until(lambda: bot.count(Ready) == 1)
            for i in range(3):
                gateway.dispatch("TEST", {"i": i, "blob": blob})
            until(lambda: len(bot.tests()) == 3, timeout=3)
        assert bot.tests() == [0, 1, 2]
        tests = [e for e in bot.events if isinstance(e, Dispatch) and e.name == "TEST"]
        assert all(e.data["blob"] == blob for e in tests)


@pytest.mark.parametrize("tls", TLS)
def test_a_stalled_consumer_bounds_the_queue_and_loses_nothing(
    tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # The consumer stops reading for longer than a heartbeat interval while the
    # gateway pushes 200 dispatches: the I/O thread stops selecting the socket at
    # the bound (the connection becomes a zombie, closed and later resumed), and
    # after catching up every dispatch arrives exactly once, in order.
    limit, total = 20, 200
    with ThreadedGateway(tls) as gateway:
        bot = Bot(gateway, max_pending_events=limit)
        with bot.shard:
            for event in bot.shard:
                if isinstance(event, Ready):
                    break
            peak = 0
            for i in range(total):
                gateway.dispatch("TEST", {"i": i})
                peak = max(peak, bot.shard.pending_events)
            for _ in range(120):  # > 2 heartbeat intervals + the close timeout: a zombie
                time.sleep(0.01)
                peak = max(peak, bot.shard.pending_events)
            assert peak <= 3 * limit, peak  # the bound, plus what one read held
            for event in bot.shard:
                bot.events.append(event)
                if len(bot.tests()) == total:
                    break
        assert bot.tests() == list(range(total))
        assert gateway.connection_count() >= 2  # the stall made a zombie; it was resumed
        assert all(2 not in gateway.ops(i) for i in range(1, gateway.connection_count()))
    assert_reading_was_paused(caplog)
