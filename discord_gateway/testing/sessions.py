"""The local gateway's session store: sessions, their TTL and RESUME replays.

Discord sessions outlive connections, so they live here, not on a connection:

* :class:`Session` is one gateway session (id, token, intents, shard, the seq
  counter and the log of sent dispatches for RESUME replays, and when a
  detached session expires: protocol 30).
* :class:`SessionStore` holds every session of one server, shared by all its
  connections (:class:`~.server.GatewayServer`, one per connection): it creates,
  looks up, expires (a heap of TTL deadlines, on its own clock) and invalidates
  sessions, keeps the IDENTIFY rate-limit buckets, and is where tests push
  dispatches (:meth:`SessionStore.dispatch`), routed by shard and logged for
  replay. Like the server it does no I/O and reads no clock.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..opcodes import Opcode
from . import intents as _intents
from ._config import ConnectionState, ServerConfig
from .profiles import Deviations
from .world import World  # issue 16 hook: guilds, members and payloads come from the world

if TYPE_CHECKING:
    from .server import GatewayServer

__all__ = ("Session", "SessionStore")


@dataclass(eq=False, slots=True)
class Session:
    """A gateway session: survives its connection for ``session_ttl`` (protocol 30)."""

    session_id: str
    token: str
    intents: int
    shard: tuple[int, int] | None
    seq: int = 0
    log: deque[dict[str, Any]] = field(default_factory=deque)
    connection: GatewayServer | None = None
    expires_at: float | None = None  # set while no connection is attached
    valid: bool = True  # False after InvalidateSession: the next RESUME fails

    def receives(self, data: Any) -> bool:
        """Whether a dispatch with ``data`` goes to this session's shard (protocol 44)."""
        if self.shard is None:
            return True
        shard_id, num_shards = self.shard
        guild_id = data.get("guild_id") if isinstance(data, Mapping) else None
        if guild_id is None:
            return shard_id == 0
        return (int(guild_id) >> 22) % num_shards == shard_id


class SessionStore:
    """Every session of one local gateway, shared by its connections.

    ``seed`` makes session ids and each connection's randomness reproducible.
    ``deviations`` is how every connection departs from Discord (none by default;
    see :mod:`.profiles`).
    ``on_output(server)`` is called whenever a connection got bytes to send from
    outside its own ``receive_data``/``handle_timer`` (a pushed dispatch, a
    fault), so an I/O adapter knows to wake that connection up.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        seed: int | str = 0,
        deviations: Deviations | None = None,
        world: World | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.seed = seed
        self.deviations = deviations or Deviations()
        # issue 16 hook: what READY, GUILD_CREATE and the REST routes show (.world)
        self.world = world or World(self.config.user, self.config.guild_ids)
        self.sessions: dict[str, Session] = {}
        #: Every live connection, and the last ``keep_closed_connections`` closed ones.
        self.connections: list[GatewayServer] = []
        self.connection_count = 0  # connections ever opened (their 1-based index)
        self.identify_count = 0
        self._closed_connections = 0  # closed ones still in ``connections``
        self._expiries: list[tuple[float, str]] = []  # heap of (expires_at, session_id)
        self._identify_buckets: dict[int, float] = {}  # rate_limit_key -> last IDENTIFY
        self.on_output: Callable[[GatewayServer], None] | None = None
        self._rng = random.Random(f"{seed}/sessions")

    # -- sessions ------------------------------------------------------------

    def create_session(self, token: str, intents: int, shard: tuple[int, int] | None) -> Session:
        session_id = f"{self._rng.getrandbits(128):032x}"
        session = Session(session_id, token, intents, shard)
        session.log = deque(maxlen=self.config.replay_limit)
        self.sessions[session_id] = session
        self.identify_count += 1
        return session

    def identify_allowed(self, shard: tuple[int, int] | None, now: float) -> bool:
        """protocol 21: one IDENTIFY per ``shard_id % max_concurrency`` bucket per 5 s."""
        if not self.config.enforce_identify_concurrency:
            return True
        key = (shard[0] if shard else 0) % self.config.max_concurrency
        last = self._identify_buckets.get(key)
        if last is not None and now - last < 5.0:
            return False
        self._identify_buckets[key] = now
        return True

    def lookup(self, session_id: str, now: float) -> Session | None:
        """The session, unless it does not exist or has expired (then it is removed)."""
        session = self.sessions.get(session_id)
        if session is not None and session.expires_at is not None and now >= session.expires_at:
            self.destroy(session)
            return None
        return session

    def expire(self, now: float) -> None:
        """Destroy every detached session whose TTL ran out (protocol 30)."""
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, session_id = heapq.heappop(heap)
            session = self.sessions.get(session_id)
            if session is not None and session.expires_at is not None and now >= session.expires_at:
                self.destroy(session)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must run next: the first detached session's expiry."""
        heap = self._expiries
        while heap:  # drop entries of sessions reattached or destroyed since
            expires_at, session_id = heap[0]
            session = self.sessions.get(session_id)
            if session is not None and session.expires_at == expires_at:
                return expires_at
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Expire sessions on their own clock, whether or not any connection is live."""
        self.expire(now)

    def _detach(self, session: Session, now: float) -> None:
        session.connection = None
        session.expires_at = now + self.config.session_ttl
        heapq.heappush(self._expiries, (session.expires_at, session.session_id))

    def destroy(self, session: Session) -> None:
        session.valid = False
        self.sessions.pop(session.session_id, None)

    def invalidate(self, session_id: str) -> None:
        """The next RESUME of this session gets op 9 ``d: false`` (protocol 29)."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.valid = False

    # -- dispatching -----------------------------------------------------------

    def dispatch(
        self, name: str, data: Any, *, session_id: str | None = None, route: bool = True
    ) -> list[int]:
        """Append dispatch ``name`` to sessions and send it where a connection is live.

        With ``session_id``, only that session; otherwise every valid session,
        routed by shard like Discord does (``guild_id`` decides, events without
        one go to shard 0: protocol 44) unless ``route=False``; either way only
        to sessions whose intents cover it (``filter_by_intents``, see
        :meth:`_append`). Disconnected sessions keep it for the RESUME replay.
        Returns the seqs assigned.
        The world remembers what it says (a later READY/GUILD_CREATE shows it).
        """
        self.world.apply(name, data)  # issue 16 hook
        if session_id is not None:
            targets = [self.sessions[session_id]] if session_id in self.sessions else []
        else:
            targets = [
                s for s in self.sessions.values() if s.valid and (not route or s.receives(data))
            ]
        seqs = (self._append(session, name, data) for session in targets)
        return [seq for seq in seqs if seq is not None]

    def _append(
        self, session: Session, name: str, data: Any, *, reuse_seq: bool = False
    ) -> int | None:
        """Send dispatch ``name`` to ``session`` (log it, number it); its seq.

        Every dispatch goes through here. With ``filter_by_intents`` a session
        whose intents do not cover the event gets nothing (``None``: no seq, no
        log entry), and message content is emptied without MESSAGE_CONTENT
        (:mod:`.intents`, as Discord does).
        """
        if self.config.filter_by_intents:
            bot_id = self.world.bot["id"]
            if not _intents.receives(name, data, session.intents, bot_id):
                return None
            data = _intents.redact(name, data, session.intents, bot_id)
        if not reuse_seq:  # a deviation (profiles) may give two dispatches one seq
            session.seq += 1
        payload = {"op": Opcode.DISPATCH.value, "d": data, "s": session.seq, "t": name}
        session.log.append(payload)
        if session.connection is not None:
            session.connection._send_dispatch(payload)
        return session.seq

    def connection_rng(self, index: int) -> random.Random:
        return random.Random(f"{self.seed}/connection/{index}")

    def _register(self, server: GatewayServer) -> int:
        self.connections.append(server)
        self.connection_count += 1
        return self.connection_count

    def _forget(self, server: GatewayServer) -> None:
        """A connection closed: keep only the newest ``keep_closed_connections`` closed ones."""
        self._closed_connections += 1
        excess = self._closed_connections - self.config.keep_closed_connections
        if excess > max(16, self.config.keep_closed_connections // 8):  # prune in batches
            kept: list[GatewayServer] = []
            for connection in self.connections:
                if excess and connection.state is ConnectionState.CLOSED:
                    excess -= 1
                    self._closed_connections -= 1
                else:
                    kept.append(connection)
            self.connections[:] = kept

    def _wake(self, server: GatewayServer) -> None:
        if self.on_output is not None:
            self.on_output(server)
