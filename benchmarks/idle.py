"""Idle cost per shard: N asyncio shards on the local gateway, heartbeats spread.

    cd <repo> && .venv/bin/python benchmarks/idle.py [--shards 500] [--seconds 60]

The local gateway runs in its own process (heartbeat interval 41.25 s, as
Discord's). This process starts N ``discord_gateway.adapters.asyncio.Shard``s
(zlib-stream), waits until every one is READY, and reports:

* memory per shard: ``tracemalloc``'s traced memory over the start-up of the
  N shards (transport, protocol, core, queues), divided by N;
* idle CPU: this process's CPU time over the next ``--seconds``, per shard per
  second and per heartbeat round trip (heartbeats counted from each core's
  acknowledged round trips). The first heartbeat is jittered (``interval *
  random()``, as Discord asks), so the round trips are spread over the interval:
  each one wakes the loop on its own.

Not run by CI; figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


async def serve() -> None:
    from discord_gateway.testing import ServerConfig
    from discord_gateway.testing import serve as serve_gateway

    config = ServerConfig(heartbeat_interval=41.25, send_guild_creates=False)
    async with serve_gateway(config) as gateway:
        print(gateway.url, gateway.token, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _acks(shards: list[Any]) -> int:
    # Acknowledged round trips of each core (it keeps the last five).
    return sum(len(shard.connection._latencies) for shard in shards)


async def measure(
    url: str, token: str, count: int, seconds: float, profile: bool = False
) -> dict[str, Any]:
    from discord_gateway.adapters.asyncio import Shard

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    shards = [Shard(token, intents=513, url=url) for _ in range(count)]
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
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    beats = _acks(shards) - acks
    for shard in shards:
        await shard.close()
    return {
        "shards": count,
        "seconds": wall,
        "cpu": cpu,
        "heartbeats": beats,
        "memory_per_shard": memory,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--profile", action="store_true", help="cProfile the idle window")
    args = ap.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url, token = server.stdout.readline().split()
        result = asyncio.run(measure(url, token, args.shards, args.seconds, args.profile))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(30)
    n, secs, cpu, beats = result["shards"], result["seconds"], result["cpu"], result["heartbeats"]
    print(f"# {n} idle asyncio shards, heartbeat 41.25 s (first one jittered), {secs:.0f} s")
    print(f"memory per shard        {result['memory_per_shard'] / 1024:8.1f} KiB (tracemalloc)")
    print(f"CPU per shard per second {cpu / n / secs * 1e6:7.2f} us")
    print(f"heartbeat round trips   {beats:8d}")
    if beats:
        print(f"CPU per round trip      {cpu / beats * 1e6:8.1f} us (all idle CPU / round trips)")
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        asyncio.run(serve())
    else:
        main()
