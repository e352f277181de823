"""``ClusterNode``: one gateway process of a bot whose shards are spread over
processes and machines, coordinated through Redis.

Theory of operation
-------------------
Every ``lease / 3`` seconds a node:

1. says it is alive (``{p}:nodes``, a sorted set scored by expiry);
2. renews the lease of every shard it runs (``{p}:owner:{shard}``, a key
   holding the node id and a fencing token, expiring after ``lease``). A
   renewal that finds another owner stops that shard at once; a shard whose
   lease could not be renewed for ``lease`` seconds (Redis unreachable) is
   stopped too, because another node may take it over after that;
3. claims free shards up to its fair share, ``ceil(shard_count / live nodes)``,
   with ``SET NX PX`` (so two nodes never hold one shard), unless Redis lost
   its data recently (``{p}:epoch`` changed): then it waits one lease so that
   the owners re-assert their leases first.

A claimed shard RESUMEs its saved session if there is one (the previous
owner's, saved on every lost connection and at most ``save_interval`` old
otherwise) and IDENTIFYs through the shared :class:`RedisIdentifyScheduler`
if not. Every session save and every event published checks the fencing token
in the same Lua script that writes, so a node that lost a shard cannot
overwrite the new owner's state. Dispatches go to the event stream
(:class:`RedisEventSink`); commands from workers arrive on
``{p}:commands:{shard}`` (a consumer group per shard, so a takeover continues
where the previous owner stopped).

A node that stops cleanly closes its shards with a resumable close code, saves
their sessions and gives its leases up, so another node (or its own restart)
resumes them at once. A node killed outright is replaced after its leases
expire: ``lease`` plus one renewal period at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..adapters.asyncio import Shard
from ..errors import ConfigurationError
from ..events import Disconnected, Event, InvalidSession, Ready
from ..sharding import SessionStartLimit
from ._base import ShardHooks
from ._redis import (
    COMMAND_OPCODES,
    DEFAULT_PREFIX,
    RedisEventSink,
    RedisIdentifyScheduler,
    RedisSessionStore,
    _client,
    lease_scripts,
)

__all__ = ("RESUMABLE_CLOSE_CODE", "ClusterNode")

LOG = logging.getLogger("discord_gateway.cluster")
#: The close code a node uses when it hands a shard on: any code but 1000/1001
#: keeps the session resumable (protocol 31).
RESUMABLE_CLOSE_CODE = 4000


class _Owned:
    __slots__ = ("commands", "forward", "renewed_at", "shard", "value")

    def __init__(self, shard: Shard, value: str, now: float) -> None:
        self.shard = shard
        self.value = value
        self.renewed_at = now
        self.forward: asyncio.Task[None] | None = None
        self.commands: asyncio.Task[None] | None = None


class ClusterNode:
    """One gateway process: claims shards, runs them, publishes their events.

    ``async with ClusterNode(redis_url, token, intents=..., shard_count=8,
    url=..., max_concurrency=2) as node: await node.wait_closed()``. ``lease``
    is how long a dead node's shards stay unclaimed (seconds). Shard options
    (``compress``, timeouts, ...) are passed on to every :class:`Shard`.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        token: str,
        *,
        intents: int,
        shard_count: int,
        url: str,
        max_concurrency: int = 1,
        prefix: str = DEFAULT_PREFIX,
        lease: float = 10.0,
        max_shards: int | None = None,
        node_id: str | None = None,
        save_interval: float = 1.0,
        max_session_age: float = 120.0,
        per_event_type: bool = False,
        maxlen: int = 100_000,
        identify_margin: float = 0.25,
        session_start_limit: SessionStartLimit | None = None,
        **shard_options: Any,
    ) -> None:
        if isinstance(shard_count, bool) or not isinstance(shard_count, int) or shard_count < 1:
            raise ConfigurationError(f"shard_count must be an int >= 1, not {shard_count!r}")
        if not 0.3 <= lease <= 3600:
            raise ConfigurationError(f"lease must be between 0.3 and 3600 seconds, not {lease!r}")
        self._redis = _client(redis)
        self._own_client = isinstance(redis, str)
        self.token = token
        self.intents = intents
        self.shard_count = shard_count
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.max_shards = max_shards
        self.node_id = node_id or f"node-{secrets.token_hex(4)}"
        self.shard_options = shard_options
        #: A fresh ``GET /gateway/bot`` budget to share with every node at start (protocol 20).
        self.session_start_limit = session_start_limit
        self.scheduler = RedisIdentifyScheduler(
            self._redis,
            max_concurrency,
            prefix=prefix,
            node_id=self.node_id,
            margin=identify_margin,
        )
        self.session_store = RedisSessionStore(
            self._redis, prefix=prefix, max_age=max_session_age, owner_value=self._owner_value
        )
        self.sink = RedisEventSink(
            self._redis,
            prefix=prefix,
            maxlen=maxlen,
            per_event_type=per_event_type,
            owner_value=self._owner_value,
        )
        self.hooks = ShardHooks(
            session_store=self.session_store,
            event_sink=self.sink,
            max_session_age=max_session_age,
            save_interval=save_interval,
        )
        self._claim, self._renew, self._disown = lease_scripts(self._redis)
        self.owned: dict[int, _Owned] = {}
        self._epoch: bytes | None = None
        self._grace_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._closing = False
        #: What happened, for logs and tests: (time.time(), what, shard id).
        self.history: list[tuple[float, str, int]] = []

    def __repr__(self) -> str:
        return f"<ClusterNode {self.node_id} shards={sorted(self.owned)}>"

    def _owner_value(self, shard_id: int) -> str | None:
        owned = self.owned.get(shard_id)
        return None if owned is None else owned.value

    def _key(self, shard_id: int) -> str:
        return f"{self.prefix}:owner:{shard_id}"

    async def __aenter__(self) -> ClusterNode:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- the coordination loop --------------------------------------------------------

    async def _run(self) -> None:
        period = self.lease / 3
        loop = asyncio.get_running_loop()
        while self.session_start_limit is not None:
            try:
                await self.scheduler.update_limit(self.session_start_limit)
                break
            except (RedisError, OSError) as exc:
                LOG.warning("node %s: Redis unreachable (%r)", self.node_id, exc)
                await asyncio.sleep(0.2)
        first = True
        while True:
            wait = period
            try:
                await self._tick(loop.time(), first)
                first = False
            except (RedisError, OSError) as exc:
                LOG.warning("node %s: Redis unreachable (%r)", self.node_id, exc)
                wait = min(period, 0.2)  # renew as soon as it is back
            await self._stop_unrenewed(loop.time())
            await self._stop_refused()
            await asyncio.sleep(wait)

    async def _tick(self, now: float, first: bool) -> None:
        redis = self._redis
        nodes = f"{self.prefix}:nodes"
        wall_ms = int(time.time() * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(nodes, {self.node_id: wall_ms + int(self.lease * 1000)})
            pipe.zremrangebyscore(nodes, "-inf", wall_ms)
            pipe.zcard(nodes)
            pipe.set(f"{self.prefix}:epoch", secrets.token_hex(8), nx=True)
            pipe.get(f"{self.prefix}:epoch")
            *_, live, _, epoch = await pipe.execute()
        if self._epoch is not None and epoch != self._epoch:
            LOG.warning(
                "node %s: Redis lost its data; waiting one lease before claiming", self.node_id
            )
            self._grace_until = now + self.lease
        self._epoch = epoch
        lease_ms = int(self.lease * 1000)
        for shard_id, owned in list(self.owned.items()):
            if await self._renew(keys=[self._key(shard_id)], args=[owned.value, lease_ms]):
                owned.renewed_at = now
            else:
                LOG.warning("node %s: shard %d was taken over; stopping it", self.node_id, shard_id)
                await self._stop_shard(shard_id, save=False)
        if first or self._closing:
            return  # first: let nodes starting together see each other before claiming
        if now < self._grace_until:
            return
        share = math.ceil(self.shard_count / max(int(live), 1))
        if self.max_shards is not None:
            share = min(share, self.max_shards)
        for shard_id in range(self.shard_count):
            if len(self.owned) >= share:
                break
            if shard_id in self.owned:
                continue
            fence = await redis.incr(f"{self.prefix}:fence:{shard_id}")
            value = f"{self.node_id}:{fence}"
            if await self._claim(keys=[self._key(shard_id)], args=[value, lease_ms]):
                await self._start_shard(shard_id, value, now)

    async def _stop_unrenewed(self, now: float) -> None:
        for shard_id, owned in list(self.owned.items()):
            if now - owned.renewed_at > self.lease * 0.9:
                LOG.warning(
                    "node %s: could not renew shard %d's lease; stopping it so that no "
                    "two processes run it",
                    self.node_id,
                    shard_id,
                )
                await self._stop_shard(shard_id, save=False)

    async def _stop_refused(self) -> None:
        for shard_id in list(self.sink.refused):
            self.sink.refused.discard(shard_id)
            if shard_id in self.owned:
                await self._stop_shard(shard_id, save=False)

    # -- shards ---------------------------------------------------------------------------

    async def _start_shard(self, shard_id: int, value: str, now: float) -> None:
        shard = Shard(
            self.token,
            intents=self.intents,
            url=self.url,
            shard=(shard_id, self.shard_count),
            before_identify=self._gate,
            **self.shard_options,
        )
        owned = _Owned(shard, value, now)
        self.owned[shard_id] = owned
        resumed = await self.hooks.restore(shard_id, shard)
        self.history.append((time.time(), "resume" if resumed else "identify", shard_id))
        LOG.info(
            "node %s: claimed shard %d (%s)",
            self.node_id,
            shard_id,
            "resuming" if resumed else "identifying",
        )
        shard.start()
        loop = asyncio.get_running_loop()
        owned.forward = loop.create_task(self._forward(shard_id, shard))
        owned.commands = loop.create_task(self._commands(shard_id, shard))

    async def _gate(self, shard: Shard) -> None:
        assert shard.options.shard is not None
        await self.scheduler.acquire(shard.options.shard[0])

    async def _forward(self, shard_id: int, shard: Shard) -> None:
        try:
            async for event in shard:
                if isinstance(event, (Ready, InvalidSession, Disconnected)):
                    await self.scheduler.release(shard_id)  # protocol 60
                self._record(shard_id, event)
                await self.hooks.on_event(shard_id, event)
        except Exception as exc:
            LOG.error("node %s: shard %d stopped: %r", self.node_id, shard_id, exc)
            self.history.append((time.time(), f"failed: {exc!r}", shard_id))

    def _record(self, shard_id: int, event: Event) -> None:
        name = type(event).__name__
        if name in ("Ready", "Resumed", "Disconnected"):
            self.history.append((time.time(), name, shard_id))

    async def _commands(self, shard_id: int, shard: Shard) -> None:
        stream = f"{self.prefix}:commands:{shard_id}"
        group = "gateway"
        while True:
            try:
                with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                    await self._redis.xgroup_create(stream, group, id="$", mkstream=True)
                while True:
                    reply: Any = await self._redis.xreadgroup(
                        group, self.node_id, {stream: ">"}, count=10, block=1000
                    )
                    for _, entries in reply or []:
                        for entry_id, fields in entries:
                            await self._send_command(shard_id, shard, fields)
                            await self._redis.xack(stream, group, entry_id)
            except (RedisError, OSError) as exc:
                LOG.debug("node %s: commands for shard %d: %r", self.node_id, shard_id, exc)
                await asyncio.sleep(0.5)

    async def _send_command(self, shard_id: int, shard: Shard, fields: Any) -> None:
        try:
            op = int(fields[b"op"])
            data = json.loads(fields[b"d"])
        except (KeyError, ValueError) as exc:
            LOG.warning("node %s: bad command for shard %d: %r", self.node_id, shard_id, exc)
            return
        if op not in COMMAND_OPCODES:
            LOG.warning("node %s: refusing op %d for shard %d", self.node_id, op, shard_id)
            return
        try:
            await shard.send(op, data)
        except Exception as exc:
            LOG.warning(
                "node %s: shard %d could not send op %d: %r", self.node_id, shard_id, op, exc
            )

    async def _stop_shard(self, shard_id: int, *, save: bool) -> None:
        owned = self.owned.get(shard_id)
        if owned is None:
            return
        for task in (owned.commands, owned.forward):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (owned.commands, owned.forward) if t is not None), return_exceptions=True
        )
        await owned.shard.close(RESUMABLE_CLOSE_CODE)
        if save:
            await self.hooks.finish(shard_id, session_ended=False)
        del self.owned[shard_id]
        if save:
            with contextlib.suppress(RedisError, OSError):
                await self._disown(keys=[self._key(shard_id)], args=[owned.value])
        self.history.append((time.time(), "stopped", shard_id))

    async def close(self) -> None:
        """Hand every shard on: resumable close, session saved, lease given up.

        The leases are renewed until the sessions are saved (a slow close
        must not let them expire first)."""
        self._closing = True
        await asyncio.gather(*(self._stop_shard(s, save=True) for s in list(self.owned)))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(f"{self.prefix}:nodes", self.node_id)
        await self.hooks.close()
        await self.sink.aclose()
        await self.scheduler.aclose()
        if self._own_client:
            await self._redis.aclose()
        self._closed.set()
