"""A client core and the local gateway wired in memory, in virtual time.

``MemoryLink`` is the smallest honest driver of ``DiscordConnection`` against
``discord_gateway.testing.GatewayServer``: it identifies or resumes on HELLO,
writes whatever either side produces, runs both sides' timers, and reconnects
when the client says the WebSocket is gone. It records what the scenarios and
the fuzz corpus recorder look at: the client's events and the close codes it
sent, and per connection the URL, the upgrade request and the bytes the client
read. ``tests/test_integration_memory.py`` and ``tests/fuzz/make_corpus.py``
build on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from discord_gateway import (
    CloseDiscordConnection,
    DiscordConnection,
    Event,
    Hello,
    RemoteProtocolError,
)
from discord_gateway.testing import (
    DEFAULT_TOKEN,
    ConnectionFaults,
    ConnectionState,
    GatewayServer,
    SessionStore,
)

#: GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES: the scenarios push MESSAGE_CREATEs
#: without a guild_id (DMs), and the local gateway filters by intents as Discord does.
_INTENTS = 4609


class MemoryLink:
    def __init__(
        self,
        store: SessionStore,
        *,
        token: str = DEFAULT_TOKEN,
        faults: Callable[[int], ConnectionFaults | None] = lambda n: None,
        **client_kwargs: Any,
    ) -> None:
        self.store = store
        self.token = token
        self.faults = faults
        self.now = 0.0
        self.client = DiscordConnection(
            store.config.url, rng=random.Random(7), clock=lambda: self.now, **client_kwargs
        )
        self.events: list[Event] = []
        self.closes: list[int | None] = []  # the code of each close the client sent
        self.garbage: list[str] = []  # RemoteProtocolError messages
        self.servers: list[GatewayServer] = []
        self.server: GatewayServer | None = None
        self.reconnect_at: float | None = None
        # per connection: its URL, the client's upgrade request, the bytes the client read
        self.targets: list[str] = []
        self.requests: list[bytes] = []
        self.streams: list[bytearray] = []
        self.open()

    # -- wiring --------------------------------------------------------------

    def open(self) -> None:
        self.reconnect_at = None
        self.server = GatewayServer(
            self.store, now=self.now, faults=self.faults(len(self.servers) + 1)
        )
        self.servers.append(self.server)
        self.targets.append(self.client.url)
        self.streams.append(bytearray())
        request = self.client.connect()
        self.requests.append(request)
        self.to_server(request)
        self.pump()

    def to_server(self, data: bytes) -> None:
        assert self.server is not None
        self.server.receive_data(data, self.now)

    def to_client(self, data: bytes | None) -> None:
        if data:
            self.streams[-1] += data
        try:
            out = self.client.receive(data, self.now)
        except CloseDiscordConnection as closed:
            self.socket_gone(closed)
            return
        except RemoteProtocolError as garbage:  # the client is closing with 4000
            out = [garbage.data]
            self.garbage.append(str(garbage))
        for chunk in out:
            self.to_server(chunk)
        self.react()

    def socket_gone(self, closed: CloseDiscordConnection) -> None:
        server = self.server
        assert server is not None
        if closed.data:
            server.receive_data(closed.data, self.now)
        server.receive_data(None, self.now)  # we drop the socket
        self.closes.append(closed.code)
        self.server = None
        self.react()
        if self.client.should_reconnect():
            self.reconnect_at = self.now + self.client.reconnect()

    def react(self) -> None:
        for event in self.client.events():
            self.events.append(event)
            if isinstance(event, Hello):
                if self.client.should_resume:
                    self.to_server(self.client.resume(self.token))
                else:
                    self.to_server(self.client.identify(token=self.token, intents=_INTENTS))

    def pump(self) -> None:
        """Deliver server output until both sides are quiet."""
        while self.server is not None:
            server = self.server
            chunks = server.data_to_send()
            for chunk in chunks:
                if self.server is server:
                    self.to_client(chunk)
            if self.server is not server:
                continue
            if server.aborted or (not chunks and server.state is ConnectionState.CLOSED):
                self.to_client(None)  # the server dropped TCP
                continue
            if not chunks:
                return

    def advance(self, until: float) -> None:
        """Run both sides' timers (and reconnects) up to ``until``."""
        while True:
            deadlines = [
                t
                for t in (
                    self.client.next_deadline() if self.server is not None else None,
                    self.server.next_deadline() if self.server is not None else None,
                    self.reconnect_at,
                )
                if t is not None
            ]
            when = min(deadlines, default=None)
            if when is None or when > until:
                self.now = until
                return
            self.now = max(self.now, when)
            if self.reconnect_at is not None and self.now >= self.reconnect_at:
                self.open()
                continue
            assert self.server is not None
            self.server.handle_timer(self.now)
            if self.server is not None:
                try:
                    out = self.client.handle_timer(self.now)
                except CloseDiscordConnection as closed:
                    self.socket_gone(closed)
                    continue
                for chunk in out:
                    self.to_server(chunk)
            self.pump()

    def inject(self, fault: Any) -> None:
        """A fault on the current connection, now."""
        assert self.server is not None
        self.server.inject(fault, self.now)
        self.pump()
