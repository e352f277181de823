"""A local Discord gateway for tests, demos and offline bot development.

``GatewayServer`` is the sans-I/O server (one per connection, the gateway
protocol: :mod:`discord_gateway.testing.server`) over a shared ``SessionStore``
(sessions, their TTL and RESUME replays: :mod:`discord_gateway.testing.sessions`);
its first request's HTTP helpers are in :mod:`discord_gateway.testing.http`.
``serve()`` runs it on 127.0.0.1 with asyncio (plain ``ws://``
or TLS) and also answers ``GET /api/v10/gateway`` and ``/gateway/bot``.
Faults (op 7, op 9, closes, resets, stalls, dropped ACKs, ...) are in
:mod:`discord_gateway.testing.faults`, deviant-server profiles (the ways real
Discord-compatible servers differ from Discord) in
:mod:`discord_gateway.testing.profiles`; both are re-exported here.
"""

from __future__ import annotations

from .faults import (
    AfterDispatches,
    AtTime,
    Close,
    ConnectionFaults,
    CorruptCompressed,
    Fault,
    InvalidateSession,
    OnHeartbeat,
    ResetConnection,
    SendHeartbeatRequest,
    SendInvalidSession,
    SendMalformed,
    SendReconnect,
    Stall,
    Trigger,
)
from .profiles import PROFILES, Deviations, deviations_profile
from .rest import RestApi, RestRequest  # issue 16
from .serve import LocalGateway, serve, tls_contexts
from .server import (
    DEFAULT_TOKEN,
    KNOWN_INTENTS,
    PRIVILEGED_INTENTS,
    ConnectionState,
    GatewayServer,
    Received,
    ServerConfig,
    Session,
    SessionStore,
)
from .world import AnyToken, Dispatch, World, bot_token  # issue 16

__all__ = (
    "DEFAULT_TOKEN",
    "KNOWN_INTENTS",
    "PRIVILEGED_INTENTS",
    "PROFILES",
    "AfterDispatches",
    "AnyToken",  # issue 16
    "AtTime",
    "Close",
    "ConnectionFaults",
    "ConnectionState",
    "CorruptCompressed",
    "Deviations",
    "Dispatch",  # issue 16
    "Fault",
    "GatewayServer",
    "InvalidateSession",
    "LocalGateway",
    "OnHeartbeat",
    "Received",
    "ResetConnection",
    "RestApi",  # issue 16
    "RestRequest",  # issue 16
    "SendHeartbeatRequest",
    "SendInvalidSession",
    "SendMalformed",
    "SendReconnect",
    "ServerConfig",
    "Session",
    "SessionStore",
    "Stall",
    "Trigger",
    "World",  # issue 16
    "bot_token",  # issue 16
    "deviations_profile",
    "serve",
    "tls_contexts",
)
