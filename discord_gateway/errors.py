"""Exceptions.

One base, :class:`GatewayError`, and under it the split h11 taught us:
:class:`LocalProtocolError` (you used the API in a way the lifecycle does not
allow) versus :class:`RemoteProtocolError` (the gateway sent something we
cannot accept). Third-party exceptions (wsproto, zlib, json, transitions) are
wrapped with ``raise ... from exc`` at one boundary each.

:class:`CloseDiscordConnection` is not an error: it is the signal, kept from
discord-gateway 0.4.0, that the WebSocket is closed and the socket should be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsproto.events import RejectConnection

__all__ = (
    "AuthenticationFailed",
    "DisallowedIntents",
    "GatewayClosed",
    "InvalidApiVersion",
    "InvalidIntents",
    "InvalidShard",
    "ShardingRequired",
    "fatal_close_error",
    "CloseDiscordConnection",
    "CommandQueueFull",
    "ConfigurationError",
    "ConnectionRejected",
    "GatewayError",
    "InternalError",
    "InvalidCommand",
    "LocalProtocolError",
    "PayloadTooLarge",
    "RejectedConnectionData",
    "RemoteProtocolError",
    "ConnectionFailed",
)


class GatewayError(Exception):
    """Base class of every error this package raises."""


class LocalProtocolError(GatewayError):
    """The caller did something the lifecycle does not allow in this state.

    The connection is left exactly as it was.
    """


class ConfigurationError(GatewayError, ValueError):
    """A constructor argument is invalid (bad URL, unknown encoding, ...)."""


class InvalidCommand(GatewayError, ValueError):
    """A command's arguments break Discord's rules; nothing was sent.

    Discord would answer such a payload by closing the connection (usually
    4002), so we refuse it locally with a message that names the rule.
    """


class CommandQueueFull(GatewayError):
    """Too many commands are already waiting for the send limit; nothing was queued."""


class RemoteProtocolError(GatewayError):
    """The gateway sent something we cannot accept (bad JSON, bad zlib, ...).

    The connection has started a close handshake with a resumable code, so the
    session survives. ``data`` holds the bytes to write to the socket (the
    close frame, after anything else that was pending); keep receiving until
    :class:`CloseDiscordConnection` as after any close.
    """

    data: bytes

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


class PayloadTooLarge(RemoteProtocolError):
    """A received message is larger than the connection's ``max_payload_size``."""


class InternalError(RemoteProtocolError):
    """A bug in discord-gateway: reading the gateway's bytes raised an unexpected exception.

    ``receive()`` never lets such an exception escape: it logs it at ERROR with
    the traceback, closes the connection as after garbage (resumably; ``data``
    holds the close frame, if any) and raises this instead, so a shard survives.
    Please report it with the logged traceback.
    """


class CloseDiscordConnection(Exception):
    """The WebSocket is closed: send ``data`` (if not None), then close the socket.

    ``code`` and ``reason`` are those of the close frame the gateway sent (1006
    when the transport was lost without one). Afterwards check
    ``DiscordConnection.should_reconnect()`` and call ``reconnect()``.
    """

    code: int | None
    reason: str | None
    data: bytes | None

    def __init__(
        self, data: bytes | None, code: int | None = None, reason: str | None = None
    ) -> None:
        text = "" if code is None else str(code)
        if reason:
            text += f" - {reason}"
        super().__init__(text)
        self.code = code
        self.reason = reason
        self.data = data


class GatewayClosed(GatewayError):
    """The gateway closed with a fatal code (protocol 31): reconnecting cannot succeed.

    Raised by the adapters; the core only moves to the ``closed`` state. The
    subclass names the cause; ``code`` and ``reason`` are the close frame's.
    """

    code: int
    reason: str | None

    def __init__(self, code: int, reason: str | None = None, meaning: str = "") -> None:
        text = f"the gateway closed with fatal code {code}"
        if meaning:
            text += f" ({meaning})"
        if reason:
            text += f": {reason}"
        super().__init__(text)
        self.code = code
        self.reason = reason


class AuthenticationFailed(GatewayClosed):
    """4004: the token is wrong."""


class InvalidShard(GatewayClosed):
    """4010: the shard in IDENTIFY is invalid."""


class ShardingRequired(GatewayClosed):
    """4011: the bot has too many guilds for one shard."""


class InvalidApiVersion(GatewayClosed):
    """4012: the gateway version is not served."""


class InvalidIntents(GatewayClosed):
    """4013: the intents value is invalid."""


class DisallowedIntents(GatewayClosed):
    """4014: a privileged intent is not enabled for this bot.

    ``privileged`` names the privileged intents the IDENTIFY asked for (empty
    when the adapter did not know them); the message says where to enable them.
    """

    privileged: tuple[str, ...]

    def __init__(
        self,
        code: int,
        reason: str | None = None,
        meaning: str = "",
        *,
        intents: int | None = None,
    ) -> None:
        super().__init__(code, reason, meaning)
        from .intents import PORTAL_HINT, Intents, intent_names

        asked = intent_names(intents & Intents.PRIVILEGED) if intents is not None else []
        self.privileged = tuple(asked)
        what = ", ".join(asked) or "GUILD_MEMBERS, GUILD_PRESENCES or MESSAGE_CONTENT"
        self.args = (
            f"{str(self.args[0]).rstrip('.')}; your intents ask for {what}: enable them in "
            f"the {PORTAL_HINT}, or leave them out of intents",
        )


_FATAL_ERRORS: dict[int, type[GatewayClosed]] = {
    4004: AuthenticationFailed,
    4010: InvalidShard,
    4011: ShardingRequired,
    4012: InvalidApiVersion,
    4013: InvalidIntents,
    4014: DisallowedIntents,
}


class ConnectionFailed(GatewayClosed):
    """An adapter gave up: the last attempts to connect all failed before READY.

    Raised by the adapters when ``max_failed_attempts`` connections in a row
    ended with a protocol failure before the session started (the gateway
    closed right after the upgrade or after IDENTIFY, sent data we could not
    decode, refused the upgrade, or sent no HELLO/READY in time). Network
    outages never count: they are retried for ever. ``causes`` has one line
    per failed attempt, oldest first; ``code`` is the last close code (1006
    when the last attempt ended without a close frame).
    """

    causes: tuple[str, ...]

    def __init__(self, causes: tuple[str, ...], code: int = 1006) -> None:
        GatewayError.__init__(
            self,
            f"gave up after {len(causes)} failed attempts to start a session "
            f"(last: {causes[-1] if causes else 'unknown'}); check the token, the "
            "URL and the options, or raise max_failed_attempts",
        )
        self.code = code
        self.reason = causes[-1] if causes else None
        self.causes = causes


def fatal_close_error(
    code: int, reason: str | None = None, *, intents: int | None = None
) -> GatewayClosed:
    """The exception that names a fatal close code (``intents``: what IDENTIFY asked for)."""
    from .opcodes import close_policy

    meaning = close_policy(code).meaning
    if code == 4014:
        return DisallowedIntents(code, reason, meaning, intents=intents)
    return _FATAL_ERRORS.get(code, GatewayClosed)(code, reason, meaning)


class ConnectionRejected(GatewayError):
    """The gateway refused the WebSocket upgrade with an HTTP response.

    Keep receiving to get the body as :class:`RejectedConnectionData`, or
    give up on this socket and call ``reconnect()``.
    """

    code: int
    headers: list[tuple[bytes, bytes]]

    def __init__(self, event: RejectConnection) -> None:
        super().__init__(
            f"Discord rejected the WebSocket connection - Error code {event.status_code}"
        )
        self.code = event.status_code
        self.headers = list(event.headers)


class RejectedConnectionData(GatewayError):
    """The whole HTTP body of a rejected upgrade has been received."""

    data: bytes

    def __init__(self, data: bytes) -> None:
        super().__init__("Complete HTTP response body for rejected WebSocket connection")
        self.data = data
