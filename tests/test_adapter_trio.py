"""The trio adapter over real loopback sockets against the local gateway.

The scenarios of ``test_adapter_asyncio.py``; the gateway (asyncio) runs on
its own loop in a thread (``adapter_scenarios.ThreadedGateway``). Every
scenario checks the promise: each dispatch the server sent in a session
arrives exactly once, in order, whatever failed in between.
"""

from __future__ import annotations

import base64
import math
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from adapter_scenarios import (
    TLS,
    Recorder,
    SlotRandom,
    ThreadedGateway,
    assert_reading_was_paused,
    stall_then_catch_up,
)

from discord_gateway import (
    AuthenticationFailed,
    Disconnected,
    Dispatch,
    InvalidCommand,
    LocalProtocolError,
    Ready,
    Resumed,
)
from discord_gateway.adapters.trio import Shard
from discord_gateway.testing import (
    AfterDispatches,
    ConnectionFaults,
    ResetConnection,
    SendInvalidSession,
    SendReconnect,
    ServerConfig,
    Stall,
)


def run(main: Callable[[], Awaitable[None]], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        with trio.fail_after(timeout):
            await main()

    trio.run(bounded)


class Bot(Recorder):
    """Runs a Shard and records what it yields."""

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

    async def consume(self) -> None:
        try:
            async for event in self.shard:
                self.events.append(event)
        except Exception as exc:
            self.error = exc


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def scenario(
    tls: bool,
    faults: list[ConnectionFaults] | None,
    body: Callable[[ThreadedGateway, Bot], Awaitable[None]],
    **options: Any,
) -> None:
    with ThreadedGateway(tls, faults) as gateway:
        bot = Bot(gateway, **options)
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery, bot.shard:
                nursery.start_soon(bot.consume)
                await until(lambda: bot.count(Ready) == 1)
                await body(gateway, bot)
                # the consumer ends with the shard; the nursery waits for it
        assert bot.error is None, bot.error


async def push(gateway: ThreadedGateway, first: int, last: int) -> None:
    for i in range(first, last):
        gateway.dispatch("TEST", {"i": i})
        await trio.sleep(0.005)


@pytest.mark.parametrize("tls", TLS)
def test_identify_ready_dispatches_and_heartbeats(tls: bool) -> None:
    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        await push(gateway, 0, 20)
        await until(lambda: len(bot.tests()) == 20)
        await until(lambda: gateway.server(0, "heartbeats") >= 2)  # heartbeating
        assert bot.tests() == list(range(20))
        assert bot.shard.connection.latency is not None

    run(lambda: scenario(tls, None, body))


@pytest.mark.parametrize("tls", TLS)
def test_server_reconnect_resumes_with_replay(tls: bool) -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(3), SendReconnect()),))]

    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        await push(gateway, 0, 30)
        await until(lambda: len(bot.tests()) == 30 and bot.count(Resumed) == 1)
        assert bot.tests() == list(range(30))
        ops = gateway.ops(1)
        assert 6 in ops and 2 not in ops  # RESUME, never IDENTIFY
        assert gateway.server(1, "target").startswith("/")

    run(lambda: scenario(tls, faults, body))


@pytest.mark.parametrize(
    "fault",
    [pytest.param(ResetConnection(), id="reset"), pytest.param(Stall(), id="stall")],
)
@pytest.mark.parametrize("tls", TLS)
def test_lost_or_stalled_connection_resumes(tls: bool, fault: Any) -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(4), fault),))]

    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        await push(gateway, 0, 12)
        await until(lambda: len(bot.tests()) == 12 and bot.count(Resumed) == 1)
        assert bot.tests() == list(range(12))
        assert gateway.connection_count() == 2
        # every lost connection is reported, and said to survive
        (lost,) = [e for e in bot.events if isinstance(e, Disconnected)]
        assert lost.resumable and lost.delay == 0.0 and lost.attempt == 1

    run(lambda: scenario(tls, faults, body))


def test_dropped_acks_are_a_zombie_that_resumes() -> None:
    faults = [ConnectionFaults(drop_heartbeat_acks=1.0)]

    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        await push(gateway, 0, 5)
        await until(lambda: bot.count(Resumed) == 1)
        await push(gateway, 5, 10)
        await until(lambda: len(bot.tests()) == 10)
        assert bot.tests() == list(range(10))
        code = gateway.server(0, "close_code")
        assert code is not None and code not in (1000, 1001)

    run(lambda: scenario(False, faults, body))


def test_invalid_session_starts_a_new_session() -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(2), SendInvalidSession(False)),))]

    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        await push(gateway, 0, 2)
        await until(lambda: bot.count(Ready) == 2, timeout=10)  # after the 1-5 s wait
        assert gateway.ops(1).count(2) == 1
        before = bot.tests()  # what the lost session delivered before op 9
        await push(gateway, 2, 6)
        await until(lambda: bot.tests()[-4:] == [2, 3, 4, 5])
        assert bot.tests() == [*before, 2, 3, 4, 5]  # nothing twice, nothing resent

    run(lambda: scenario(False, faults, body), timeout=25)


def test_bad_token_raises_authentication_failed() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            bot = Bot(gateway, token="wrong")
            async with bot.shard:
                with trio.fail_after(5):
                    await bot.consume()
            assert isinstance(bot.error, AuthenticationFailed)
            assert bot.error.code == 4004
            assert gateway.connection_count() == 1  # never reconnected

    run(main)


def test_close_sends_1000_and_ends_the_session() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            bot = Bot(gateway)
            async with trio.open_nursery() as nursery, bot.shard:
                nursery.start_soon(bot.consume)
                await until(lambda: bot.count(Ready) == 1)
            await until(lambda: gateway.server(0, "close_code") is not None, timeout=5)
            assert gateway.server(0, "close_code") == 1000
            assert gateway.server(0, "closed_by") == "client"
            assert len(gateway.sessions) == 0  # 1000 destroyed it (protocol 30)

    run(main)


def test_cancelling_the_consumer_never_leaks_the_socket() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            bot = Bot(gateway)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_run_forever, bot)
                await until(lambda: bot.count(Ready) == 1)
                nursery.cancel_scope.cancel()
            await until(lambda: gateway.server(0, "closed_by") is not None, timeout=5)

    run(main)


async def _run_forever(bot: Bot) -> None:
    async with bot.shard:
        await bot.consume()


def test_an_exception_in_the_body_propagates_unwrapped_and_closes() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            bot = Bot(gateway)
            with pytest.raises(KeyError):
                async with bot.shard:
                    async for event in bot.shard:
                        if isinstance(event, Ready):
                            raise KeyError("user bug")
            await until(lambda: gateway.server(0, "close_code") == 1000, timeout=5)

    run(main)


def test_close_on_a_stalled_gateway_is_bounded_by_the_close_timeout() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            bot = Bot(gateway, close_timeout=0.3)
            async with bot.shard:
                await bot.shard.wait_ready()
                gateway.call(lambda: gateway.gateway.inject(Stall()))
                started = trio.current_time()
            assert trio.current_time() - started < 2.0

    run(main)


def test_send_a_command() -> None:
    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        await bot.shard.send(3, {"since": None, "activities": [], "status": "idle", "afk": False})
        await until(lambda: 3 in gateway.ops(0))
        with pytest.raises(InvalidCommand):
            await bot.shard.send(2, {})  # IDENTIFY is the adapter's job

    run(lambda: scenario(False, None, body))


def test_send_after_close_is_refused() -> None:
    async def main() -> None:
        with ThreadedGateway() as gateway:
            bot = Bot(gateway)
            async with bot.shard:
                await bot.shard.wait_ready()
            with pytest.raises(LocalProtocolError, match="closed"):
                await bot.shard.send(1, None)

    run(main)


def test_the_token_is_never_in_a_repr() -> None:
    shard = Shard("secret-token-value", intents=1, url="ws://127.0.0.1:1/")
    assert "secret-token-value" not in repr(shard)
    assert "secret-token-value" not in repr(shard.options)


def test_close_while_the_gateway_is_unreachable_is_prompt() -> None:
    async def main() -> None:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]  # nothing listens here: connections are refused
        shard = Shard("token", intents=1, url=f"ws://127.0.0.1:{port}/", rng=random.Random(0))
        async with shard:
            await trio.sleep(0.5)  # a few refused attempts, then a backoff sleep
            started = trio.current_time()
        assert trio.current_time() - started < 0.5
        lost = [event async for event in shard]  # each refused attempt, then the end
        assert lost and all(isinstance(e, Disconnected) and e.code is None for e in lost)
        with pytest.raises(LocalProtocolError):
            await shard.wait_ready()

    run(main)


@pytest.mark.parametrize("tls", TLS)
def test_large_dispatches_arrive_whole(tls: bool) -> None:
    # Bigger than one read and than one TLS record: partial reads, cancelled waits.
    blob = base64.b64encode(random.Random(2).randbytes(200_000)).decode()  # zlib cannot shrink it

    async def body(gateway: ThreadedGateway, bot: Bot) -> None:
        for i in range(3):
            gateway.dispatch("TEST", {"i": i, "blob": blob})
        await until(lambda: len(bot.tests()) == 3)
        assert bot.tests() == [0, 1, 2]
        tests = [e for e in bot.events if isinstance(e, Dispatch) and e.name == "TEST"]
        assert all(e.data["blob"] == blob for e in tests)

    run(lambda: scenario(tls, None, body))


@pytest.mark.parametrize("tls", TLS)
def test_a_stalled_consumer_bounds_the_queue_and_loses_nothing(
    tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # The loop stops receiving at the bound while the consumer stalls; after
    # catching up every dispatch arrives exactly once, in order.
    limit, total = 20, 200

    async def main() -> None:
        with ThreadedGateway(tls) as gateway:
            bot = Bot(gateway, max_pending_events=limit)
            async with bot.shard:
                await stall_then_catch_up(
                    bot, bot.shard, gateway.dispatch, trio.sleep, limit=limit, total=total
                )
            assert bot.tests() == list(range(total))
            assert gateway.connection_count() >= 2  # the stall made a zombie; it was resumed
            assert all(2 not in gateway.ops(i) for i in range(1, gateway.connection_count()))

    run(main, timeout=30)
    assert_reading_was_paused(caplog)


class _WaitRecorder(trio.abc.Instrument):
    """Before each wait for I/O: which shards await a heartbeat ACK."""

    def __init__(self) -> None:
        self.shards: list[Shard] = []
        self.waits: list[tuple[bool, ...]] = []

    def before_io_wait(self, timeout: float) -> None:
        self.waits.append(tuple(not shard.connection.acknowledged for shard in self.shards))


@pytest.mark.parametrize("grid", [0.0, 0.1])
def test_heartbeats_on_the_grid_share_one_run_loop_pass(grid: float) -> None:
    # Two shards whose first heartbeats are 50 ms apart, in one 100 ms slot of the
    # grid: on it, trio wakes both in one pass of its run loop; without it, in two.
    interval = 2.0
    config = ServerConfig(heartbeat_interval=interval, enforce_identify_concurrency=False)
    recorder = _WaitRecorder()

    async def main() -> None:
        slot = math.ceil((trio.current_time() + 1.0) / 0.1) * 0.1
        rngs = [SlotRandom(slot, offset, interval, trio.current_time) for offset in (0.025, 0.075)]
        shards = [
            Shard(gateway.token, intents=513, url=gateway.url, rng=rng, heartbeat_grid=grid)
            for rng in rngs
        ]
        recorder.shards = shards
        with trio.fail_after(20):
            async with shards[0], shards[1]:
                await until(lambda: all(shard.connection.latency is not None for shard in shards))
        assert all(len(rng.jitters) == 1 and 0 <= rng.jitters[0] < 1 for rng in rngs)

    with ThreadedGateway(config=config) as gateway:
        trio.run(main, instruments=[recorder])
    # The first wait after a heartbeat went out: which shards had sent theirs by then.
    first = next(waiting for waiting in recorder.waits if any(waiting))
    assert first == ((True, True) if grid else (True, False))
