"""Sans-I/O implementation of the Discord gateway.

Sans-I/O means this package does no networking: ``DiscordConnection`` turns
received bytes into events and commands into bytes, and tells you when it
next needs attention. The same core serves threading, asyncio and trio.
"""

from __future__ import annotations

import logging

from .connection import DEFAULT_API_VERSION, DiscordConnection
from .errors import (
    AuthenticationFailed,
    CloseDiscordConnection,
    CommandQueueFull,
    ConfigurationError,
    ConnectionFailed,
    ConnectionRejected,
    DisallowedIntents,
    GatewayClosed,
    GatewayError,
    InternalError,
    InvalidApiVersion,
    InvalidCommand,
    InvalidIntents,
    InvalidShard,
    LocalProtocolError,
    PayloadTooLarge,
    RejectedConnectionData,
    RemoteProtocolError,
    ShardingRequired,
)
from .events import (
    CommandsDropped,
    Disconnected,
    Dispatch,
    Event,
    HeartbeatAck,
    HeartbeatRequest,
    Hello,
    InvalidSession,
    Ready,
    Reconnect,
    Resumed,
    UnknownMessage,
)
from .fsm import State
from .intents import Intents
from .opcodes import CloseCode, Opcode, should_reconnect
from .presence import Activity, ActivityType, Status

__all__ = (
    "AuthenticationFailed",
    "DisallowedIntents",
    "GatewayClosed",
    "InvalidApiVersion",
    "InvalidIntents",
    "InvalidShard",
    "ShardingRequired",
    "DEFAULT_API_VERSION",
    "CloseCode",
    "CloseDiscordConnection",
    "CommandQueueFull",
    "CommandsDropped",
    "ConfigurationError",
    "ConnectionRejected",
    "Dispatch",
    "DiscordConnection",
    "Event",
    "GatewayError",
    "HeartbeatAck",
    "HeartbeatRequest",
    "Hello",
    "InternalError",
    "InvalidCommand",
    "InvalidSession",
    "LocalProtocolError",
    "Opcode",
    "PayloadTooLarge",
    "Ready",
    "Reconnect",
    "RejectedConnectionData",
    "RemoteProtocolError",
    "Resumed",
    "State",
    "UnknownMessage",
    "should_reconnect",
    "ConnectionFailed",
    "Disconnected",
    "Intents",
    "Activity",
    "ActivityType",
    "Status",
)

from ._version import __version__ as __version__

logging.getLogger("discord_gateway").addHandler(logging.NullHandler())
