"""``ShardManager``: every shard of one bot in one asyncio event loop.

It asks ``GET /gateway/bot`` for the URL, the recommended shard count and the
session start limit (protocol 46), starts one asyncio :class:`Shard` per shard id,
and paces every IDENTIFY - at start-up and after a lost session - through the
pure :class:`IdentifyScheduler` (protocol 20, 21, 60). Events come out tagged with
their shard id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..commands import CHANNEL_INFO_FIELDS, Snowflake, validate_snowflake
from ..errors import ConfigurationError, GatewayClosed, InvalidCommand, LocalProtocolError
from ..events import Disconnected, Event, InvalidSession, Ready
from ..intents import Intents
from ..opcodes import Opcode
from ..presence import Activity, Status
from ..sharding import GatewayBotInfo, IdentifyScheduler, shard_for_guild
from ._base import DEFAULT_URL, ShardOptions, StoppedWithError
from .asyncio import Shard

if TYPE_CHECKING:
    from typing_extensions import Unpack

    # cluster hooks (issue 14); importing them never imports redis
    from ..cluster._base import EventSink, IdentifyQueue, SessionStore, ShardHooks
    from ._base import ManagerOptions

__all__ = ("ShardEvent", "ShardManager")

DISCORD_API = "https://discord.com/api/v10"


@dataclass(frozen=True, slots=True)
class ShardEvent:
    """An event and the shard that received it."""

    shard_id: int
    event: Event


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Done:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ShardManager(StoppedWithError):
    """Run ``shard_count`` shards (default: Discord's recommendation).

    ``async with ShardManager(token, intents=...) as bot: async for item in bot:``
    yields :class:`ShardEvent`, ``Disconnected`` events included. If any shard
    stops with a fatal error (bad token, disallowed intents, no session starts
    left, ``ConnectionFailed``) it is raised wherever you wait: iteration,
    ``wait_ready()``, ``send()`` and the commands of that shard, and leaving
    ``async with`` if nothing else raised it. Bad options (the manager's and
    every shard's) raise ``ConfigurationError`` here. At most
    ``max_pending_events`` events wait for you in all; beyond that the shards
    stop reading (see the adapters' queue bound).

    Without ``url`` or ``shard_count`` it asks ``{api_base}/gateway/bot``
    (``api_base`` defaults to Discord's API; point it at a local gateway's
    ``/api/v10`` in tests). The other options are every shard's
    (:class:`~discord_gateway.adapters.ManagerOptions`). The commands
    (``update_voice_state``, ``request_guild_members``, ...) go to the shard
    that serves the guild; ``update_presence`` to every shard.
    """

    def __init__(
        self,
        token: str,
        *,
        intents: Intents | int,
        shard_count: int | None = None,
        shard_ids: list[int] | None = None,
        url: str | None = None,
        max_concurrency: int | None = None,
        api_base: str = DISCORD_API,
        # -- cluster hooks (issue 14, discord_gateway.cluster) --
        scheduler: IdentifyScheduler | IdentifyQueue | None = None,
        session_store: SessionStore | None = None,
        event_sink: EventSink | None = None,
        **shard_options: Unpack[ManagerOptions],
    ) -> None:
        if shard_count is not None and (not _is_int(shard_count) or shard_count < 1):
            raise ConfigurationError(f"shard_count must be an int >= 1, not {shard_count!r}")
        if shard_ids is not None:
            if isinstance(shard_ids, (str, bytes)) or not all(_is_int(i) for i in shard_ids):
                raise ConfigurationError(f"shard_ids must be a list of ints, not {shard_ids!r}")
            shard_ids = list(shard_ids)
            if len(set(shard_ids)) != len(shard_ids) or any(i < 0 for i in shard_ids):
                raise ConfigurationError(
                    f"shard_ids must be distinct non-negative ints, not {shard_ids!r}"
                )
            if shard_count is not None and any(i >= shard_count for i in shard_ids):
                raise ConfigurationError(
                    f"shard_ids {shard_ids!r} must each be below shard_count {shard_count}"
                )
        if max_concurrency is not None and (not _is_int(max_concurrency) or max_concurrency < 1):
            raise ConfigurationError(
                f"max_concurrency must be an int >= 1, not {max_concurrency!r}"
            )
        if not isinstance(api_base, str) or not api_base.startswith(("https://", "http://")):
            raise ConfigurationError(f"api_base must be an http(s) URL, not {api_base!r}")
        if "shard" in shard_options or "before_identify" in shard_options:
            raise ConfigurationError("ShardManager sets each shard's shard and before_identify")
        # Every shard's options, checked now: the URL and count may only be known
        # after GET /gateway/bot, so a stand-in shard (0, 1) and URL are used here.
        options = ShardOptions.build(
            token, intents, url if url is not None else DEFAULT_URL, shard_options
        )
        options.new_connection()  # the core's own checks (URL, encoding, timeouts)
        self._token = token
        self._intents = intents
        self._shard_count = shard_count
        self._shard_ids = shard_ids
        self._url = url
        self._max_concurrency = max_concurrency
        self._api_base = api_base
        self._options = shard_options
        self.shards: dict[int, Shard] = {}
        self.info: GatewayBotInfo | None = None
        self.scheduler: IdentifyScheduler | None = None
        self._events: asyncio.Queue[ShardEvent | _Done] = asyncio.Queue()
        # The shards' bound holds through the manager: a forwarder waits for room
        # here, stops draining its shard, and that shard stops reading (nothing dropped).
        self._room = asyncio.Semaphore(options.max_pending_events)
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # -- cluster hooks (issue 14) --
        # scheduler: an IdentifyScheduler replaces the one built at start(); an
        # IdentifyQueue (RedisIdentifyScheduler) is awaited instead of it.
        # session_store: shards RESUME their saved sessions, saved as they go.
        # event_sink: every dispatch is published there too.
        self._queue: IdentifyQueue | None = None
        self._given_scheduler: IdentifyScheduler | None = None
        self._hooks: ShardHooks | None = None
        if isinstance(scheduler, IdentifyScheduler):
            self._given_scheduler = scheduler
        elif scheduler is not None:
            from ..cluster._base import IdentifyQueue as _Queue

            if not isinstance(scheduler, _Queue):
                raise ConfigurationError(
                    "scheduler must be an IdentifyScheduler or have async acquire and "
                    f"release methods, not {type(scheduler).__name__}"
                )
            self._queue = scheduler
        if session_store is not None or event_sink is not None:
            from ..cluster._base import ShardHooks as _Hooks

            self._hooks = _Hooks(session_store=session_store, event_sink=event_sink)

    def __repr__(self) -> str:
        return f"<ShardManager {len(self.shards)} shards>"

    async def __aenter__(self) -> ShardManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        self._raise_error_on_exit(exc)

    @contextlib.contextmanager
    def _telling(self) -> Iterator[None]:
        """A shard's fatal error raised to you here is not raised again on exit."""
        try:
            yield
        except GatewayClosed as exc:
            if self._error is None or exc is self._error:
                self._error = exc
                self._error_raised = True
            raise

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        url, count, concurrency = self._url, self._shard_count, self._max_concurrency
        if url is None or count is None:
            from ..demo import get_gateway_bot

            self.info = await loop.run_in_executor(
                None, get_gateway_bot, self._token, self._api_base
            )
            url = url or self.info.url
            count = count or self.info.shards
            self.scheduler = IdentifyScheduler.from_session_start_limit(
                self.info.session_start_limit, loop.time()
            )
        else:
            self.scheduler = IdentifyScheduler(concurrency or 1)
        if self._given_scheduler is not None:  # cluster hook (issue 14)
            self.scheduler = self._given_scheduler
        ids = self._shard_ids if self._shard_ids is not None else list(range(count))
        for shard_id in ids:
            if not 0 <= shard_id < count:
                raise ConfigurationError(f"shard id {shard_id} is not in 0..{count - 1}")
            self.shards[shard_id] = Shard(
                self._token,
                intents=self._intents,
                url=url,
                shard=(shard_id, count),
                before_identify=self._gate,
                **self._options,
            )
        self._tasks.append(loop.create_task(self._schedule()))
        if self._hooks is not None:  # cluster hook (issue 14): RESUME saved sessions
            for shard_id, shard in self.shards.items():
                await self._hooks.restore(shard_id, shard)
        for shard_id, shard in self.shards.items():
            shard.start()
            self._tasks.append(loop.create_task(self._forward(shard_id, shard)))

    async def _gate(self, shard: Shard) -> None:
        """Wait for this shard's turn to IDENTIFY."""
        assert self.scheduler is not None and shard.options.shard is not None
        shard_id = shard.options.shard[0]
        if self._queue is not None:  # cluster hook (issue 14): the shared queue
            await self._queue.acquire(shard_id)
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        stale = self._waiting.pop(shard_id, None)
        if stale is not None:  # that connection died while it waited
            stale.cancel()
        self.scheduler.cancel(shard_id)
        self.scheduler.request(shard_id, loop.time())
        self._waiting[shard_id] = future
        self._wake.set()
        await future

    async def _schedule(self) -> None:
        assert self.scheduler is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            for shard_id in self.scheduler.poll(loop.time()):
                future = self._waiting.pop(shard_id, None)
                if future is not None and not future.done():
                    future.set_result(None)
            deadline = self.scheduler.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _forward(self, shard_id: int, shard: Shard) -> None:
        assert self.scheduler is not None
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        try:
            async for event in shard:
                if isinstance(event, (Ready, InvalidSession)):
                    # protocol 60: the identify was answered; free the bucket slot.
                    self.scheduler.released(shard_id, loop.time())
                    self._wake.set()
                # -- cluster hooks (issue 14) --
                if self._queue is not None and isinstance(
                    event, (Ready, InvalidSession, Disconnected)
                ):
                    await self._queue.release(shard_id)  # protocol 60
                if self._hooks is not None:
                    await self._hooks.on_event(shard_id, event)
                await self._room.acquire()
                self._events.put_nowait(ShardEvent(shard_id, event))
        except Exception as exc:
            error = exc
        if error is not None:
            if self._error is None:
                self._error = error
            self._events.put_nowait(_Done(error))

    def __aiter__(self) -> ShardManager:
        return self

    async def __anext__(self) -> ShardEvent:
        item = await self._events.get()
        if isinstance(item, _Done):
            self._events.put_nowait(item)
            if item.error is not None:
                self._error_raised = True
                raise item.error
            raise StopAsyncIteration
        self._room.release()
        return item

    def _shard(self, shard_id: int) -> Shard:
        shard = self.shards.get(shard_id)
        if shard is None:
            raise LocalProtocolError(
                f"no shard {shard_id} here (shards: {sorted(self.shards)}); "
                + ("start the manager first" if not self.shards else "check the shard id")
            )
        return shard

    def shard_for_guild(self, guild_id: Snowflake) -> Shard:
        """The shard that serves ``guild_id`` (Discord's ``(guild_id >> 22) % shard_count``)."""
        if not self.shards:
            raise LocalProtocolError("the manager has no shards yet: start it first")
        any_shard = next(iter(self.shards.values()))
        assert any_shard.options.shard is not None
        count = any_shard.options.shard[1]
        shard_id = shard_for_guild(validate_snowflake(guild_id, "guild_id"), count)
        shard = self.shards.get(shard_id)
        if shard is None:
            raise LocalProtocolError(
                f"guild {guild_id} is served by shard {shard_id}, which this manager does not "
                f"run (shard_ids {sorted(self.shards)})"
            )
        return shard

    async def wait_ready(self) -> None:
        """Wait until every shard's session is ready; raises a shard's fatal error."""
        with self._telling():
            await asyncio.gather(*(shard.wait_ready() for shard in self.shards.values()))

    async def send(self, shard_id: int, op: Opcode | int, data: Any) -> None:
        """Send a raw command on one shard (see the typed commands below)."""
        with self._telling():
            await self._shard(shard_id).send(op, data)

    async def update_presence(
        self,
        *,
        activities: Iterable[Activity | Mapping[str, Any]] = (),
        status: Status | str = Status.ONLINE,
        afk: bool = False,
        since: int | None = None,
        shard_id: int | None = None,
    ) -> None:
        """Update Presence (op 3) on every shard, or on ``shard_id`` only."""
        activities = list(activities)
        shards = list(self.shards.values()) if shard_id is None else [self._shard(shard_id)]
        # Validated once, before anything is sent.
        coros = [
            s.update_presence(activities=activities, status=status, afk=afk, since=since)
            for s in shards
        ]
        with self._telling():
            await asyncio.gather(*coros)

    async def update_voice_state(
        self,
        guild_id: Snowflake,
        channel_id: Snowflake | None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        """Update Voice State (op 4) on the guild's shard."""
        with self._telling():
            await self.shard_for_guild(guild_id).update_voice_state(
                guild_id, channel_id, self_mute=self_mute, self_deaf=self_deaf
            )

    async def request_guild_members(
        self,
        guild_id: Snowflake,
        *,
        query: str | None = None,
        limit: int | None = None,
        presences: bool | None = None,
        user_ids: Snowflake | Iterable[Snowflake] | None = None,
        nonce: str | None = None,
    ) -> None:
        """Request Guild Members (op 8) on the guild's shard."""
        with self._telling():
            await self.shard_for_guild(guild_id).request_guild_members(
                guild_id,
                query=query,
                limit=limit,
                presences=presences,
                user_ids=user_ids,
                nonce=nonce,
            )

    async def request_soundboard_sounds(self, guild_ids: Iterable[Snowflake]) -> None:
        """Request Soundboard Sounds (op 31): one request per shard, for its guilds."""
        if isinstance(guild_ids, (str, bytes)) or not isinstance(guild_ids, Iterable):
            raise InvalidCommand(f"guild_ids must be a list of guild ids, not {guild_ids!r}")
        groups: dict[int, list[Snowflake]] = {}
        shards: dict[int, Shard] = {}
        for guild_id in guild_ids:
            shard = self.shard_for_guild(guild_id)
            assert shard.options.shard is not None
            groups.setdefault(shard.options.shard[0], []).append(guild_id)
            shards[shard.options.shard[0]] = shard
        if not groups:
            raise InvalidCommand("guild_ids must hold at least one guild id")
        with self._telling():
            await asyncio.gather(
                *(shards[i].request_soundboard_sounds(ids) for i, ids in groups.items())
            )

    async def request_channel_info(
        self, guild_id: Snowflake, fields: Iterable[str] = CHANNEL_INFO_FIELDS
    ) -> None:
        """Request Channel Info (op 43) on the guild's shard."""
        with self._telling():
            await self.shard_for_guild(guild_id).request_channel_info(guild_id, fields)

    async def close(self, code: int = 1000) -> None:
        """Close every shard with ``code``: 1000 ends the sessions; another code
        (4000) keeps them resumable, e.g. for a restart with a ``session_store``."""
        await asyncio.gather(*(shard.close(code) for shard in self.shards.values()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._hooks is not None:  # cluster hook (issue 14): save or drop the sessions
            for shard_id in self.shards:
                await self._hooks.finish(shard_id, session_ended=code in (1000, 1001))
            await self._hooks.close()
        for future in self._waiting.values():
            future.cancel()
        self._events.put_nowait(_Done(None))
