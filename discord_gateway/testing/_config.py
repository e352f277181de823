"""The local gateway's configuration (:class:`ServerConfig`) and a connection's
lifecycle states (:class:`ConnectionState`).

They sit apart from :mod:`.server` because both :mod:`.server` (one connection)
and :mod:`.sessions` (the sessions every connection shares) need them: with them
here, either module can be imported first. Both names are re-exported by
:mod:`.server` and by :mod:`discord_gateway.testing`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..codec import MAX_SEND_SIZE
from ..opcodes import CloseCode

__all__ = ("DEFAULT_TOKEN", "PRIVILEGED_INTENTS", "ConnectionState", "ServerConfig")

#: The token a default :class:`ServerConfig` accepts. Shaped like Discord's (issue 16):
#: its first part is the default bot user's id in base64 (``world.bot_token``).
DEFAULT_TOKEN = "MTg5NjE4NjMxNjkwMTY0OTYxOQ.GLocal.ZGlzY29yZC1nYXRld2F5LWxvY2Fs"

#: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT (protocol 19).
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)

_CLOSE_TIMEOUT = 5.0  # seconds we wait for the client's close frame before dropping TCP


def _default_user() -> dict[str, Any]:
    return {
        "id": "1896186316901649619",
        "username": "LocalBot",
        "discriminator": "0000",
        "global_name": None,
        "avatar": None,
        "bot": True,
        "verified": True,
        "mfa_enabled": False,
        "flags": 0,
        "email": None,
    }


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How the local gateway behaves. Times are seconds; HELLO carries ms.

    ``url``/``resume_gateway_url`` are what ``/gateway`` and READY advertise
    (``serve()`` fills them in once it knows its port; ``resume_gateway_url``
    defaults to ``url``). ``allowed_intents`` is which privileged intents the
    "application" has enabled (protocol 19; all by default).
    ``enforce_identify_concurrency`` answers a second IDENTIFY in the same
    ``shard_id % max_concurrency`` bucket within 5 s with op 9 (protocol 21), and
    ``enforce_session_start_limit`` closes an IDENTIFY beyond
    ``session_start_limit`` sessions with 4004 (Discord resets the token); both
    on by default, like Discord: turn them off in tests that start sessions back
    to back. ``filter_by_intents`` sends each session only the dispatches its
    IDENTIFY intents cover, with message content emptied without
    MESSAGE_CONTENT, as Discord does (the table is :mod:`.intents`; on by
    default: turn it off to get every dispatch whatever the intents).
    ``write_timeout`` and ``max_write_buffer`` bound a client that
    stops reading (``serve()`` resets it). ``handshake_timeout`` bounds the HTTP
    request head and upgrade, ``close_timeout`` how long we wait for the client's
    close frame after ours.
    ``keep_closed_connections`` is how many closed connections
    ``SessionStore.connections`` keeps as a record (their buffers and
    compressors are released at close); older ones are forgotten. Each
    connection's ``received`` and ``sent`` keep (at least) their newest
    ``record_limit`` entries.
    """

    tokens: frozenset[str] = frozenset({DEFAULT_TOKEN})
    heartbeat_interval: float = 41.25
    heartbeat_grace: float = 5.0
    heartbeat_timeout_close_code: int = CloseCode.SESSION_TIMED_OUT
    session_ttl: float = 120.0
    allowed_intents: int = PRIVILEGED_INTENTS
    versions: frozenset[int] = frozenset({9, 10})
    default_version: int = 10
    url: str = "ws://127.0.0.1/"
    resume_gateway_url: str | None = None
    max_payload_size: int = MAX_SEND_SIZE
    rate_limit: int = 120
    rate_limit_window: float = 60.0
    replay_limit: int = 10_000
    payload_compression_threshold: int = 128
    user: Mapping[str, Any] = field(default_factory=_default_user)
    application_flags: int = 0
    guild_ids: tuple[int, ...] = (961969618123483218, 931282703477784690)
    send_guild_creates: bool = True
    max_guilds_per_shard: int = 2500
    recommended_shards: int = 1
    max_concurrency: int = 1
    enforce_identify_concurrency: bool = True
    session_start_limit: int = 1000
    enforce_session_start_limit: bool = True
    filter_by_intents: bool = True
    handshake_timeout: float = 10.0
    write_timeout: float = 10.0
    max_write_buffer: int = 4 * 1024 * 1024
    close_timeout: float = _CLOSE_TIMEOUT
    keep_closed_connections: int = 1000
    record_limit: int = 10_000

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if not self.tokens:
            raise ValueError("at least one token is needed")


class ConnectionState(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for the HTTP request
    AWAITING_IDENTIFY = "awaiting_identify"  # HELLO sent, no session yet
    CONNECTED = "connected"  # identified or resumed: dispatches flow
    CLOSING = "closing"  # we sent a close frame and wait for the client's
    CLOSED = "closed"  # nothing more to read or write
