"""What every adapter shares and that involves no I/O.

The adapters are thin loops: read bytes, feed the core, write what it
returns, wait until the core's next deadline. Deciding *what* to send (IDENTIFY
or RESUME after HELLO), building the connection from the user's options and
naming fatal errors happen here, once, for all of them.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import certifi

from ..connection import DiscordConnection
from ..errors import (
    CloseDiscordConnection,
    ConnectionRejected,
    GatewayClosed,
    RejectedConnectionData,
    RemoteProtocolError,
    fatal_close_error,
)
from ..events import Event, Hello
from ..fsm import State

__all__ = ("ShardOptions", "Step", "default_ssl_context", "step", "stop_error")

LOG = logging.getLogger("discord_gateway")
#: How many bytes one read asks for.
READ_SIZE = 65536
DEFAULT_URL = "wss://gateway.discord.gg"


def default_ssl_context() -> ssl.SSLContext:
    """TLS with certifi's CA bundle."""
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True)
class ShardOptions:
    """Everything a shard needs to connect. The token never appears in a repr."""

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

    def new_connection(self) -> DiscordConnection:
        return DiscordConnection(
            self.url,
            encoding=self.encoding,
            compress=self.compress,
            dispatch_handled=self.dispatch_handled,
            hello_timeout=self.hello_timeout,
            close_timeout=self.close_timeout,
            rng=self.rng,
        )

    def tls(self, conn: DiscordConnection) -> ssl.SSLContext | None:
        if not conn.secure:
            return None
        return self.ssl_context if self.ssl_context is not None else default_ssl_context()

    def greeting(self, conn: DiscordConnection, now: float) -> bytes:
        """What to send after HELLO: RESUME if the session survives, else IDENTIFY."""
        del now
        if conn.should_resume:
            return conn.resume(self.token)
        return conn.identify(
            token=self.token,
            intents=self.intents,
            properties=self.properties,
            shard=self.shard,
            presence=self.presence,
            large_threshold=self.large_threshold,
        )


def stop_error(conn: DiscordConnection) -> GatewayClosed | None:
    """The exception to raise to the user when the connection ended for good."""
    if conn.state is State.CLOSED and conn.fatal_close_code is not None:
        return fatal_close_error(conn.fatal_close_code)
    return None


@dataclass(slots=True)
class Step:
    """What one core call asks of a loop.

    ``out``: bytes to write, in order. ``events``: to hand to the user.
    ``alive``: False once this socket is finished (close it, go back to the
    recovery loop).
    """

    out: list[bytes]
    events: list[Event]
    alive: bool
    #: HELLO arrived but IDENTIFY must wait for its turn (``gate_identify``).
    identify_due: bool = False


def step(
    options: ShardOptions,
    conn: DiscordConnection,
    call: Callable[[float], list[bytes]],
    now: float,
    *,
    gate_identify: bool = False,
) -> Step:
    """Run one core call at ``now`` the way every adapter must.

    ``CloseDiscordConnection``: write its data, then drop the socket.
    ``RemoteProtocolError``: write its data (the close frame) and keep reading,
    the core is closing. A rejected upgrade: drop the socket and retry. Any
    other ``GatewayError`` is a bug or bad options and propagates. After HELLO
    the greeting (RESUME or IDENTIFY) goes out behind whatever the call wrote;
    with ``gate_identify`` an IDENTIFY is left to the caller (``identify_due``),
    which sends it when the identify scheduler allows (spec 21).
    """
    out: list[bytes] = []
    alive = True
    try:
        out.extend(call(now))
    except CloseDiscordConnection as closed:
        if closed.data:
            out.append(closed.data)
        alive = False
    except RemoteProtocolError as err:
        LOG.warning("the gateway sent bad data: %s", err)
        out.append(err.data)
    except (ConnectionRejected, RejectedConnectionData) as err:
        LOG.warning("%s", err)
        alive = False
    events: list[Event] = []
    identify_due = False
    for event in conn.events():
        if isinstance(event, Hello):
            if gate_identify and not conn.should_resume:
                identify_due = True
            else:
                out.append(options.greeting(conn, now))
        events.append(event)
    if conn.state in (State.RECONNECTING, State.CLOSED):
        alive = False
    return Step([chunk for chunk in out if chunk], events, alive, identify_due)
