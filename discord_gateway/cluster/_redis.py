"""The Redis side of the cluster (needs the ``redis`` extra).

Keys, all under one ``prefix`` (default ``discord_gateway``)::

    {p}:identify:{bucket}:window   set for 5 s by each IDENTIFY granted (protocol 21)
    {p}:identify:{bucket}:held     the granted shard until it is answered (protocol 60)
    {p}:identify:{bucket}:queue    waiting shards, first come first served (zset)
    {p}:identify:{bucket}:seen     when each waiter last asked (hash): stale ones go
    {p}:identify:budget            session starts left and when they reset (protocol 20)
    {p}:session:{shard}            a shard's saved session (JSON, expires)
    {p}:published:{shard}          session id and last ``s`` in the event stream
    {p}:owner:{shard}              the shard's owner (node id and fencing token, lease)
    {p}:events[:{EVENT_NAME}]      the event stream(s)
    {p}:commands:{shard}           commands from workers to that shard

Every decision that must hold across processes is one Lua script, run
atomically by Redis with Redis's own clock (``TIME``), so processes on machines
with skewed clocks still agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..errors import ConfigurationError, GatewayError
from ..events import Dispatch
from ..opcodes import Opcode
from ..sharding import (
    DEFAULT_ANSWER_TIMEOUT,
    IDENTIFY_INTERVAL,
    IdentifyLimitExhausted,
    SessionStartLimit,
)
from ._base import SavedSession

__all__ = (
    "COMMAND_OPCODES",
    "NotShardOwner",
    "RedisEventSink",
    "RedisIdentifyScheduler",
    "RedisSessionStore",
    "StreamEvent",
    "consume",
    "send_command",
)

LOG = logging.getLogger("discord_gateway.cluster")
DEFAULT_PREFIX = "discord_gateway"
#: What workers may ask a shard to send (protocol G: the client's send-only commands).
COMMAND_OPCODES = frozenset(
    {
        Opcode.PRESENCE_UPDATE,
        Opcode.VOICE_STATE_UPDATE,
        Opcode.REQUEST_GUILD_MEMBERS,
        Opcode.REQUEST_SOUNDBOARD_SOUNDS,
        Opcode.REQUEST_CHANNEL_INFO,
    }
)


class NotShardOwner(GatewayError):
    """This process no longer owns the shard (its lease expired and another took it):
    the write was refused, and the shard must stop."""


def _client(redis: aioredis.Redis | str) -> aioredis.Redis:
    if isinstance(redis, str):
        return aioredis.Redis.from_url(redis)
    if not isinstance(redis, aioredis.Redis):
        raise ConfigurationError(
            f"redis must be a redis.asyncio.Redis or a redis:// URL, not {type(redis).__name__}"
        )
    return redis


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: window, held, queue, seen, budget, channel
# ARGV: member, interval_ms, answer_ms, stale_ms, holder
# -> {1, 0} granted; {0, wait_ms} wait; {-1, reset_in_ms} no session starts left
_ACQUIRE = (
    _NOW
    + """
local member, stale = ARGV[1], tonumber(ARGV[4])
redis.call('ZADD', KEYS[3], 'NX', now, member)
redis.call('HSET', KEYS[4], member, now)
redis.call('PEXPIRE', KEYS[3], stale * 4)
redis.call('PEXPIRE', KEYS[4], stale * 4)
local head
while true do
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  local seen = tonumber(redis.call('HGET', KEYS[4], head) or '0')
  if head == member or now - seen <= stale then break end
  redis.call('ZREM', KEYS[3], head)  -- that waiter's process is gone
  redis.call('HDEL', KEYS[4], head)
end
if head ~= member then return {0, stale} end
local wait = math.max(redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]))
if wait > 0 then return {0, wait} end
if redis.call('EXISTS', KEYS[5]) == 1 then
  local b = redis.call('HMGET', KEYS[5], 'remaining', 'total', 'resets_at')
  local remaining, total, resets = tonumber(b[1]), tonumber(b[2]), tonumber(b[3])
  if now >= resets then
    local day = 86400000
    resets = resets + (math.floor((now - resets) / day) + 1) * day
    remaining = total
    redis.call('HSET', KEYS[5], 'remaining', remaining, 'resets_at', resets)
  end
  if remaining <= 0 then return {-1, resets - now} end
  redis.call('HINCRBY', KEYS[5], 'remaining', -1)
end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3])
redis.call('ZREM', KEYS[3], member)
redis.call('HDEL', KEYS[4], member)
redis.call('PUBLISH', KEYS[6], 'granted')
return {1, 0}
"""
)

# KEYS: held, channel; ARGV: holder
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"""

# KEYS: queue, seen, channel; ARGV: member
_CANCEL = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', KEYS[3], 'cancelled')
return 1
"""

# KEYS: budget; ARGV: remaining, total, reset_after_ms
_BUDGET = (
    _NOW
    + """
redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'total', ARGV[2],
           'resets_at', now + tonumber(ARGV[3]))
return 1
"""
)


class RedisIdentifyScheduler:
    """:class:`~discord_gateway.sharding.IdentifyScheduler`'s rules, shared by every
    process of a bot through Redis (protocol 20, 21, 60).

    ``await acquire(shard_id)`` returns when the shard may IDENTIFY: its bucket
    (``shard_id % max_concurrency``) had no IDENTIFY for ``interval`` seconds
    (5 s plus ``margin`` for the network between processes), the previous one
    was answered (``release``) or ``answer_timeout`` passed, and a session start
    is left (when a budget was set with :meth:`update_limit`; otherwise
    :class:`IdentifyLimitExhausted` is raised when it runs out). Waiters are
    served first come, first served per bucket; a waiter whose process died is
    skipped after ``stale_after`` seconds, and a holder that died frees its
    bucket after ``answer_timeout``. Waiting is on Redis pub/sub notifications
    (grants, releases) and the keys' own expiry times, not a polling loop.
    While Redis is unreachable, ``acquire`` retries (no shard identifies).
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        max_concurrency: int,
        *,
        prefix: str = DEFAULT_PREFIX,
        margin: float = 0.25,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
        stale_after: float = 3.0,
        interval: float = IDENTIFY_INTERVAL,
        node_id: str | None = None,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError(
                f"max_concurrency must be an int >= 1, not {max_concurrency!r}"
            )
        if max_concurrency < 1:
            raise ConfigurationError(
                f"max_concurrency must be an int >= 1, not {max_concurrency!r}"
            )
        if not 0 <= margin <= 5:
            raise ConfigurationError(f"margin must be between 0 and 5 seconds, not {margin!r}")
        if answer_timeout < interval:
            raise ConfigurationError(
                f"answer_timeout must be at least {interval} s, not {answer_timeout}"
            )
        self._redis = _client(redis)
        self._own_client = isinstance(redis, str)  # made from a URL: ours to close
        self.max_concurrency = max_concurrency
        self.prefix = prefix
        self.interval = interval + margin
        self.answer_timeout = answer_timeout
        self.stale_after = stale_after
        self.node_id = node_id or secrets.token_hex(6)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._cancel = self._redis.register_script(_CANCEL)
        self._budget = self._redis.register_script(_BUDGET)
        self._changes: dict[int, int] = {}  # bucket -> notifications seen
        self._changed: dict[int, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        #: How many IDENTIFYs this process was granted.
        self.granted = 0

    def rate_limit_key(self, shard_id: int) -> int:
        """protocol 21: ``shard_id % max_concurrency``."""
        return shard_id % self.max_concurrency

    def _keys(self, bucket: int) -> list[str]:
        base = f"{self.prefix}:identify:{bucket}"
        return [
            f"{base}:window",
            f"{base}:held",
            f"{base}:queue",
            f"{base}:seen",
            f"{self.prefix}:identify:budget",
            f"{base}:events",
        ]

    def _holder(self, shard_id: int) -> str:
        return f"{self.node_id}:{shard_id}"

    async def update_limit(self, limit: SessionStartLimit) -> None:
        """Share a fresh ``GET /gateway/bot`` budget (protocol 20, 46) with every process."""
        await self._budget(
            keys=[f"{self.prefix}:identify:budget"],
            args=[limit.remaining, limit.total, int(limit.reset_after * 1000)],
        )

    async def acquire(self, shard_id: int) -> None:
        """Return when ``shard_id`` may send IDENTIFY (counted as sent)."""
        bucket = self.rate_limit_key(shard_id)
        keys = self._keys(bucket)
        member = f"{shard_id:010d}"  # same request time: lower shard ids first
        self._start_listener()
        changed = self._changed.setdefault(bucket, asyncio.Event())
        args: list[str | int] = [
            member,
            int(self.interval * 1000),
            int(self.answer_timeout * 1000),
            int(self.stale_after * 1000),
            self._holder(shard_id),
        ]
        try:
            while True:
                seen = self._changes.get(bucket, 0)
                changed.clear()
                try:
                    status, wait_ms = await self._acquire(keys=keys, args=args)
                except (RedisError, OSError) as exc:
                    LOG.warning("identify queue: Redis unreachable (%r); retrying", exc)
                    await asyncio.sleep(0.5)
                    continue
                if status == 1:
                    self.granted += 1
                    return
                if status == -1:
                    raise IdentifyLimitExhausted(
                        f"no session starts left for shard {shard_id}; they reset in "
                        f"{int(wait_ms) / 1000:.0f} s",
                        asyncio.get_running_loop().time() + int(wait_ms) / 1000,
                    )
                if self._changes.get(bucket, 0) != seen:
                    continue  # something happened while the script ran: ask again
                # Ask again at least every stale_after / 3 so we are not taken for dead.
                timeout = min(int(wait_ms) / 1000, self.stale_after / 3)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), max(timeout, 0.001))
        except asyncio.CancelledError:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(self._cancel(keys=[keys[2], keys[3], keys[5]], args=[member]))
            raise

    async def release(self, shard_id: int) -> None:
        """The identify was answered (READY, op 9) or its connection closed (protocol 60)."""
        keys = self._keys(self.rate_limit_key(shard_id))
        try:
            await self._release(keys=[keys[1], keys[5]], args=[self._holder(shard_id)])
        except (RedisError, OSError) as exc:  # the bucket frees itself after answer_timeout
            LOG.warning("identify queue: could not release shard %d (%r)", shard_id, exc)

    def _start_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        pattern = f"{self.prefix}:identify:*:events"
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if message is None:
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    bucket = int(channel.split(":")[-2])
                    self._changes[bucket] = self._changes.get(bucket, 0) + 1
                    event = self._changed.get(bucket)
                    if event is not None:
                        event.set()
            except (RedisError, OSError, ValueError) as exc:
                LOG.debug("identify queue: notifications interrupted (%r)", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        """Stop listening for notifications (and close the client made from a URL)."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._own_client:
            await self._redis.aclose()


# -- ownership -------------------------------------------------------------------

# KEYS: owner; ARGV: value, lease_ms -> 1 if now ours
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: owner; ARGV: value, lease_ms -> 1 renewed (or re-created after a data loss), 0 not ours
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: owner; ARGV: value
_DISOWN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: session, owner ('' = no fencing); ARGV: json, ttl_ms, owner value
_SAVE = """
if KEYS[2] ~= '' then  -- fencing, as in _PUBLISH
  local current = redis.call('GET', KEYS[2])
  if current and current ~= ARGV[3] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: session, owner ('' = no fencing); ARGV: owner value
_DELETE = """
if KEYS[2] ~= '' then  -- fencing, as in _PUBLISH
  local current = redis.call('GET', KEYS[2])
  if current and current ~= ARGV[1] then return 0 end
end
redis.call('DEL', KEYS[1])
return 1
"""


class RedisSessionStore:
    """A :class:`~discord_gateway.cluster.SessionStore` in Redis.

    Sessions expire ``max_age`` seconds after their last save (older ones
    cannot be resumed anyway). With ``owner_value`` (set by ``ClusterNode``)
    each save checks the shard's fencing token atomically: a process whose
    lease was taken over gets :class:`NotShardOwner` instead of overwriting the
    new owner's session.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_age: float = 120.0,
        owner_value: Any = None,
    ) -> None:
        self._redis = _client(redis)
        self._own_client = isinstance(redis, str)  # made from a URL: ours to close
        self.prefix = prefix
        self.max_age = max_age
        #: ``owner_value(shard_id) -> str | None``: the fencing token to check.
        self.owner_value = owner_value
        self._save = self._redis.register_script(_SAVE)
        self._delete = self._redis.register_script(_DELETE)
        self.writes = 0

    def _key(self, shard_id: int) -> str:
        return f"{self.prefix}:session:{shard_id}"

    async def load(self, shard_id: int) -> SavedSession | None:
        raw = await self._redis.get(self._key(shard_id))
        if raw is None:
            return None
        try:
            return SavedSession.from_dict(json.loads(raw))
        except ValueError:
            return None

    def _fence(self, shard_id: int) -> tuple[str, str]:
        """The owner key and fencing token a write checks (``""``, ``""``: none)."""
        if self.owner_value is None:
            return "", ""
        token = self.owner_value(shard_id)
        if token is None:
            raise NotShardOwner(f"this process does not own shard {shard_id}")
        return f"{self.prefix}:owner:{shard_id}", token

    async def save(self, shard_id: int, session: SavedSession) -> None:
        owner_key, value = self._fence(shard_id)
        self.writes += 1
        ok = await self._save(
            keys=[self._key(shard_id), owner_key],
            args=[json.dumps(session.to_dict()), int(self.max_age * 1000), value],
        )
        if not ok:
            raise NotShardOwner(f"shard {shard_id} is owned by another process now")

    async def aclose(self) -> None:
        """Close the client made from a URL."""
        if self._own_client:
            await self._redis.aclose()

    async def delete(self, shard_id: int) -> None:
        """Forget the session (it ended); fenced like :meth:`save`."""
        owner_key, value = self._fence(shard_id)
        if not await self._delete(keys=[self._key(shard_id), owner_key], args=[value]):
            raise NotShardOwner(f"shard {shard_id} is owned by another process now")


# -- event fan-out ------------------------------------------------------------------

# KEYS: published, stream..., owner ('' = no fencing) last
# ARGV: maxlen, shard, session, owner value, n, then n x (stream index, seq, name, data)
# -> number of entries added, or -1 when not the owner
_PUBLISH = """
local owner = KEYS[#KEYS]
-- Fencing: refused once another process holds the shard. A missing key (Redis
-- lost its data, or the lease lapsed and nobody took it) does not refuse.
if owner ~= '' then
  local current = redis.call('GET', owner)
  if current and current ~= ARGV[4] then return -1 end
end
local last = redis.call('HMGET', KEYS[1], 'session', 'seq')
local last_seq = -1
if last[1] == ARGV[3] then last_seq = tonumber(last[2]) end
local added, top = 0, last_seq
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local base = 6 + i * 4
  local seq = tonumber(ARGV[base + 1])
  if seq > top then  -- a replay after a resume: already in the stream
    redis.call('XADD', KEYS[1 + tonumber(ARGV[base])], 'MAXLEN', '~', ARGV[1], '*',
               'shard', ARGV[2], 'session', ARGV[3], 'seq', ARGV[base + 1],
               't', ARGV[base + 2], 'd', ARGV[base + 3])
    top = seq
    added = added + 1
  end
end
redis.call('HSET', KEYS[1], 'session', ARGV[3], 'seq', top)
return added
"""


class RedisEventSink:
    """Publishes dispatches to Redis Streams, pipelined, each exactly once.

    ``publish`` buffers; a flush sends every shard's buffered events in one
    pipeline (one round trip) every ``flush_interval`` seconds or as soon as
    ``batch_size`` events wait. Each entry has ``shard``, ``session``, ``seq``,
    ``t`` (the event name) and ``d`` (JSON). One stream ``{prefix}:events``, or
    one per event name with ``per_event_type=True``; each trimmed to about
    ``maxlen`` entries. A replay after a RESUME is not added twice: the script
    remembers each shard's session and last sequence published. While Redis is
    unreachable events stay buffered (up to ``max_buffered``, then the oldest
    are dropped and counted in :attr:`dropped`) and flushing retries.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        maxlen: int = 100_000,
        per_event_type: bool = False,
        flush_interval: float = 0.05,
        batch_size: int = 500,
        max_buffered: int = 1_000_000,
        owner_value: Any = None,
    ) -> None:
        self._redis = _client(redis)
        self._own_client = isinstance(redis, str)  # made from a URL: ours to close
        self.prefix = prefix
        self.maxlen = maxlen
        self.per_event_type = per_event_type
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self.owner_value = owner_value
        self._publish = self._redis.register_script(_PUBLISH)
        self._buffer: dict[int, list[tuple[str, Dispatch]]] = {}
        self._buffered = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        #: Counters: events published (added), round trips, flushes refused (not owner).
        self.published = 0
        self.round_trips = 0
        self.dropped = 0
        #: Shards whose writes were refused: this process lost them (see NotShardOwner).
        self.refused: set[int] = set()

    def stream_for(self, name: str) -> str:
        return f"{self.prefix}:events:{name}" if self.per_event_type else f"{self.prefix}:events"

    def publish(self, shard_id: int, session_id: str, event: Dispatch) -> None:
        if event.seq is None:
            return
        self._buffer.setdefault(shard_id, []).append((session_id, event))
        self._buffered += 1
        if self._buffered > self.max_buffered:
            for items in self._buffer.values():
                if items:
                    items.pop(0)
                    self._buffered -= 1
                    self.dropped += 1
                    break
        if self._buffered >= self.batch_size:
            self._schedule(0.0)
        else:
            self._schedule(self.flush_interval)

    def _schedule(self, delay: float) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.flush()
        except (RedisError, OSError) as exc:
            LOG.warning("event sink: Redis unreachable (%r); retrying", exc)
            await asyncio.sleep(0.5)
            self._timer = None
            self._schedule(0.0)

    async def flush(self) -> None:
        """Store everything published so far (raises if Redis is unreachable)."""
        async with self._lock:
            if not self._buffered:
                return
            batch, self._buffer, self._buffered = self._buffer, {}, 0
            try:
                await self._send(batch)
            except BaseException:
                for shard_id, items in batch.items():  # put back in front, in order
                    items.extend(self._buffer.get(shard_id, []))
                    self._buffer[shard_id] = items
                    self._buffered += len(items)
                raise

    async def _send(self, batch: dict[int, list[tuple[str, Dispatch]]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            calls: list[int] = []
            for shard_id, items in batch.items():
                # One script call per (shard, session) run: a new session restarts the count.
                runs: list[list[tuple[str, Dispatch]]] = []
                for item in items:
                    if runs and runs[-1][0][0] == item[0]:
                        runs[-1].append(item)
                    else:
                        runs.append([item])
                owner_key, value = "", ""
                if self.owner_value is not None:
                    token = self.owner_value(shard_id)
                    owner_key = f"{self.prefix}:owner:{shard_id}"
                    value = token if token is not None else "-"
                for run in runs:
                    streams: list[str] = []
                    args: list[Any] = [self.maxlen, shard_id, run[0][0], value, len(run)]
                    for _, event in run:
                        stream = self.stream_for(event.name)
                        if stream not in streams:
                            streams.append(stream)
                        args += [streams.index(stream) + 1, event.seq, event.name]
                        args.append(json.dumps(event.data, separators=(",", ":"), default=str))
                    keys = [f"{self.prefix}:published:{shard_id}", *streams, owner_key]
                    await self._publish(keys=keys, args=args, client=pipe)
                    calls.append(shard_id)
            results = await pipe.execute()
        self.round_trips += 1
        for shard_id, added in zip(calls, results, strict=True):
            if added == -1:
                self.refused.add(shard_id)
                LOG.warning("event sink: shard %d is owned by another process now", shard_id)
            else:
                self.published += int(added)

    async def aclose(self) -> None:
        """Stop the flush timer (call :meth:`flush` first to keep what is buffered),
        and close the client made from a URL."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self._own_client:
            await self._redis.aclose()


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One dispatch read from the event stream by a worker."""

    id: str
    stream: str
    shard_id: int
    session_id: str
    seq: int
    name: str
    data: Any


def _decode(stream: str, entry_id: Any, fields: Mapping[Any, Any]) -> StreamEvent:
    def text(key: str) -> str:
        value = fields.get(key.encode(), fields.get(key))
        return value.decode() if isinstance(value, bytes) else str(value)

    return StreamEvent(
        entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id),
        stream,
        int(text("shard")),
        text("session"),
        int(text("seq")),
        text("t"),
        json.loads(text("d")),
    )


async def consume(
    redis: aioredis.Redis | str,
    group: str,
    consumer: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    streams: list[str] | None = None,
    count: int = 100,
    block: float = 1.0,
    claim_idle: float | None = 60.0,
    start: str = "0",
) -> AsyncIterator[StreamEvent]:
    """``async for event in consume(redis, "workers", "worker-1"):`` - the events of a
    consumer group: each entry goes to one consumer of the group.

    An event is acknowledged (XACK) when you ask for the next one, so an event
    whose processing crashed the worker is delivered again: to this consumer
    when it restarts (its pending entries come first), or to another consumer
    of the group once it was pending ``claim_idle`` seconds (None: never
    claimed). The group is created on first use, from ``start`` ("0": the whole
    stream, "$": new entries only). ``streams`` defaults to ``{prefix}:events``.
    """
    client = _client(redis)
    try:
        names = streams or [f"{prefix}:events"]

        async def create_groups() -> None:
            for name in names:
                try:
                    await client.xgroup_create(name, group, id=start, mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

        await create_groups()
        ids: dict[Any, Any] = dict.fromkeys(names, "0")  # our own pending entries first
        while True:
            batch: list[StreamEvent] = []
            try:
                if claim_idle is not None:
                    for name in names:
                        claim: Any = await client.xautoclaim(
                            name, group, consumer, int(claim_idle * 1000), "0-0", count=count
                        )
                        batch += [_decode(name, i, f) for i, f in claim[1] if f]
                reply: Any = await client.xreadgroup(
                    group, consumer, ids, count=count, block=int(block * 1000)
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost its data (a restart without persistence): start again.
                LOG.warning("consume: the consumer group is gone; creating it again")
                await create_groups()
                continue
            except (RedisError, OSError) as exc:
                LOG.warning("consume: Redis unreachable (%r); retrying", exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(RedisError, OSError):
                    await create_groups()
                continue
            for stream, entries in reply or []:
                name = stream.decode() if isinstance(stream, bytes) else str(stream)
                if ids.get(name) != ">" and not entries:
                    ids[name] = ">"  # no more pending: read new entries
                for entry_id, fields in entries:
                    if fields:
                        batch.append(_decode(name, entry_id, fields))
                    else:  # pending, but trimmed away by MAXLEN: nothing left to deliver
                        await client.xack(name, group, entry_id)
            for event in batch:
                yield event
                # Not acknowledged (Redis unreachable): delivered again, at least once.
                with contextlib.suppress(RedisError, OSError):
                    await client.xack(event.stream, group, event.id)
            if not reply:
                for name in names:
                    ids[name] = ">"
    finally:
        if isinstance(redis, str):  # the client made here
            await client.aclose()


async def send_command(
    redis: aioredis.Redis | str,
    shard_id: int,
    op: Opcode | int,
    data: Any,
    *,
    prefix: str = DEFAULT_PREFIX,
    maxlen: int = 10_000,
) -> str:
    """Ask the process that owns ``shard_id`` to send a command (presence, voice
    state, member requests: :data:`COMMAND_OPCODES`). Returns the stream entry id."""
    if op not in COMMAND_OPCODES:
        raise ConfigurationError(
            f"workers may send {sorted(int(o) for o in COMMAND_OPCODES)}, not op {op!r}"
        )
    client = _client(redis)
    try:
        entry = await client.xadd(
            f"{prefix}:commands:{shard_id}",
            {"op": int(op), "d": json.dumps(data)},
            maxlen=maxlen,
            approximate=True,
        )
    finally:
        if isinstance(redis, str):
            await client.aclose()
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def lease_scripts(client: aioredis.Redis) -> tuple[Any, Any, Any]:
    """The claim, renew and disown scripts (used by ``ClusterNode``)."""
    return (
        client.register_script(_CLAIM),
        client.register_script(_RENEW),
        client.register_script(_DISOWN),
    )


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
