"""What every adapter is configured with: ``ShardOptions``, validated when built.

``Shard(...)`` in every adapter (and ``ShardManager(...)``) builds one of
these first, so a bad option raises :class:`ConfigurationError` in your code,
before any socket is opened, and the ``DiscordConnection`` is built right
away so the core's own checks (URL, encoding, compression, timeouts) run
there too.
"""

from __future__ import annotations

import difflib
import logging
import math
import random
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypedDict, TypeVar

import certifi

from ..commands import (
    CHANNEL_INFO_FIELDS,
    Snowflake,
    identify_data,
    presence_data,
    request_channel_info_data,
    request_guild_members_data,
    request_soundboard_sounds_data,
    voice_state_data,
)
from ..connection import MAX_TIMEOUT, DiscordConnection
from ..errors import ConfigurationError, InvalidCommand
from ..fsm import State
from ..opcodes import Opcode
from ..presence import Activity, Status

__all__ = (
    "DEFAULT_URL",
    "LOG",
    "ManagerOptions",
    "ShardCommands",
    "ShardKwargs",
    "shard_logger",
    "MAX_FAILED_ATTEMPTS",
    "MAX_PENDING_EVENTS",
    "HEARTBEAT_GRID",
    "READ_SIZE",
    "ShardOptions",
    "default_ssl_context",
)

LOG = logging.getLogger("discord_gateway")


def shard_logger(shard: tuple[int, int] | None) -> logging.Logger:
    """The logger of one shard: ``discord_gateway.shard.<id>`` (``.shard`` alone unsharded)."""
    return LOG.getChild("shard" if shard is None else f"shard.{shard[0]}")


#: How many bytes one read asks for.
READ_SIZE = 65536
DEFAULT_URL = "wss://gateway.discord.gg"
#: Connections in a row that may fail before READY (a protocol failure each) before
#: the shard gives up with ``ConnectionFailed``. Network outages never count.
MAX_FAILED_ATTEMPTS = 5
#: Events that may wait for the consumer before the adapter stops reading the socket.
MAX_PENDING_EVENTS = 10_000
#: Heartbeat deadlines are multiples of this many seconds (the core's
#: ``heartbeat_grid``): shards in one process beat together, one wake-up for
#: several, instead of each waking the process on its own.
HEARTBEAT_GRID = 2.0
#: The longest timeout any option accepts, and the longest an adapter ever waits
#: at once: a day (every selector can wait that long).
MAX_SECONDS = MAX_TIMEOUT


def default_ssl_context() -> ssl.SSLContext:
    """TLS with certifi's CA bundle."""
    return ssl.create_default_context(cafile=certifi.where())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= MAX_SECONDS
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds above 0 and at most {MAX_SECONDS:g}, not {value!r}"
        )


@dataclass(frozen=True)
class ShardOptions:
    """Everything a shard needs to connect, checked when built. The token never appears in a repr.

    The timeouts left at None use the core's defaults (``ready_timeout``,
    ``resume_timeout``); ``headers`` are added to the upgrade request.
    """

    token: str = field(repr=False)
    intents: int
    url: str = DEFAULT_URL
    shard: tuple[int, int] | None = None
    compress: str | bool | None = "zlib-stream"
    encoding: str = "json"
    properties: dict[str, Any] | None = None
    presence: dict[str, Any] | None = None
    large_threshold: int | None = None
    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = 10.0
    hello_timeout: float = 20.0
    close_timeout: float = 5.0
    dispatch_handled: bool = False
    rng: random.Random | None = None
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ready_timeout: float | None = None
    resume_timeout: float | None = None
    max_payload_size: int | None = None
    #: Stop reading the socket while this many events wait for the consumer.
    max_pending_events: int = MAX_PENDING_EVENTS
    #: Give up (``ConnectionFailed``) after this many protocol failures in a row
    #: before READY; None retries for ever.
    max_failed_attempts: int | None = MAX_FAILED_ATTEMPTS
    #: Parse plain data frames straight out of each read (the core's ``fast_frames``);
    #: False sends every byte through wsproto.
    fast_frames: bool = True
    #: Heartbeat deadlines on multiples of this many seconds (the core's
    #: ``heartbeat_grid``; 0: exact): one wake-up for several shards' heartbeats.
    heartbeat_grid: float = HEARTBEAT_GRID

    @classmethod
    def build(cls, token: str, intents: int, url: str, options: Mapping[str, Any]) -> ShardOptions:
        """``ShardOptions(token=..., **options)``, naming unknown options instead of a TypeError."""
        known = {f.name for f in fields(cls)}
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(
                    f"unknown option {name!r}{hint} (options: {', '.join(sorted(known))})"
                )
        return cls(token=token, intents=intents, url=url, **options)

    def __post_init__(self) -> None:
        # What IDENTIFY will carry is checked now, by the function that builds it;
        # the core checks its own options when the shard builds its connection.
        try:
            identify_data(
                token=self.token,
                intents=self.intents,
                properties=self.properties,
                large_threshold=self.large_threshold,
                shard=self.shard,
                presence=self.presence,
            )
        except InvalidCommand as exc:
            raise ConfigurationError(str(exc)) from exc
        if self.shard is not None:
            object.__setattr__(self, "shard", tuple(self.shard))
        if not isinstance(self.url, str):
            raise ConfigurationError(f"url must be a string, not {self.url!r}")
        _seconds("connect_timeout", self.connect_timeout)
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise ConfigurationError(
                f"ssl_context must be an ssl.SSLContext, not {type(self.ssl_context).__name__}"
            )
        if not isinstance(self.dispatch_handled, bool):
            raise ConfigurationError(
                f"dispatch_handled must be a bool, not {self.dispatch_handled!r}"
            )
        if self.rng is not None and not isinstance(self.rng, random.Random):
            raise ConfigurationError(f"rng must be a random.Random, not {type(self.rng).__name__}")
        pending = self.max_pending_events
        if not _is_int(pending) or pending < 1:
            raise ConfigurationError(f"max_pending_events must be an int >= 1, not {pending!r}")
        attempts = self.max_failed_attempts
        if attempts is not None and (not _is_int(attempts) or attempts < 1):
            raise ConfigurationError(
                f"max_failed_attempts must be an int >= 1 or None, not {attempts!r}"
            )

    def new_connection(self) -> DiscordConnection:
        """The core connection for these options; the core checks its own arguments."""
        extra: dict[str, Any] = {}
        for name in ("ready_timeout", "resume_timeout", "max_payload_size"):
            value = getattr(self, name)
            if value is not None:  # None: the core's default
                extra[name] = value
        return DiscordConnection(
            self.url,
            encoding=self.encoding,
            compress=self.compress,
            dispatch_handled=self.dispatch_handled,
            hello_timeout=self.hello_timeout,
            close_timeout=self.close_timeout,
            headers=self.headers,
            rng=self.rng,
            fast_frames=self.fast_frames,
            heartbeat_grid=self.heartbeat_grid,
            logger=shard_logger(self.shard),
            **extra,
        )

    def tls(self, conn: DiscordConnection) -> ssl.SSLContext | None:
        if not conn.secure:
            return None
        return self.ssl_context if self.ssl_context is not None else default_ssl_context()

    def greeting(self, conn: DiscordConnection, now: float) -> bytes:
        """What to send after HELLO: RESUME if the session survives, else IDENTIFY."""
        if conn.should_resume:
            return conn.resume(self.token, now=now)
        return conn.identify(
            now=now,
            token=self.token,
            intents=self.intents,
            properties=self.properties,
            shard=self.shard,
            presence=self.presence,
            large_threshold=self.large_threshold,
        )


class ManagerOptions(TypedDict, total=False):
    """The options every shard takes, by name and type (``Shard(...)`` adds ``shard``).

    Typed keyword arguments: ``mypy --strict`` rejects a misspelt option, and
    the constructors also check them at run time (``ConfigurationError``).
    See :class:`ShardOptions` for what each means.
    """

    compress: str | bool | None
    encoding: str
    properties: dict[str, Any] | None
    presence: dict[str, Any] | None
    large_threshold: int | None
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    hello_timeout: float
    close_timeout: float
    dispatch_handled: bool
    rng: random.Random | None
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None
    ready_timeout: float | None
    resume_timeout: float | None
    max_payload_size: int | None
    max_pending_events: int
    max_failed_attempts: int | None
    fast_frames: bool
    heartbeat_grid: float


class ShardKwargs(ManagerOptions, total=False):
    """:class:`ManagerOptions` and ``shard=(shard_id, num_shards)``."""

    shard: tuple[int, int] | None


class StoppedWithError:
    """The error a shard (or manager) stopped with, raised wherever you wait.

    Once you were told (raised to you anywhere), leaving ``with`` does not raise
    it again; a fatal error nobody waited for is raised there.
    """

    #: Why it stopped (None: closed by you), and whether you were told.
    _error: BaseException | None = None
    _error_raised = False

    def _raise_error(self) -> None:
        """Raise the error it stopped with, if any (once told, not again on exit)."""
        error = self._error
        if error is not None:
            self._error_raised = True
            raise error

    def _raise_error_on_exit(self, exc: BaseException | None) -> None:
        """Leaving ``with``: a fatal error nobody waited for is raised here, unless
        the body raised (its exception propagates as itself)."""
        if exc is None and not self._error_raised:
            self._raise_error()


R = TypeVar("R")


class ShardCommands(StoppedWithError, Generic[R]):
    """The typed commands, ``latency``, ``state`` and ``session_id`` of every adapter's Shard
    (and, from ``StoppedWithError``, raising the error it stopped with).

    Each command is validated here, in your code (``InvalidCommand``), then
    handed to the adapter's ``send()``: ``R`` is what that returns (an
    awaitable in the asyncio and trio adapters, None in the threading one).
    """

    options: ShardOptions
    connection: DiscordConnection

    def __repr__(self) -> str:
        return f"<Shard {self.options.shard} {self.connection!r}>"

    def _submit(self, op: Opcode, data: dict[str, Any]) -> R:
        raise NotImplementedError

    @property
    def latency(self) -> float | None:
        """Seconds between the last heartbeat and its ACK; None before the first ACK."""
        return self.connection.latency

    @property
    def state(self) -> State:
        """The current connection's lifecycle state."""
        return self.connection.state

    @property
    def session_id(self) -> str | None:
        """The gateway session's id (from READY), None while there is none."""
        return self.connection.session_id

    def update_presence(
        self,
        *,
        activities: Iterable[Activity | Mapping[str, Any]] = (),
        status: Status | str = Status.ONLINE,
        afk: bool = False,
        since: int | None = None,
    ) -> R:
        """Update Presence (op 3): the bot's status and activities."""
        data = presence_data(activities=activities, status=status, afk=afk, since=since)
        return self._submit(Opcode.PRESENCE_UPDATE, data)

    def update_voice_state(
        self,
        guild_id: Snowflake,
        channel_id: Snowflake | None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> R:
        """Update Voice State (op 4): join, move or (``channel_id=None``) leave voice."""
        data = voice_state_data(guild_id, channel_id, self_mute=self_mute, self_deaf=self_deaf)
        return self._submit(Opcode.VOICE_STATE_UPDATE, data)

    def request_guild_members(
        self,
        guild_id: Snowflake,
        *,
        query: str | None = None,
        limit: int | None = None,
        presences: bool | None = None,
        user_ids: Snowflake | Iterable[Snowflake] | None = None,
        nonce: str | None = None,
    ) -> R:
        """Request Guild Members (op 8); the answer is GUILD_MEMBERS_CHUNK dispatches.

        Give ``query`` (a username prefix) with ``limit``, or ``user_ids``.
        """
        data = request_guild_members_data(
            guild_id, query=query, limit=limit, presences=presences, user_ids=user_ids, nonce=nonce
        )
        return self._submit(Opcode.REQUEST_GUILD_MEMBERS, data)

    def request_soundboard_sounds(self, guild_ids: Iterable[Snowflake]) -> R:
        """Request Soundboard Sounds (op 31); one SOUNDBOARD_SOUNDS dispatch per guild."""
        data = request_soundboard_sounds_data(guild_ids)
        return self._submit(Opcode.REQUEST_SOUNDBOARD_SOUNDS, data)

    def request_channel_info(
        self, guild_id: Snowflake, fields: Iterable[str] = CHANNEL_INFO_FIELDS
    ) -> R:
        """Request Channel Info (op 43); the answer is a CHANNEL_INFO dispatch."""
        data = request_channel_info_data(guild_id, fields)
        return self._submit(Opcode.REQUEST_CHANNEL_INFO, data)
