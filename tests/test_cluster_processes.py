"""Gateway processes (``python -m discord_gateway.cluster node``) coordinated by a
real redis-server, against the local gateway in this process. Everything is
checked from the gateway's side (what it received, when) and from Redis (the
event stream), never from the nodes' own word.

Slow (real 5 s identify windows): about 60 s in all on 2 cores.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discord_gateway.sharding import IDENTIFY_INTERVAL
from discord_gateway.testing import (
    ConnectionState,
    LocalGateway,
    SendInvalidSession,
    ServerConfig,
    serve,
)

from redis_server import RedisServer, needs_redis, running_redis

redis = pytest.importorskip("redis.asyncio", reason="the redis extra is not installed")

from discord_gateway.cluster import consume, send_command  # noqa: E402
from discord_gateway.cluster.demo import stop_processes  # noqa: E402

pytestmark = [needs_redis, pytest.mark.slow]

LEASE = 1.5


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _config(shards: int, concurrency: int) -> ServerConfig:
    return ServerConfig(
        heartbeat_interval=5.0,
        recommended_shards=shards,
        max_concurrency=concurrency,
        enforce_identify_concurrency=True,  # a second IDENTIFY within 5 s gets op 9
        guild_ids=tuple((i << 22) + 1 for i in range(2 * shards)),
    )


class Nodes:
    """Node processes we started (stopped by pid at the end, never by name)."""

    def __init__(self, redis_url: str, gateway: LocalGateway, shards: int, concurrency: int):
        self.redis_url = redis_url
        self.gateway = gateway
        self.shards = shards
        self.concurrency = concurrency
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node_id: str) -> None:
        command = [sys.executable, "-m", "discord_gateway.cluster", "--redis", self.redis_url]
        command += ["node", "--url", self.gateway.url, "--token", self.gateway.token]
        command += ["--shards", str(self.shards), "--max-concurrency", str(self.concurrency)]
        command += ["--lease", str(LEASE), "--save-interval", "0.5", "--node-id", node_id]
        self.processes[node_id] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )

    def kill(self, node_id: str) -> None:
        process = self.processes.pop(node_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    async def stop(self, node_id: str) -> None:
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGTERM)
        while process.poll() is None:
            await asyncio.sleep(0.05)
        assert process.returncode == 0

    async def stop_all(self) -> None:
        await stop_processes(self.processes.values())
        self.processes.clear()


def _received(gateway: LocalGateway, op: int) -> list[tuple[float, Any, int]]:
    """(time, data, connection index) of every payload with ``op`` the gateway received."""
    return [(r.at, r.data, c.index) for c in gateway.connections for r in c.received if r.op == op]


def _shard_of_connection(gateway: LocalGateway) -> dict[int, int]:
    return {
        c.index: c.session.shard[0]
        for c in gateway.connections
        if c.session is not None and c.session.shard is not None
    }


async def _until(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Traffic:
    """Dispatches to every shard's guilds, one every few ms, until stopped."""

    def __init__(self, gateway: LocalGateway, shards: int) -> None:
        self.gateway = gateway
        self.guilds = [(i << 22) + 1 for i in range(2 * shards)]
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        for n in itertools.count():
            guild = self.guilds[n % len(self.guilds)]
            self.sent += len(self.gateway.dispatch("MESSAGE_CREATE", {"guild_id": str(guild)}))
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _stream_keys(client: Any) -> list[tuple[str, int]]:
    entries = await client.xrange("discord_gateway:events")
    return [(f[b"session"].decode(), int(f[b"seq"])) for _, f in entries]


async def _every_dispatch_once_in_the_stream(gateway: LocalGateway, client: Any) -> int:
    """Each session's dispatches 1..seq, each exactly once (waits for stragglers)."""
    expected = {
        (sid, seq) for sid, s in gateway.store.sessions.items() for seq in range(1, s.seq + 1)
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        keys = await _stream_keys(client)
        if set(keys) >= expected or loop.time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert len(keys) == len(set(keys)), "a dispatch appears twice in the stream"
    missing = expected - set(keys)
    assert not missing, f"{len(missing)} dispatches lost, e.g. {sorted(missing)[:5]}"
    return len(keys)


def test_two_processes_pace_identifies_take_over_after_kill_and_survive_a_redis_restart(
    redis_server: RedisServer,
) -> None:
    shards, concurrency = 16, 2  # two processes x 8 shards

    async def main() -> None:
        client = redis.Redis.from_url(redis_server.url)
        async with serve(_config(shards, concurrency)) as gateway:
            loop = asyncio.get_running_loop()
            nodes = Nodes(redis_server.url, gateway, shards, concurrency)
            traffic = Traffic(gateway, shards)
            try:
                nodes.start("a")
                nodes.start("b")
                await _until(lambda: len(gateway.store.sessions) == shards, 60, "16 sessions")
                traffic.start()
                # -- pacing, seen by the gateway (protocol 21) -----------------------------
                identifies = _received(gateway, 2)
                assert sorted(d["shard"][0] for _, d, _ in identifies) == list(range(shards))
                by_bucket: dict[int, list[float]] = defaultdict(list)
                for at, data, _ in identifies:
                    by_bucket[data["shard"][0] % concurrency].append(at)
                gaps = [
                    b - a
                    for times in by_bucket.values()
                    for a, b in itertools.pairwise(sorted(times))
                ]
                assert len(gaps) == shards - concurrency
                assert min(gaps) >= IDENTIFY_INTERVAL, gaps
                print(f"\nidentify gaps per bucket: {sorted(round(g, 3) for g in gaps)}")
                assert not [p for c in gateway.connections for p in c.sent if p.get("op") == 9]
                owners = {
                    i: (await client.get(f"discord_gateway:owner:{i}") or b"").split(b":")[0]
                    for i in range(shards)
                }
                assert sorted(owners.values()) == [b"a"] * 8 + [b"b"] * 8  # fair shares
                # -- kill -9: the survivor RESUMEs b's shards once their leases expire --
                await asyncio.sleep(1.0)
                b_shards = sorted(i for i, owner in owners.items() if owner == b"b")
                resumes_before = len(_received(gateway, 6))
                killed_at = loop.time()
                nodes.kill("b")
                await _until(
                    lambda: len(_received(gateway, 6)) >= resumes_before + len(b_shards),
                    4 * LEASE + 5,
                    "the takeover",
                )
                resumed = _received(gateway, 6)[resumes_before:]
                takeover = max(at for at, _, _ in resumed) - killed_at
                print(f"takeover after kill -9: {takeover:.2f} s (lease {LEASE} s)")
                assert takeover >= LEASE * 2 / 3  # not before the lease could expire
                assert gateway.store.identify_count == shards  # RESUME, never IDENTIFY
                await asyncio.sleep(0.5)
                by_connection = _shard_of_connection(gateway)
                assert sorted(by_connection[index] for _, _, index in resumed) == b_shards
                assert [p for c in gateway.connections for p in c.sent if p.get("op") == 9] == []
                # -- every dispatch once in the stream; a group of two consumes each once --
                await asyncio.sleep(1.0)
                await traffic.stop()
                total = await _every_dispatch_once_in_the_stream(gateway, client)
                print(f"stream entries: {total}, dispatched by the test: {traffic.sent}")
                seen: dict[str, list[str]] = {"w1": [], "w2": []}

                async def worker(name: str) -> None:
                    async for event in consume(redis_server.url, "workers", name, block=0.2):
                        seen[name].append(event.id)
                        await asyncio.sleep(0)

                workers = [loop.create_task(worker(name)) for name in seen]
                await _until(lambda: len(seen["w1"]) + len(seen["w2"]) >= total, 20, "workers")
                await asyncio.sleep(0.3)
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                consumed = seen["w1"] + seen["w2"]
                assert len(consumed) == len(set(consumed)) == total
                assert seen["w1"] and seen["w2"]
                # -- Redis restarted (its data lost): shards keep running, leases return --
                connections = len(gateway.connections)
                traffic.start()
                redis_server.restart()
                await client.aclose()
                client = redis.Redis.from_url(redis_server.url)
                await asyncio.sleep(LEASE * 2)
                owners_after = [
                    await client.get(f"discord_gateway:owner:{i}") for i in range(shards)
                ]
                assert all(o is not None and o.startswith(b"a:") for o in owners_after)
                assert len(gateway.connections) == connections  # no shard reconnected
                await traffic.stop()
                sessions = set(gateway.store.sessions)
                await asyncio.sleep(0.5)
                after = await _stream_keys(client)  # the events since the restart
                assert after and {sid for sid, _ in after} <= sessions
                assert len(after) == len(set(after))
                # ... and the identify queue works again: a lost session re-identifies
                # through it (the gateway would answer a paced-out IDENTIFY with op 9).
                live = next(c for c in gateway.connections if c.state is ConnectionState.CONNECTED)
                assert live.session is not None and live.session.shard is not None
                bucket = live.session.shard[0] % concurrency
                gateway.inject(SendInvalidSession(resumable=False), live.index - 1)
                await _until(lambda: gateway.store.identify_count == shards + 1, 15, "IDENTIFY")
                assert await client.exists(f"discord_gateway:identify:{bucket}:window")
                ops9 = [p for c in gateway.connections for p in c.sent if p.get("op") == 9]
                assert len(ops9) == 1  # the one injected
            finally:
                await nodes.stop_all()
                if traffic._task is not None:
                    await traffic.stop()
        await client.aclose()

    asyncio.run(main())


def test_a_rolling_restart_resumes_every_shard_and_loses_nothing(
    redis_server: RedisServer,
) -> None:
    shards, concurrency = 4, 4

    async def main() -> None:
        client = redis.Redis.from_url(redis_server.url)
        async with serve(_config(shards, concurrency)) as gateway:
            nodes = Nodes(redis_server.url, gateway, shards, concurrency)
            traffic = Traffic(gateway, shards)
            try:
                nodes.start("a")
                nodes.start("b")
                await _until(lambda: len(gateway.store.sessions) == shards, 20, "4 sessions")
                traffic.start()
                # A worker asks shard 1 to update its presence: its owner sends op 3.
                presence = {"since": None, "activities": [], "status": "idle", "afk": False}
                await send_command(redis_server.url, 1, 3, presence)
                await _until(
                    lambda: any(d == presence for _, d, _ in _received(gateway, 3)), 5, "op 3"
                )
                (_, _, index), *_ = (r for r in _received(gateway, 3) if r[1] == presence)
                assert _shard_of_connection(gateway)[index] == 1
                for old, new in (("a", "a2"), ("b", "b2")):
                    resumes = len(_received(gateway, 6))
                    moving = [
                        i
                        for i in range(shards)
                        if (await client.get(f"discord_gateway:owner:{i}") or b"").startswith(
                            old.encode() + b":"
                        )
                    ]
                    await nodes.stop(old)  # SIGTERM: hand the shards on
                    nodes.start(new)
                    await _until(
                        lambda r=resumes, m=moving: len(_received(gateway, 6)) >= r + len(m),
                        4 * LEASE + 5,
                        f"{old}'s shards resumed",
                    )
                    await asyncio.sleep(0.5)
                assert gateway.store.identify_count == shards  # every restart RESUMEd
                assert [p for c in gateway.connections for p in c.sent if p.get("op") == 9] == []
                await traffic.stop()
                await _every_dispatch_once_in_the_stream(gateway, client)
            finally:
                await nodes.stop_all()
                if traffic._task is not None and not traffic._task.done():
                    await traffic.stop()
        await client.aclose()

    asyncio.run(main())


def test_the_cluster_demo_runs_and_shows_the_takeover() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "discord_gateway", "cluster-demo", "--lease", "1.5"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("gateway: IDENTIFY shard") == 4
    assert "kill -9 of process b" in out
    assert out.count("gateway: RESUME of shard") == 2
    assert "(no IDENTIFY)" in out and "lost 0, duplicated 0" in out and "0 consumed twice" in out
    assert out.rstrip().endswith("done")
