"""Idle cost per shard: N asyncio shards on the local gateway, heartbeats spread.

    cd <repo> && .venv/bin/python benchmarks/idle.py [--shards 500] [--seconds 60]
        [--heartbeat-grid G] [--floor]

The local gateway runs in its own process (heartbeat interval 41.25 s, as
Discord's). This process starts N ``discord_gateway.adapters.asyncio.Shard``s
(zlib-stream), waits until every one is READY, and reports:

* memory per shard: ``tracemalloc``'s traced memory over the start-up of the
  N shards (transport, protocol, core, queues), divided by N;
* idle CPU: this process's CPU time over the next ``--seconds``, per shard per
  second and per heartbeat round trip (heartbeats counted from each core's
  acknowledged round trips). The first heartbeat is jittered (``interval *
  random()``, as Discord asks), so the round trips are spread over the interval:
  each one wakes the loop on its own, unless the shards' ``heartbeat_grid``
  (default: the adapters' ``HEARTBEAT_GRID``; ``--heartbeat-grid 0`` is exact
  timing) puts several heartbeats on one deadline;
* loop wake-ups per round trip: the event loop's ``select()`` calls that
  waited (timeout not 0), counted by a wrapping selector, over round trips.

``--floor`` measures the same pattern without this library: N bare
``asyncio.Protocol``s on loopback TCP to an echo server in its own process,
each writing 20 bytes at its own jittered time every 41.25 s and reading the
echo (two loop wake-ups per round trip, as ours without a grid; with
``--heartbeat-grid G`` its beats are on the same grid as ours). Ours minus the
floor is what the adapter, the driver and the core add.

Not run by CI; figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import random
import resource
import selectors
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


async def serve() -> None:
    from discord_gateway.testing import ServerConfig
    from discord_gateway.testing import serve as serve_gateway

    config = ServerConfig(
        heartbeat_interval=41.25, send_guild_creates=False, enforce_identify_concurrency=False
    )
    async with serve_gateway(config) as gateway:
        print(gateway.url, gateway.token, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class CountingSelector(selectors.DefaultSelector):
    """The loop's selector, counting the ``select()`` calls that may sleep (wake-ups)."""

    wakeups = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout > 0:
            self.wakeups += 1
        return super().select(timeout)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a loop whose selector counts wake-ups."""
    loop = asyncio.SelectorEventLoop(CountingSelector())
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def _wakeups() -> int:
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    return selector.wakeups if isinstance(selector, CountingSelector) else 0


def _acks(shards: list[Any]) -> int:
    # Acknowledged round trips of each core (it keeps the last five).
    return sum(len(shard.connection._latencies) for shard in shards)


async def idle_window(seconds: float) -> dict[str, float]:
    """Sleep ``seconds``; what this process spent meanwhile: wall seconds, CPU
    seconds (user + kernel, and each), and the event loop's wake-ups."""
    wakeups = _wakeups()
    wall, cpu = time.perf_counter(), time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": wall,
        "cpu": cpu,
        "user": after.ru_utime - usage.ru_utime,
        "system": after.ru_stime - usage.ru_stime,
        "wakeups": _wakeups() - wakeups,
    }


async def measure(
    url: str,
    token: str,
    count: int,
    seconds: float,
    profile: bool = False,
    grid: float | None = None,
) -> dict[str, Any]:
    from discord_gateway.adapters.asyncio import Shard

    options: dict[str, Any] = {} if grid is None else {"heartbeat_grid": grid}
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    shards = [Shard(token, intents=513, url=url, **options) for _ in range(count)]
    for shard in shards:
        shard.start()
    await asyncio.wait_for(asyncio.gather(*(s.wait_ready() for s in shards)), 300)
    gc.collect()
    memory = (tracemalloc.get_traced_memory()[0] - base) / count
    tracemalloc.stop()
    acks = _acks(shards)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    window = await idle_window(seconds)
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    beats = _acks(shards) - acks
    for shard in shards:
        await shard.close()
    return {
        "shards": count,
        **window,
        "heartbeats": beats,
        "memory_per_shard": memory,
    }


async def serve_echo() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)

    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class _Beater(asyncio.Protocol):
    """The floor's connection: 20 bytes every 41.25 s (first jittered), count the echoes."""

    grid = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.echoes = transport, 0
        self.loop = asyncio.get_running_loop()
        self.deadline = self.on_grid(self.loop.time() + 41.25 * random.random())
        self.loop.call_at(self.deadline, self.beat)

    def on_grid(self, deadline: float) -> float:
        return math.floor(deadline / self.grid) * self.grid if self.grid else deadline

    def beat(self) -> None:
        self.transport.write(b"x" * 20)
        self.deadline = self.on_grid(self.deadline + 41.25)
        self.loop.call_at(self.deadline, self.beat)

    def data_received(self, data: bytes) -> None:
        self.echoes += 1


async def measure_floor(port: int, count: int, seconds: float, grid: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _Beater.grid = grid
    beaters: list[_Beater] = []
    for _ in range(count):
        _, beater = await loop.create_connection(_Beater, "127.0.0.1", port)
        beaters.append(beater)
    gc.collect()
    echoes = sum(b.echoes for b in beaters)
    window = await idle_window(seconds)
    for beater in beaters:
        beater.transport.abort()
    return {
        "shards": count,
        **window,
        "heartbeats": sum(b.echoes for b in beaters) - echoes,
        "memory_per_shard": 0.0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--profile", action="store_true", help="cProfile the idle window")
    ap.add_argument("--floor", action="store_true", help="bare asyncio protocols, no library")
    ap.add_argument(
        "--heartbeat-grid",
        type=float,
        default=None,
        metavar="G",
        help="the shards' heartbeat_grid (default: the adapters'; 0: exact timing)",
    )
    args = ap.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-echo" if args.floor else "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if args.floor:
            port = int(server.stdout.readline())
            grid = args.heartbeat_grid or 0.0
            result = run(measure_floor(port, args.shards, args.seconds, grid))
        else:
            url, token = server.stdout.readline().split()
            result = run(
                measure(url, token, args.shards, args.seconds, args.profile, args.heartbeat_grid)
            )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(30)
    n, secs, cpu, beats = result["shards"], result["seconds"], result["cpu"], result["heartbeats"]
    what = "bare asyncio protocols (floor)" if args.floor else "asyncio shards"
    grid = "default" if args.heartbeat_grid is None else f"{args.heartbeat_grid:g} s"
    print(f"# {n} idle {what}, heartbeat 41.25 s (first one jittered), {secs:.0f} s, grid {grid}")
    if not args.floor:
        memory = result["memory_per_shard"] / 1024
        print(f"memory per shard        {memory:8.1f} KiB (tracemalloc)")
    print(f"CPU per shard per second {cpu / n / secs * 1e6:7.2f} us")
    print(f"heartbeat round trips   {beats:8d}")
    if beats:
        print(f"CPU per round trip      {cpu / beats * 1e6:8.1f} us (all idle CPU / round trips)")
        user, system = result["user"] / beats * 1e6, result["system"] / beats * 1e6
        print(f"  of which user, kernel {user:8.1f} us, {system:.1f} us (getrusage)")
        print(f"loop wake-ups per round trip {result['wakeups'] / beats:5.2f}")
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        asyncio.run(serve())
    elif sys.argv[1:] == ["--serve-echo"]:
        asyncio.run(serve_echo())
    else:
        main()
