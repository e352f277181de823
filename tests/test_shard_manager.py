"""ShardManager: 16 shards, max_concurrency 4, paced as Discord requires (protocol 21)."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

from discord_gateway import Disconnected, Dispatch, InvalidSession, Ready, Resumed
from discord_gateway.adapters.manager import ShardEvent, ShardManager
from discord_gateway.sharding import IDENTIFY_INTERVAL, shard_for_guild
from discord_gateway.testing import (
    AfterDispatches,
    ConnectionFaults,
    ResetConnection,
    ServerConfig,
    serve,
)

SHARDS = 16
CONCURRENCY = 4


def test_sixteen_shards_identify_in_paced_buckets() -> None:
    async def main() -> None:
        config = ServerConfig(
            heartbeat_interval=1.0,
            recommended_shards=SHARDS,
            max_concurrency=CONCURRENCY,
            enforce_identify_concurrency=True,  # the server answers violations with op 9
            guild_ids=tuple((i << 22) + 1 for i in range(SHARDS)),
        )
        async with serve(config) as gateway:
            api = f"http://{gateway.host}:{gateway.port}/api/v10"
            events: list[ShardEvent] = []
            async with ShardManager(gateway.token, intents=1, api_base=api) as bot:
                assert bot.info is not None and bot.info.shards == SHARDS
                async for item in bot:
                    events.append(item)
                    names = [getattr(e.event, "name", None) for e in events]
                    if names.count("READY") == SHARDS and names.count("GUILD_CREATE") == SHARDS:
                        break
            assert not [e for e in events if isinstance(e.event, InvalidSession)]
            ready_shards = sorted(e.shard_id for e in events if isinstance(e.event, Ready))
            assert ready_shards == list(range(SHARDS))
            for e in events:
                if isinstance(e.event, Ready):
                    assert e.event.data["shard"] == [e.shard_id, SHARDS]
            # Seen from the server: when each shard's IDENTIFY arrived.
            identified: dict[int, float] = {}
            for connection in gateway.connections:
                for received in connection.received:
                    if received.op == 2:
                        identified[received.data["shard"][0]] = received.at
            assert sorted(identified) == list(range(SHARDS))
            start = min(identified.values())
            by_bucket: dict[int, list[float]] = defaultdict(list)
            for shard_id, at in identified.items():
                by_bucket[shard_id % CONCURRENCY].append(at)
                # buckets start in order: wave n begins n * 5 s after the first
                wave = shard_id // CONCURRENCY
                assert at - start >= wave * IDENTIFY_INTERVAL - 0.05
            for times in by_bucket.values():
                times.sort()
                gaps = [b - a for a, b in itertools.pairwise(times)]
                assert all(gap >= IDENTIFY_INTERVAL - 0.05 for gap in gaps), gaps
            # guild events reach the shard that owns the guild (protocol 44)
            guild_creates = [e for e in events if getattr(e.event, "name", None) == "GUILD_CREATE"]
            assert len(guild_creates) == SHARDS
            for e in events:
                if getattr(e.event, "name", None) == "GUILD_CREATE":
                    guild_id = int(e.event.data["id"])  # type: ignore[attr-defined]
                    assert shard_for_guild(guild_id, SHARDS) == e.shard_id

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_lost_connection_reaches_the_manager_as_a_disconnected_event() -> None:
    async def main() -> None:
        faults = [ConnectionFaults(script=((AfterDispatches(1), ResetConnection()),))]
        async with serve(ServerConfig(heartbeat_interval=0.2), faults=faults) as gateway:
            events: list[ShardEvent] = []
            async with ShardManager(
                gateway.token, intents=1, url=gateway.url, shard_count=1, close_timeout=0.5
            ) as bot:
                async for item in bot:
                    events.append(item)
                    if isinstance(item.event, Ready):
                        for i in range(3):
                            gateway.dispatch("TEST", {"i": i})
                    if isinstance(item.event, (Ready, Resumed)) and any(
                        isinstance(e.event, Disconnected) for e in events
                    ):
                        break  # back after the loss
            lost = [e for e in events if isinstance(e.event, Disconnected)]
            assert [e.shard_id for e in lost] == [0]
            assert isinstance(lost[0].event, Disconnected) and lost[0].event.code == 1006

    asyncio.run(asyncio.wait_for(main(), 20))


def test_the_managers_queue_keeps_the_bound_and_loses_nothing() -> None:
    limit, total = 10, 60

    async def main() -> None:
        async with (
            serve(ServerConfig(heartbeat_interval=0.2)) as gateway,
            ShardManager(
                gateway.token,
                intents=1,
                url=gateway.url,
                shard_count=1,
                close_timeout=0.5,
                max_pending_events=limit,
            ) as bot,
        ):
            async for item in bot:
                if isinstance(item.event, Ready):
                    break
            for i in range(total):  # nobody reads meanwhile
                gateway.dispatch("TEST", {"i": i})
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.3)
            waiting = bot._events.qsize() + bot.shards[0].pending_events
            assert waiting <= 3 * limit, waiting
            seen: list[int] = []
            async for item in bot:
                event = item.event
                if isinstance(event, Dispatch) and event.name == "TEST":
                    seen.append(event.data["i"])
                    if len(seen) == total:
                        break
            assert seen == list(range(total))

    asyncio.run(asyncio.wait_for(main(), 30))
