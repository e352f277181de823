"""Idle cost per shard, side by side: ours, discord.py and hikari on the local gateway.

    cd <repo> && .venv/bin/python benchmarks/idle_peers.py [--shards 200] [--seconds 45]
        [--rounds 1] [--only ours --only discord.py ...] [--json out.json]

For each client in turn, a FRESH process (clean ``tracemalloc`` and RSS) starts
the local gateway in a process of its own (``ServerConfig``: heartbeat interval
41.25 s, no guilds, identify concurrency and session start limits off,
``/gateway/bot`` recommends N shards with ``max_concurrency`` N), starts N shards
of that client on one asyncio loop, waits until every one is READY (the
client's own signal, then the gateway's count of identified sessions) and
measures, as ``benchmarks/idle.py`` does:

* memory per shard: ``tracemalloc``'s traced memory over the start-up (client
  objects included), divided by N; and the RSS growth over the same start-up
  minus what ``tracemalloc`` itself holds for its traces, divided by N;
* idle CPU: this process's CPU time over the next ``--seconds``, per shard per
  second and per heartbeat round trip (round trips counted by the gateway:
  the heartbeats it received and acknowledged in the window, same for all);
* loop wake-ups per round trip (``select()`` calls that may sleep).

The clients, each in its smallest per-shard setup with caches off where the
library allows it (zlib-stream, intents GUILDS | GUILD_MESSAGES):

* ``ours``: N ``discord_gateway.adapters.asyncio.Shard(shard=(i, N))``, default
  options (``heartbeat_grid`` 2 s); ``ours-manager``: one ``ShardManager``
  (asks ``/gateway/bot``, paces IDENTIFYs, one forwarder task per shard), its
  events drained.
* ``discord.py``: one ``AutoShardedClient`` (one connection state for all
  shards; N ``Client``s would each carry their own), ``max_messages=None``,
  ``MemberCacheFlags.none()``, ``chunk_guilds_at_startup=False``, pointed at
  the gateway with ``discord.http.Route.BASE``; ``before_identify_hook``
  overridden to not sleep (its default waits 5 s per shard, whatever
  ``max_concurrency`` says: 200 shards would take 17 minutes). ``zstandard``
  is hidden from it so that it picks zlib-stream (with zstandard importable
  it asks for zstd-stream).
* ``hikari``: one ``GatewayBot`` with ``shard_count=N``, ``rest_url`` at the
  gateway, ``CacheSettings(components=CacheComponents.NONE)``, no banner, no
  update check; it starts ``max_concurrency`` shards per 5 s window (one
  window here). ``backports.zstd`` is hidden from it: with it (or on Python
  3.14) it asks for zstd-stream, which ``GatewayBot`` has no option to change.

The zstd modules are hidden from every client's process alike (ours uses
zlib-stream by default anyway); the table's "transport" column is what the
gateway saw each client ask for.

Not run by CI; figures in benchmarks/README.md (idle section).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.idle import idle_window, run  # noqa: E402

CLIENTS = ("ours", "ours-manager", "discord.py", "hikari")
INTENTS = 1 | 512  # GUILDS | GUILD_MESSAGES
PAGE = os.sysconf("SC_PAGE_SIZE")
IMPORTS = {
    "ours": ["discord_gateway.adapters.asyncio"],
    "ours-manager": ["discord_gateway.adapters.manager", "discord_gateway.demo"],
    "discord.py": ["discord"],
    "hikari": ["hikari", "hikari.impl"],
}


# -- the gateway, in its own process -------------------------------------------------


async def serve(shards: int) -> None:
    """The local gateway; each line on stdin is answered with "<ready> <heartbeats> <compress>"."""
    from discord_gateway.testing import ServerConfig
    from discord_gateway.testing import serve as serve_gateway
    from discord_gateway.testing._config import ConnectionState

    config = ServerConfig(
        heartbeat_interval=41.25,
        guild_ids=(),
        send_guild_creates=False,
        recommended_shards=shards,
        max_concurrency=shards,
        enforce_identify_concurrency=False,
        enforce_session_start_limit=False,
        session_start_limit=max(1000, 10 * shards),
        keep_closed_connections=10 * shards,
    )
    async with serve_gateway(config) as gateway:
        api = f"http://{gateway.host}:{gateway.port}/api/v10"
        print(gateway.url, gateway.token, api, flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            ready = sum(
                c.session is not None and c.state is ConnectionState.CONNECTED
                for c in gateway.connections
            )
            beats = sum(c.heartbeats for c in gateway.connections)
            compress = ",".join(sorted({str(c.compress) for c in gateway.connections})) or "-"
            print(ready, beats, compress, flush=True)


class Gateway:
    """The client process's handle on the gateway process."""

    def __init__(self, shards: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(shards)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url, self.token, self.api = self.process.stdout.readline().split()

    def status(self) -> tuple[int, int, str]:
        """(sessions READY, heartbeats received so far, the connections' compress values)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("?\n")
        self.process.stdin.flush()
        ready, beats, compress = self.process.stdout.readline().split()
        return int(ready), int(beats), compress

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


# -- the clients: start N shards, wait until READY, and a way to stop -------------------

Stop = Callable[[], Awaitable[None]]


async def start_ours(gateway: Gateway, n: int) -> Stop:
    from discord_gateway.adapters.asyncio import Shard

    token, url = gateway.token, gateway.url
    shards = [Shard(token, intents=INTENTS, url=url, shard=(i, n)) for i in range(n)]
    for shard in shards:
        shard.start()
    await asyncio.gather(*(s.wait_ready() for s in shards))

    async def stop() -> None:
        for shard in shards:
            await shard.close()

    return stop


async def start_ours_manager(gateway: Gateway, n: int) -> Stop:
    from discord_gateway.adapters.manager import ShardManager

    bot = ShardManager(gateway.token, intents=INTENTS, api_base=gateway.api)
    await bot.start()

    async def drain() -> None:
        async for _ in bot:
            pass

    drainer = asyncio.ensure_future(drain())
    await bot.wait_ready()

    async def stop() -> None:
        await bot.close()
        drainer.cancel()

    return stop


async def start_discord_py(gateway: Gateway, n: int) -> Stop:
    import discord

    logging.getLogger("discord").setLevel(logging.ERROR)  # no voice (PyNaCl) warning
    discord.http.Route.BASE = gateway.api

    class Bot(discord.AutoShardedClient):
        async def before_identify_hook(
            self, shard_id: int | None, *, initial: bool = False
        ) -> None:
            return None  # the default sleeps 5 s before every shard's IDENTIFY

    client = Bot(
        intents=discord.Intents(guilds=True, guild_messages=True),
        max_messages=None,
        member_cache_flags=discord.MemberCacheFlags.none(),
        chunk_guilds_at_startup=False,
    )
    task = asyncio.ensure_future(client.start(gateway.token))
    waiting = asyncio.ensure_future(client.wait_until_ready())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
    assert client.shard_count == n, client.shard_count

    async def stop() -> None:
        await client.close()
        await asyncio.gather(task, return_exceptions=True)

    return stop


async def start_hikari(gateway: Gateway, n: int) -> Stop:
    import hikari

    logging.getLogger("hikari").setLevel(logging.ERROR)  # no optimization-level warning
    bot = hikari.GatewayBot(
        gateway.token,
        rest_url=gateway.api,
        banner=None,
        intents=hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES,
        cache_settings=hikari.impl.CacheSettings(components=hikari.api.CacheComponents.NONE),
    )
    await bot.start(shard_count=n, check_for_updates=False)  # returns once all are READY
    return bot.close


STARTERS: dict[str, Callable[[Gateway, int], Awaitable[Stop]]] = {
    "ours": start_ours,
    "ours-manager": start_ours_manager,
    "discord.py": start_discord_py,
    "hikari": start_hikari,
}


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def measure(client: str, n: int, seconds: float, ready_timeout: float) -> dict[str, Any]:
    gateway = Gateway(n)
    try:
        gc.collect()
        tracemalloc.start()
        base, base_rss, base_tm = tracemalloc.get_traced_memory()[0], rss(), 0
        base_tm = tracemalloc.get_tracemalloc_memory()
        started = time.perf_counter()
        try:
            stop = await asyncio.wait_for(STARTERS[client](gateway, n), ready_timeout)
        except Exception as error:
            tracemalloc.stop()
            ready = gateway.status()[0]
            return {"client": client, "shards": n, "ready": ready, "error": repr(error)}
        deadline = time.perf_counter() + 30
        while (ready := gateway.status()[0]) < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        startup = time.perf_counter() - started
        gc.collect()
        memory = tracemalloc.get_traced_memory()[0] - base
        grown = rss() - base_rss - (tracemalloc.get_tracemalloc_memory() - base_tm)
        tracemalloc.stop()
        gc.collect()
        _, beats, compress = gateway.status()
        window = await idle_window(seconds)
        ready_after, beats_after, _ = gateway.status()
        await stop()
    finally:
        gateway.stop()
    return {
        "client": client,
        "shards": n,
        "ready": ready,
        "ready_after": ready_after,
        "compress": compress,
        "startup": startup,
        "memory_per_shard": memory / n,
        "rss_per_shard": grown / n,
        **window,
        "heartbeats": beats_after - beats,
    }


def version(client: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    name = {"discord.py": "discord.py", "hikari": "hikari"}.get(client, "discord-gateway")
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return "not installed"


def available(client: str) -> bool:
    from importlib.util import find_spec

    module = {"discord.py": "discord", "hikari": "hikari"}.get(client, "discord_gateway")
    return find_spec(module) is not None


def _span(values: list[float], unit: str, digits: int = 1) -> str:
    low, high = min(values), max(values)
    figure = f"{low:.{digits}f}{' ' + unit if unit else ''}"
    if round(low, digits) == round(high, digits):
        return figure
    return f"{figure} ({low:.{digits}f}-{high:.{digits}f})"


def table(results: list[dict[str, Any]]) -> str:
    """One row per client: the min over its rounds (the spread in brackets)."""
    lines = [
        "| client | transport | shards READY | start-up "
        "| memory per shard (tracemalloc) | RSS per shard "
        "| CPU per shard per second | round trips | CPU per round trip | wake-ups per round trip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for client in dict.fromkeys(r["client"] for r in results):
        rounds = [r for r in results if r["client"] == client]
        name = f"{client} {rounds[0]['version']}"
        failed = [r for r in rounds if "error" in r]
        if failed:
            r = failed[0]
            lines.append(f"| {name} | - | {r['ready']} of {r['shards']} | {r['error']} |")
            continue
        n = rounds[0]["shards"]
        ready = min(min(r["ready"], r["ready_after"]) for r in rounds)
        startup = _span([r["startup"] for r in rounds], "s")
        memory = _span([r["memory_per_shard"] / 1024 for r in rounds], "KiB")
        grown = _span([r["rss_per_shard"] / 1024 for r in rounds], "KiB")
        per_second = _span([r["cpu"] / n / r["seconds"] * 1e6 for r in rounds], "us", 2)
        beats = "/".join(str(r["heartbeats"]) for r in rounds)
        counted = [r for r in rounds if r["heartbeats"]]
        per_beat = wakes = "-"
        if counted:
            per_beat = _span([r["cpu"] / r["heartbeats"] * 1e6 for r in counted], "us", 0)
            wakes = _span([r["wakeups"] / r["heartbeats"] for r in counted], "", 2)
        lines.append(
            f"| {name} | {rounds[0]['compress']} | {ready} of {n} | {startup} "
            f"| {memory} | {grown} | {per_second} "
            f"| {beats} | {per_beat} | {wakes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--only", action="append", choices=CLIENTS, help="repeatable; default all")
    ap.add_argument("--rounds", type=int, default=1, help="clients interleaved, R times")
    ap.add_argument("--ready-timeout", type=float, default=300.0, metavar="S")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    results: list[dict[str, Any]] = []
    clients = [c for c in args.only or CLIENTS if available(c)]
    for client in sorted(set(args.only or CLIENTS) - set(clients)):
        print(f"# {client}: not installed, skipped", flush=True)
    for client in clients * args.rounds:
        given = (args.shards, args.seconds, args.ready_timeout)
        out = subprocess.run(
            [sys.executable, __file__, "--client", client, *map(str, given)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        result = json.loads(out.splitlines()[-1])
        result["version"] = version(client)
        results.append(result)
        print(f"# {client}: {result}", flush=True)
    rounds = f", min of {args.rounds} interleaved rounds" if args.rounds > 1 else ""
    print(f"# {args.shards} idle shards each, heartbeat 41.25 s, {args.seconds:g} s window{rounds}")
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(int(sys.argv[2])))
    elif sys.argv[1:2] == ["--client"]:
        client, n = sys.argv[2], int(sys.argv[3])
        seconds, ready_timeout = float(sys.argv[4]), float(sys.argv[5])
        # discord.py and hikari ask for zstd-stream when they can import a zstd module
        for hidden in ("zstandard", "compression.zstd", "backports.zstd"):
            sys.modules[hidden] = None  # type: ignore[assignment]
        for module in IMPORTS[client]:  # before tracemalloc starts: not per-shard memory
            importlib.import_module(module)
        print(json.dumps(run(measure(client, n, seconds, ready_timeout))), flush=True)
    else:
        main()
