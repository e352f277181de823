"""What the cluster pieces agree on, without Redis: saved sessions, the
protocols ``ShardManager`` accepts, an in-memory session store, and the glue
(:class:`ShardHooks`) that restores, saves and publishes a shard's session.

Theory of operation
-------------------
A shard's *session* is READY's ``session_id`` and ``resume_gateway_url`` and
the ``s`` of the last dispatch. Saved outside the process, it lets a restarted
process RESUME instead of IDENTIFY (protocol 23, 26): no session start spent, no
GUILD_CREATE storm, and the gateway replays what was missed (protocol 24).

The saved sequence is the last dispatch *handed on* (to your code and to the
event sink), never the core's newest: resuming from it replays exactly what was
not handed on, so a crash loses nothing. With an event sink the sink is flushed
before the session is saved, so the saved sequence is never ahead of what the
stream holds. Writes are coalesced (at most one per ``save_interval`` per
shard), and always made when a connection is lost and when the shard closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..connection import DiscordConnection
from ..errors import ConfigurationError
from ..events import Disconnected, Dispatch, Event, InvalidSession, Ready, Resumed

if TYPE_CHECKING:
    from ..adapters.asyncio import Shard

__all__ = (
    "DEFAULT_MAX_SESSION_AGE",
    "DEFAULT_SAVE_INTERVAL",
    "EventSink",
    "IdentifyQueue",
    "MemorySessionStore",
    "SavedSession",
    "SessionStore",
    "ShardHooks",
)

LOG = logging.getLogger("discord_gateway.cluster")

#: Saved sessions older than this are not resumed. Discord does not publish the
#: resume window; sessions are known to survive a few minutes (protocol 30).
DEFAULT_MAX_SESSION_AGE = 120.0
#: At most one session write per shard per this many seconds (plus lost/close).
DEFAULT_SAVE_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class SavedSession:
    """What a new process needs to RESUME one shard's session (protocol 23)."""

    session_id: str
    sequence: int
    resume_gateway_url: str | None
    #: Wall-clock time (``time.time()``) of the save: stale sessions are ignored.
    saved_at: float

    def to_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "sequence": self.sequence,
            "resume_gateway_url": self.resume_gateway_url,
            "saved_at": self.saved_at,
        }

    @classmethod
    def from_dict(cls, data: object) -> SavedSession | None:
        """The session in ``data``, or None if it is not a well-formed one."""
        if not isinstance(data, dict):
            return None
        session_id, sequence = data.get("session_id"), data.get("sequence")
        url, saved_at = data.get("resume_gateway_url"), data.get("saved_at")
        if (
            not isinstance(session_id, str)
            or not session_id
            or type(sequence) is not int
            or sequence < 0
            or not (url is None or isinstance(url, str))
            or not isinstance(saved_at, (int, float))
        ):
            return None
        return cls(session_id, sequence, url, float(saved_at))


@runtime_checkable
class SessionStore(Protocol):
    """Where shards' sessions are kept between processes. ``shard_id`` keys them."""

    async def load(self, shard_id: int) -> SavedSession | None: ...

    async def save(self, shard_id: int, session: SavedSession) -> None: ...

    async def delete(self, shard_id: int) -> None: ...


class MemorySessionStore:
    """A :class:`SessionStore` in this process: survives a shard's or a manager's
    restart inside one process, not the process's."""

    def __init__(self) -> None:
        self.sessions: dict[int, SavedSession] = {}
        #: How many saves were made (the write rate is bounded: see ShardHooks).
        self.writes = 0

    async def load(self, shard_id: int) -> SavedSession | None:
        return self.sessions.get(shard_id)

    async def save(self, shard_id: int, session: SavedSession) -> None:
        self.writes += 1
        self.sessions[shard_id] = session

    async def delete(self, shard_id: int) -> None:
        self.sessions.pop(shard_id, None)


@runtime_checkable
class IdentifyQueue(Protocol):
    """An identify scheduler shared by processes (``RedisIdentifyScheduler``).

    ``acquire`` returns when ``shard_id`` may send IDENTIFY (counted as sent);
    ``release`` says the gateway answered it (READY, op 9) or the connection
    closed (protocol 60).
    """

    async def acquire(self, shard_id: int) -> None: ...

    async def release(self, shard_id: int) -> None: ...


@runtime_checkable
class EventSink(Protocol):
    """Where dispatches are published (``RedisEventSink``).

    ``publish`` only buffers (it must not block the shard); ``flush`` returns
    once everything published so far is stored.
    """

    def publish(self, shard_id: int, session_id: str, event: Dispatch) -> None: ...

    async def flush(self) -> None: ...


def restore_session(conn: DiscordConnection, saved: SavedSession) -> None:
    """Make a fresh ``conn`` RESUME ``saved`` on its first connection.

    A ``resume_gateway_url`` the core would refuse (another domain) is dropped:
    the session is resumed on the main URL instead.
    """
    url = saved.resume_gateway_url
    try:
        DiscordConnection(
            conn.url, session_id=saved.session_id, sequence=saved.sequence, resume_gateway_url=url
        )
    except ConfigurationError:
        url = None
    conn.session_id = saved.session_id
    conn.sequence = saved.sequence
    conn.resume_gateway_url = url


class _Tracked:
    __slots__ = ("dirty", "saved_at", "sequence", "session_id", "url")

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.url: str | None = None
        self.sequence: int | None = None
        self.dirty = False
        self.saved_at = 0.0


class ShardHooks:
    """The glue between shards and a session store / event sink / identify queue.

    Used by ``ShardManager`` (its ``session_store=``, ``event_sink=`` and
    ``scheduler=`` options) and by ``ClusterNode``. Not thread-safe: one loop.
    """

    def __init__(
        self,
        *,
        session_store: SessionStore | None = None,
        event_sink: EventSink | None = None,
        max_session_age: float = DEFAULT_MAX_SESSION_AGE,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
        clock: object = time.time,
    ) -> None:
        if session_store is not None and not isinstance(session_store, SessionStore):
            raise ConfigurationError(
                "session_store must have async load, save and delete methods, "
                f"not {type(session_store).__name__}"
            )
        if event_sink is not None and not isinstance(event_sink, EventSink):
            raise ConfigurationError(
                f"event_sink must have publish and async flush, not {type(event_sink).__name__}"
            )
        self.session_store = session_store
        self.event_sink = event_sink
        self.max_session_age = max_session_age
        self.save_interval = save_interval
        self._clock = clock
        self._shards: dict[int, _Tracked] = {}
        self._flusher: asyncio.Task[None] | None = None
        #: Shards whose saved session was restored (they RESUME first).
        self.restored: set[int] = set()

    def _now(self) -> float:
        clock = self._clock
        assert callable(clock)
        value = clock()
        assert isinstance(value, float)
        return value

    async def restore(self, shard_id: int, shard: Shard) -> bool:
        """Load ``shard_id``'s saved session into ``shard`` (before it starts)."""
        tracked = self._shards.setdefault(shard_id, _Tracked())
        if self.session_store is None:
            return False
        try:
            saved = await self.session_store.load(shard_id)
        except Exception as exc:  # the store is down: identify instead of not starting
            LOG.warning("could not load shard %d's session (%r); it will identify", shard_id, exc)
            return False
        if saved is None:
            return False
        age = self._now() - saved.saved_at
        if age > self.max_session_age:
            LOG.info("shard %d's saved session is %.0f s old: identifying", shard_id, age)
            return False
        restore_session(shard.connection, saved)
        tracked.session_id, tracked.sequence = saved.session_id, saved.sequence
        tracked.url = saved.resume_gateway_url
        self.restored.add(shard_id)
        LOG.info("shard %d resumes session %s from %d", shard_id, saved.session_id, saved.sequence)
        return True

    async def on_event(self, shard_id: int, event: Event) -> None:
        """An event the shard handed on (in order)."""
        tracked = self._shards.setdefault(shard_id, _Tracked())
        if isinstance(event, Ready):
            tracked.session_id, tracked.url = event.session_id, event.resume_gateway_url
        if isinstance(event, Dispatch):
            if event.seq is not None:
                tracked.sequence = event.seq
            if tracked.session_id is not None and self.event_sink is not None:
                self.event_sink.publish(shard_id, tracked.session_id, event)
            tracked.dirty = True
            if isinstance(event, (Ready, Resumed)):
                await self.save(shard_id)
            else:
                self._start_flusher()
        elif isinstance(event, Disconnected):
            if event.resumable:
                await self.save(shard_id)  # a crash now still resumes
            else:
                tracked.session_id = tracked.sequence = tracked.url = None
                tracked.dirty = False
                await self._delete(shard_id)
        elif isinstance(event, InvalidSession) and not event.resumable:
            tracked.session_id = tracked.sequence = tracked.url = None

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.save_interval)
        await self.save_all()

    async def save_all(self) -> None:
        for shard_id, tracked in list(self._shards.items()):
            if tracked.dirty:
                await self.save(shard_id)

    async def save(self, shard_id: int) -> bool:
        """Flush the sink, then save ``shard_id``'s session. False if it failed
        (logged; kept dirty, so the next save retries)."""
        tracked = self._shards.setdefault(shard_id, _Tracked())
        session_id, sequence, url = tracked.session_id, tracked.sequence, tracked.url
        tracked.dirty = False
        try:
            if self.event_sink is not None:
                await self.event_sink.flush()  # never save a sequence the stream lacks
            if self.session_store is not None and session_id is not None and sequence is not None:
                saved = SavedSession(session_id, sequence, url, self._now())
                await self.session_store.save(shard_id, saved)
                tracked.saved_at = saved.saved_at
        except Exception as exc:
            LOG.warning("could not save shard %d's session: %r", shard_id, exc)
            tracked.dirty = True
            self._start_flusher()
            return False
        return True

    async def _delete(self, shard_id: int) -> None:
        if self.session_store is None:
            return
        try:
            await self.session_store.delete(shard_id)
        except Exception as exc:
            LOG.warning("could not delete shard %d's session: %r", shard_id, exc)

    async def finish(self, shard_id: int, *, session_ended: bool) -> None:
        """The shard closed: save its session (or delete it if the close ended it)."""
        if session_ended:
            await self._delete(shard_id)
        else:
            await self.save(shard_id)
        self._shards.pop(shard_id, None)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
