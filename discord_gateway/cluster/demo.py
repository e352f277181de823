"""``python -m discord_gateway cluster-demo``: two gateway processes and two
workers on a local ``redis-server``, against the local gateway, offline.

It shows, as seen by the gateway: IDENTIFYs paced per bucket across both
processes (protocol 21), a ``kill -9`` of one process and the other RESUMEing its
shards once their leases expire, and every dispatch in the event stream
consumed exactly once by a consumer group of two workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..testing import LocalGateway, ServerConfig, serve

__all__ = ("run_cluster_demo", "stop_processes")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server), "
            "or pass --redis URL of a Redis you run"
        )
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait()


async def stop_processes(
    processes: Iterable[subprocess.Popen[bytes]], *, grace: float = 10.0
) -> None:
    """SIGTERM every process, then wait for them without blocking the event loop
    (a local gateway in this loop must still answer their closes); kill whichever
    has not exited ``grace`` seconds after its turn came."""
    started = list(processes)
    for process in started:
        process.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    for process in started:
        deadline = loop.time() + grace
        while process.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()


class _Demo:
    def __init__(self, redis_url: str, gateway: LocalGateway, shards: int, concurrency: int):
        self.redis_url = redis_url
        self.gateway = gateway
        self.shards = shards
        self.concurrency = concurrency
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.start = asyncio.get_running_loop().time()
        self._shown = 0

    def say(self, text: str) -> None:
        elapsed = asyncio.get_running_loop().time() - self.start
        print(f"[{elapsed:6.2f} s] {text}", flush=True)

    def spawn(self, node_id: str, lease: float) -> None:
        command = [sys.executable, "-m", "discord_gateway.cluster", "--redis", self.redis_url]
        command += ["node", "--url", self.gateway.url, "--token", self.gateway.token]
        command += ["--shards", str(self.shards), "--max-concurrency", str(self.concurrency)]
        command += ["--lease", str(lease), "--node-id", node_id]
        self.nodes[node_id] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.say(f"started gateway process {node_id} (pid {self.nodes[node_id].pid})")

    def show_new_greetings(self) -> None:
        """Print every IDENTIFY and RESUME the gateway received since last time."""
        seen = sorted(
            (r.at, r.op, r.data, c.index)
            for c in self.gateway.connections
            for r in c.received
            if r.op in (2, 6)
        )
        for at, op, data, index in seen[self._shown :]:
            elapsed = at - self.start
            if op == 2:
                shard = data["shard"][0]
                bucket = shard % self.concurrency
                print(
                    f"[{elapsed:6.2f} s] gateway: IDENTIFY shard {shard} (bucket {bucket})",
                    flush=True,
                )
            else:
                shard = self._shard_of(index)
                print(
                    f"[{elapsed:6.2f} s] gateway: RESUME of shard {shard} "
                    f"(session {data['session_id'][:8]}..., seq {data['seq']})",
                    flush=True,
                )
        self._shown = len(seen)

    def _shard_of(self, index: int) -> int | str:
        connection = self.gateway.connections[index - 1]
        session = connection.session
        return session.shard[0] if session is not None and session.shard else "?"

    async def until(self, predicate: Any, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            self.show_new_greetings()
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the demo timed out")
            await asyncio.sleep(0.05)
        self.show_new_greetings()


async def _main(redis_url: str, shards: int, concurrency: int, lease: float) -> int:
    import redis.asyncio as aioredis

    from ._redis import consume

    config = ServerConfig(
        heartbeat_interval=5.0,
        recommended_shards=shards,
        max_concurrency=concurrency,
        enforce_identify_concurrency=True,
        guild_ids=tuple((i << 22) + 1 for i in range(2 * shards)),
    )
    client = aioredis.Redis.from_url(redis_url)
    async with serve(config) as gateway:
        demo = _Demo(redis_url, gateway, shards, concurrency)
        print(
            f"local gateway {gateway.url}, Redis {redis_url}: {shards} shards, "
            f"max_concurrency {concurrency}, lease {lease} s",
            flush=True,
        )
        traffic: asyncio.Task[None] | None = None
        try:
            demo.spawn("a", lease)
            demo.spawn("b", lease)
            await demo.until(lambda: len(gateway.store.sessions) == shards, 60)
            demo.say(
                f"all {shards} shards ready; one IDENTIFY per bucket per 5 s across both processes"
            )
            owners: dict[int, Any] = {
                i: await client.get(f"discord_gateway:owner:{i}") for i in range(shards)
            }
            for shard_id, owner in owners.items():
                node = (owner or b"?").decode().split(":")[0]
                demo.say(f"shard {shard_id} is run by process {node}")

            async def dispatch() -> None:
                guilds = [(i << 22) + 1 for i in range(2 * shards)]
                for n in itertools.count():
                    gateway.dispatch("MESSAGE_CREATE", {"guild_id": str(guilds[n % len(guilds)])})
                    await asyncio.sleep(0.02)

            traffic = asyncio.get_running_loop().create_task(dispatch())
            await asyncio.sleep(1.0)
            victim = demo.nodes.pop("b")
            resumes = sum(r.op == 6 for c in gateway.connections for r in c.received)
            killed_at = asyncio.get_running_loop().time()
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            demo.say("kill -9 of process b")
            moved = sum(1 for owner in owners.values() if owner and owner.startswith(b"b:"))
            await demo.until(
                lambda: (
                    sum(r.op == 6 for c in gateway.connections for r in c.received)
                    >= resumes + moved
                ),
                4 * lease + 10,
            )
            took = asyncio.get_running_loop().time() - killed_at
            demo.say(
                f"process a took over b's {moved} shards and RESUMEd them {took:.2f} s after the "
                f"kill; sessions started in all: {gateway.store.identify_count} (no IDENTIFY)"
            )
            await asyncio.sleep(1.0)
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
            expected = {
                (sid, seq)
                for sid, session in gateway.store.sessions.items()
                for seq in range(1, session.seq + 1)
            }
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                entries: Any = await client.xrange("discord_gateway:events")
                keys = [(f[b"session"].decode(), int(f[b"seq"])) for _, f in entries]
                if set(keys) >= expected or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            consumed: dict[str, list[str]] = {"worker-1": [], "worker-2": []}

            async def worker(name: str) -> None:
                async for event in consume(redis_url, "workers", name, block=0.2):
                    consumed[name].append(event.id)
                    await asyncio.sleep(0)

            workers = [asyncio.get_running_loop().create_task(worker(n)) for n in consumed]
            await demo.until(lambda: sum(map(len, consumed.values())) >= len(entries), 30)
            await asyncio.sleep(0.3)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            everything = consumed["worker-1"] + consumed["worker-2"]
            demo.say(
                f"stream: {len(entries)} dispatches, lost {len(expected - set(keys))}, "
                f"duplicated {len(keys) - len(set(keys))}; consumer group: worker-1 took "
                f"{len(consumed['worker-1'])}, worker-2 took {len(consumed['worker-2'])}, "
                f"{len(everything) - len(set(everything))} consumed twice"
            )
            ok = not (expected - set(keys)) and len(set(everything)) == len(entries)
        finally:
            if traffic is not None:
                traffic.cancel()
                await asyncio.gather(traffic, return_exceptions=True)
            await stop_processes(demo.nodes.values())
            demo.nodes.clear()
            await client.aclose()
    print("done" if ok else "FAILED", flush=True)
    return 0 if ok else 1


def run_cluster_demo(
    redis_url: str | None = None, *, shards: int = 4, concurrency: int = 2, lease: float = 2.0
) -> int:
    """Run the demo; starts a throwaway ``redis-server`` unless ``redis_url`` is given."""
    try:
        import redis  # noqa: F401
    except ModuleNotFoundError:
        print("cluster-demo needs the redis extra: pip install 'discord-gateway[redis]'")
        return 2
    if redis_url is not None:
        return asyncio.run(_main(redis_url, shards, concurrency, lease))
    try:
        with _redis_server() as url:
            return asyncio.run(_main(url, shards, concurrency, lease))
    except RuntimeError as exc:
        print(f"cluster-demo: {exc}")
        return 2
