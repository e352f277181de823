"""The asyncio adapter over real loopback sockets against the local gateway.

Every scenario checks the promise: each dispatch the server sent in a session
arrives exactly once, in order, whatever failed in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import selectors
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from adapter_scenarios import (
    CONFIG,
    TLS,
    Recorder,
    SlotRandom,
    assert_reading_was_paused,
    stall_then_catch_up,
)

from discord_gateway import AuthenticationFailed, Disconnected, Dispatch, Ready, Resumed
from discord_gateway.adapters.asyncio import Shard
from discord_gateway.testing import (
    AfterDispatches,
    ConnectionFaults,
    LocalGateway,
    ResetConnection,
    SendInvalidSession,
    SendReconnect,
    ServerConfig,
    Stall,
    serve,
    tls_contexts,
)


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


class Bot(Recorder):
    """Runs a Shard and records what it yields."""

    def __init__(self, gateway: LocalGateway, tls: Any = None, **options: Any) -> None:
        super().__init__()
        options.setdefault("rng", random.Random(0))
        options.setdefault("close_timeout", 0.5)
        self.shard = Shard(
            options.pop("token", gateway.token),
            intents=513,
            url=gateway.url,
            ssl_context=tls,
            **options,
        )

    async def consume(self) -> None:
        try:
            async for event in self.shard:
                self.events.append(event)
        except Exception as exc:
            self.error = exc


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def scenario(
    tls: bool,
    faults: list[ConnectionFaults] | None,
    body: Callable[[LocalGateway, Bot], Coroutine[Any, Any, None]],
    **options: Any,
) -> None:
    contexts = tls_contexts() if tls else None
    async with serve(
        CONFIG, ssl_context=contexts.server if contexts else None, faults=faults
    ) as gateway:
        bot = Bot(gateway, contexts.client if contexts else None, **options)
        async with bot.shard:
            consumer = asyncio.create_task(bot.consume())
            await until(lambda: bot.count(Ready) == 1)
            await body(gateway, bot)
        await asyncio.wait_for(consumer, 5)
        assert bot.error is None, bot.error


async def push(gateway: LocalGateway, first: int, last: int) -> None:
    for i in range(first, last):
        gateway.dispatch("TEST", {"i": i})
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("tls", TLS)
def test_identify_ready_dispatches_and_heartbeats(tls: bool) -> None:
    async def body(gateway: LocalGateway, bot: Bot) -> None:
        await push(gateway, 0, 20)
        await until(lambda: len(bot.tests()) == 20)
        await until(lambda: gateway.connections[0].heartbeats >= 2)  # heartbeating
        assert bot.tests() == list(range(20))
        assert bot.shard.connection.latency is not None

    run(scenario(tls, None, body))


@pytest.mark.parametrize("tls", TLS)
def test_server_reconnect_resumes_with_replay(tls: bool) -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(3), SendReconnect()),))]

    async def body(gateway: LocalGateway, bot: Bot) -> None:
        await push(gateway, 0, 30)
        await until(lambda: len(bot.tests()) == 30 and bot.count(Resumed) == 1)
        assert bot.tests() == list(range(30))
        second = gateway.connections[1]
        ops = [r.op for r in second.received]
        assert 6 in ops and 2 not in ops  # RESUME, never IDENTIFY
        assert second.target.startswith("/")

    run(scenario(tls, faults, body))


@pytest.mark.parametrize(
    "fault",
    [pytest.param(ResetConnection(), id="reset"), pytest.param(Stall(), id="stall")],
)
@pytest.mark.parametrize("tls", TLS)
def test_lost_or_stalled_connection_resumes(tls: bool, fault: Any) -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(4), fault),))]

    async def body(gateway: LocalGateway, bot: Bot) -> None:
        await push(gateway, 0, 12)
        await until(lambda: len(bot.tests()) == 12 and bot.count(Resumed) == 1)
        assert bot.tests() == list(range(12))
        assert len(gateway.connections) == 2
        # every lost connection is reported, and said to survive
        (lost,) = [e for e in bot.events if isinstance(e, Disconnected)]
        assert lost.resumable and lost.delay == 0.0 and lost.attempt == 1

    run(scenario(tls, faults, body))


def test_dropped_acks_are_a_zombie_that_resumes() -> None:
    faults = [ConnectionFaults(drop_heartbeat_acks=1.0)]

    async def body(gateway: LocalGateway, bot: Bot) -> None:
        await push(gateway, 0, 5)
        await until(lambda: bot.count(Resumed) == 1)
        await push(gateway, 5, 10)
        await until(lambda: len(bot.tests()) == 10)
        assert bot.tests() == list(range(10))
        first = gateway.connections[0]
        assert first.close_code is not None and first.close_code not in (1000, 1001)

    run(scenario(False, faults, body))


def test_invalid_session_starts_a_new_session() -> None:
    faults = [ConnectionFaults(script=((AfterDispatches(2), SendInvalidSession(False)),))]

    async def body(gateway: LocalGateway, bot: Bot) -> None:
        await push(gateway, 0, 2)
        await until(lambda: bot.count(Ready) == 2, timeout=10)  # after the 1-5 s wait
        assert [r.op for r in gateway.connections[1].received].count(2) == 1
        before = bot.tests()  # what the lost session delivered before op 9
        await push(gateway, 2, 6)
        await until(lambda: bot.tests()[-4:] == [2, 3, 4, 5])
        assert bot.tests() == [*before, 2, 3, 4, 5]  # nothing twice, nothing resent

    run(scenario(False, faults, body), timeout=25)


def test_bad_token_raises_authentication_failed() -> None:
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = Bot(gateway, token="wrong")
            async with bot.shard:
                await asyncio.wait_for(bot.consume(), 5)
            assert isinstance(bot.error, AuthenticationFailed)
            assert bot.error.code == 4004
            assert len(gateway.connections) == 1  # never reconnected

    run(main())


def test_close_sends_1000_and_ends_the_session() -> None:
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = Bot(gateway)
            async with bot.shard:
                consumer = asyncio.create_task(bot.consume())
                await until(lambda: bot.count(Ready) == 1)
            await asyncio.wait_for(consumer, 5)
            server = gateway.connections[0]
            await gateway.wait_for(lambda: server.close_code is not None)
            assert server.close_code == 1000
            assert server.closed_by == "client"
            assert not gateway.store.sessions  # 1000 destroyed it (protocol 30)

    run(main())


def test_cancelling_the_consumer_never_leaks_the_socket() -> None:
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = Bot(gateway)
            task = asyncio.create_task(_run_forever(bot))
            await until(lambda: bot.count(Ready) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            server = gateway.connections[0]
            await gateway.wait_for(lambda: server.closed_by is not None)

    run(main())


def test_cancelled_waits_and_two_consumers_lose_and_repeat_nothing() -> None:
    # The event queue wakes its waiting consumers itself: a wait cancelled by a
    # timeout must leave no waiter behind and take no event with it, and two
    # consumers of one shard must share the dispatches, each exactly once.
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = Bot(gateway)
            async with bot.shard as shard:
                await shard.wait_ready()
                for _ in range(5):
                    with contextlib.suppress(asyncio.TimeoutError):
                        bot.events.append(await asyncio.wait_for(shard.__anext__(), 0.01))
                assert not shard._waiters
                gateway.dispatch("TEST", {"i": 0})
                seen: list[list[int]] = [[], []]

                async def consume(mine: list[int]) -> None:
                    async for event in shard:
                        if isinstance(event, Dispatch) and event.name == "TEST":
                            mine.append(event.data["i"])

                consumers = [asyncio.create_task(consume(mine)) for mine in seen]
                await until(lambda: seen[0] + seen[1] == [0])
                await asyncio.sleep(0.01)  # both consumers wait again
                await push(gateway, 1, 40)
                await until(lambda: len(seen[0]) + len(seen[1]) == 40)
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*consumers), 5)
            assert sorted(seen[0] + seen[1]) == list(range(40))
            assert seen[0] == sorted(seen[0]) and seen[1] == sorted(seen[1])

    run(main())


async def _run_forever(bot: Bot) -> None:
    async with bot.shard:
        await bot.consume()


def test_send_a_command() -> None:
    async def body(gateway: LocalGateway, bot: Bot) -> None:
        await bot.shard.send(3, {"since": None, "activities": [], "status": "idle", "afk": False})
        server = gateway.connections[0]
        await until(lambda: any(r.op == 3 for r in server.received))

    run(scenario(False, None, body))


def test_send_and_wait_ready_after_close_raise_instead_of_hanging() -> None:
    from discord_gateway import LocalProtocolError

    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = Bot(gateway)
            async with bot.shard:
                await bot.shard.wait_ready()
            with pytest.raises(LocalProtocolError, match="closed"):
                await asyncio.wait_for(bot.shard.wait_ready(), 2)
            with pytest.raises(LocalProtocolError, match="closed"):
                await asyncio.wait_for(bot.shard.send(3, {}), 2)

    run(main())


def test_a_fatal_stop_ends_the_recovery_loop() -> None:
    async def main() -> None:
        async with serve(CONFIG) as gateway:
            bot = Bot(gateway, token="wrong")
            async with bot.shard:
                await asyncio.wait_for(bot.consume(), 5)
                assert bot.shard._task is not None
                await asyncio.wait_for(asyncio.shield(bot.shard._task), 2)  # it ended itself
            assert len(gateway.connections) == 1

    run(main())


@pytest.mark.parametrize("tls", TLS)
def test_a_stalled_consumer_bounds_the_queue_and_loses_nothing(
    tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Reading pauses at the bound while the consumer stalls; after catching up
    # every dispatch arrives exactly once, in order.
    limit, total = 20, 200

    async def main() -> None:
        contexts = tls_contexts() if tls else None
        server_tls = contexts.server if contexts else None
        async with serve(CONFIG, ssl_context=server_tls) as gateway:
            bot = Bot(gateway, contexts.client if contexts else None, max_pending_events=limit)
            async with bot.shard:
                await stall_then_catch_up(
                    bot, bot.shard, gateway.dispatch, asyncio.sleep, limit=limit, total=total
                )
            assert bot.tests() == list(range(total))
            assert len(gateway.connections) >= 2  # the stall made a zombie; it was resumed
            assert not [c for c in gateway.connections[1:] if 2 in [r.op for r in c.received]]

    run(main(), timeout=30)
    assert_reading_was_paused(caplog)


class _CountingSelector(selectors.DefaultSelector):
    """The loop's selector: before each wait, notes which shards await a heartbeat ACK."""

    def __init__(self) -> None:
        super().__init__()
        self.shards: list[Shard] = []
        self.waits: list[tuple[bool, ...]] = []

    def select(self, timeout: float | None = None) -> list[Any]:
        self.waits.append(tuple(not shard.connection.acknowledged for shard in self.shards))
        return super().select(timeout)


@pytest.mark.parametrize("grid", [0.0, 0.1])
def test_heartbeats_on_the_grid_share_one_loop_wakeup(grid: float) -> None:
    # Two shards whose first heartbeats are 50 ms apart, in one 100 ms slot of the
    # grid: on it, both heartbeats go out in one loop iteration; without it, in two.
    interval = 2.0
    config = ServerConfig(heartbeat_interval=interval, enforce_identify_concurrency=False)
    selector = _CountingSelector()

    async def main() -> None:
        async with serve(config) as gateway:
            slot = math.ceil((asyncio.get_running_loop().time() + 1.0) / 0.1) * 0.1
            rngs = [
                SlotRandom(slot, offset, interval, lambda: asyncio.get_running_loop().time())
                for offset in (0.025, 0.075)
            ]
            shards = [
                Shard(gateway.token, intents=513, url=gateway.url, rng=rng, heartbeat_grid=grid)
                for rng in rngs
            ]
            selector.shards = shards
            for shard in shards:
                shard.start()
            await until(lambda: all(shard.connection.latency is not None for shard in shards))
            for shard in shards:
                await shard.close()
            assert all(len(rng.jitters) == 1 and 0 <= rng.jitters[0] < 1 for rng in rngs)

    loop = asyncio.SelectorEventLoop(selector)
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()
    # The first wait after a heartbeat went out: which shards had sent theirs by then.
    first = next(waiting for waiting in selector.waits if any(waiting))
    assert first == ((True, True) if grid else (True, False))


def test_a_read_that_leaves_the_deadline_alone_keeps_the_armed_timer() -> None:
    # An ACK or a dispatch does not move the next heartbeat: no cancel and re-arm
    # (a dead handle left in the loop's heap) for every read.
    config = ServerConfig(heartbeat_interval=30.0, enforce_identify_concurrency=False)

    async def main() -> None:
        async with serve(config) as gateway:
            bot = Bot(gateway)
            async with bot.shard:
                consumer = asyncio.create_task(bot.consume())
                await until(lambda: bot.count(Ready) == 1)
                protocol = bot.shard._protocol
                assert protocol is not None
                armed = protocol._timer
                assert armed is not None and armed.when() == bot.shard.connection.next_deadline()
                gateway.dispatch("TEST", {"i": 0})
                await until(lambda: bot.tests() == [0])
                assert protocol._timer is armed and not armed.cancelled()
            await asyncio.wait_for(consumer, 5)

    run(main())
