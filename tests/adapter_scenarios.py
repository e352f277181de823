"""What the adapter tests share: the gateway's configuration, ``Recorder``, the
stalled-consumer scenario, and for threading and trio the local gateway in a thread.

The local gateway is asyncio; the threading and trio adapters cannot share its
loop, so it runs in a thread of its own with its own loop: the pytest plugin's
``GatewayFixture``. Everything that touches it (pushing dispatches, reading what
a connection received) goes through that loop with ``ThreadedGateway.call``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from discord_gateway import Dispatch, Event, Ready
from discord_gateway.testing import ConnectionFaults, ServerConfig
from discord_gateway.testing.pytest_plugin import GatewayFixture

INTERVAL = 0.2  # seconds: short heartbeats keep these tests fast
# op 9 scenarios re-identify 1-5 s later, sooner than protocol 21's 5 s bucket allows:
# the identify concurrency limit is opted out of.
CONFIG = ServerConfig(heartbeat_interval=INTERVAL, enforce_identify_concurrency=False)
TLS = [pytest.param(False, id="ws"), pytest.param(True, id="wss")]


class ThreadedGateway(GatewayFixture):
    """The pytest plugin's gateway in a thread, with these tests' ``CONFIG`` and
    lookups into one connection's server (each through the gateway's loop)."""

    def __init__(
        self,
        tls: bool = False,
        faults: list[ConnectionFaults] | None = None,
        config: ServerConfig = CONFIG,
    ) -> None:
        super().__init__(config, tls=tls, faults=faults)

    def ops(self, connection: int) -> list[int]:
        """The opcodes connection ``connection`` (0-based) received, in order."""
        return self.call(lambda: [r.op for r in self.gateway.connections[connection].received])

    def connection_count(self) -> int:
        return self.call(lambda: len(self.gateway.connections))

    def server(self, connection: int, attribute: str) -> Any:
        return self.call(lambda: getattr(self.gateway.connections[connection], attribute))


class Recorder:
    """What a bot received."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.error: BaseException | None = None

    def tests(self) -> list[int]:
        return [e.data["i"] for e in self.events if isinstance(e, Dispatch) and e.name == "TEST"]

    def count(self, kind: type[Event]) -> int:
        return sum(1 for e in self.events if isinstance(e, kind))


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` from a plain thread; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(0.01)


async def stall_then_catch_up(
    bot: Recorder,
    shard: Any,
    dispatch: Callable[[str, Any], object],
    sleep: Callable[[float], Awaitable[object]],
    *,
    limit: int,
    total: int,
) -> None:
    """The async adapters' stalled consumer: after READY, the consumer stops reading
    for longer than a heartbeat interval while ``total`` dispatches are pushed.

    The shard's queue stays near ``limit`` (the bound, plus what one read held)
    and the connection becomes a zombie (closed, later resumed); then the
    consumer catches up into ``bot.events`` until it has every dispatch.
    """
    async for event in shard:
        if isinstance(event, Ready):
            break
    peak = 0
    for i in range(total):
        dispatch("TEST", {"i": i})
        await sleep(0.002)
        peak = max(peak, shard.pending_events)
    for _ in range(120):  # > 2 heartbeat intervals + the close timeout: a zombie
        await sleep(0.01)
        peak = max(peak, shard.pending_events)
    assert peak <= 3 * limit, peak
    async for event in shard:
        bot.events.append(event)
        if len(bot.tests()) == total:
            break


def assert_reading_was_paused(caplog: pytest.LogCaptureFixture) -> None:
    """The bound was hit, and said so once per pause at WARNING."""
    pauses = [r for r in caplog.records if "reading from the gateway is paused" in r.getMessage()]
    assert pauses and all(r.levelno == logging.WARNING for r in pauses)


class SlotRandom(random.Random):
    """A jitter that puts the first heartbeat ``offset`` into the grid slot at ``slot``.

    The core draws it at HELLO: ``now + interval * random()`` is then ``slot + offset``
    on ``clock`` (the event loop's) whenever HELLO came, so two shards land in one
    slot at different exact times.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> SlotRandom:
        # Before 3.11, random.Random.__new__ refuses more than one argument.
        return super().__new__(cls)

    def __init__(
        self, slot: float, offset: float, interval: float, clock: Callable[[], float]
    ) -> None:
        super().__init__(0)
        self.slot, self.offset, self.interval, self.clock = slot, offset, interval, clock
        self.jitters: list[float] = []

    def random(self) -> float:
        jitter = (self.slot + self.offset - self.clock()) / self.interval
        self.jitters.append(jitter)
        return jitter
