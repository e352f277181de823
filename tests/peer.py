"""A tiny gateway *peer* for the core's unit tests: wsproto's real server side.

It only frames and compresses what a test tells it to send, and decodes what
the client sent; the rules of a real gateway live in ``discord_gateway.testing``.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Request,
    TextMessage,
)

from discord_gateway import CloseDiscordConnection, DiscordConnection

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Peer:
    """The server end of one WebSocket."""

    def __init__(self, compress: str | None = None) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.compress = compress
        self._deflate = zlib.compressobj()
        self.request: Request | None = None
        self.received: list[Any] = []  # decoded client payloads, and ("close", code)
        self._text: list[str] = []

    def accept(self, upgrade: bytes) -> bytes:
        self.ws.receive_data(upgrade)
        for event in self.ws.events():
            assert isinstance(event, Request), event
            self.request = event
        return self.ws.send(AcceptConnection())

    def send(self, payload: dict[str, Any] | bytes | str) -> bytes:
        """Frame ``payload`` (a dict is JSON-encoded and compressed as configured)."""
        if isinstance(payload, dict):
            raw = json.dumps(payload).encode()
            if self.compress == "zlib-stream":
                data = self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
                return self.ws.send(BytesMessage(data))
            return self.ws.send(TextMessage(raw.decode()))
        if isinstance(payload, str):
            return self.ws.send(TextMessage(payload))
        return self.ws.send(BytesMessage(payload))

    def close(self, code: int, reason: str = "") -> bytes:
        return self.ws.send(CloseConnection(code, reason))

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the client; return what the server answers (close replies)."""
        out = b""
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Message):
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        self.received.append(json.loads("".join(self._text)))
                        self._text.clear()
            elif isinstance(event, CloseConnection):
                self.received.append(("close", event.code))
                if self.ws.state.name == "REMOTE_CLOSING":
                    out += self.ws.send(event.response())
        return out

    def ops(self) -> list[Any]:
        return [p["op"] if isinstance(p, dict) else p for p in self.received]


def feed(
    conn: DiscordConnection, data: bytes, *, now: float = 0.0, split: int | None = None
) -> list[bytes]:
    """Give ``data`` to the client, whole or ``split`` bytes at a time (h11's ``tr()``)."""
    if split is None:
        return conn.receive(data, now=now)
    out: list[bytes] = []
    for i in range(0, len(data), split):
        out += conn.receive(data[i : i + split], now=now)
    return out


class Link:
    """A client wired to a Peer, for tests that walk through a lifecycle."""

    def __init__(
        self,
        conn: DiscordConnection | None = None,
        *,
        compress: str | None = None,
        split: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.conn = conn or DiscordConnection(
            "wss://gateway.discord.gg", compress=compress, rng=random.Random(0), **kwargs
        )
        self.split = split
        self.peer = Peer(compress=self.conn.transport_compression)
        self.now = 0.0
        self.closed: CloseDiscordConnection | None = None
        self.peer_replies = b""
        feed(
            self.conn, self.peer.accept(self.conn.connect(now=self.now)), now=self.now, split=split
        )

    def server(self, *payloads: dict[str, Any] | bytes | str) -> list[bytes]:
        """Send payloads from the server; pass the client's answers back to the peer."""
        data = b"".join(self.peer.send(p) for p in payloads)
        return self.deliver(data)

    def deliver(self, data: bytes) -> list[bytes]:
        try:
            out = feed(self.conn, data, now=self.now, split=self.split)
        except CloseDiscordConnection as exc:
            self.closed = exc
            if exc.data:
                self.peer.feed(exc.data)
            return []
        for chunk in out:
            self.peer_replies += self.peer.feed(chunk)
        return out

    def client(self, data: bytes) -> None:
        """Bytes the client produced: give them to the peer, and its answers back."""
        reply = self.peer.feed(data)
        if reply:
            self.deliver(reply)

    def hello(self, interval_ms: int = 41250) -> None:
        self.server({"op": 10, "d": {"heartbeat_interval": interval_ms}})

    def ready(
        self,
        session_id: str = "abc",
        seq: int = 1,
        url: str = "wss://gateway-us-east1-c.discord.gg",
    ) -> None:
        self.server(
            {
                "op": 0,
                "s": seq,
                "t": "READY",
                "d": {"session_id": session_id, "resume_gateway_url": url, "v": 10},
            }
        )

    def dispatch(self, seq: int, name: str = "MESSAGE_CREATE", data: Any = None) -> None:
        self.server({"op": 0, "s": seq, "t": name, "d": data if data is not None else {"n": seq}})

    def identify(self) -> None:
        self.client(self.conn.identify(token="t0ken", intents=513, now=self.now))

    def events(self) -> list[Any]:
        return list(self.conn.events())


def hello_link(**kwargs: Any) -> Link:
    """A client that has read HELLO (interval 41.25 s)."""
    link = Link(**kwargs)
    link.hello()
    return link


def ready_link(**kwargs: Any) -> Link:
    """A client with a session: HELLO, IDENTIFY, READY (s=1) read, events not drained."""
    link = hello_link(**kwargs)
    link.identify()
    link.ready()
    return link


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """``(opcode, unmasked payload)`` of each client frame in ``data`` (RFC 6455 5.2).

    Fails unless ``data`` is whole frames and nothing else: wsproto's server
    stops reading at the close frame and never looks at what follows it.
    """
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        opcode, masked, size = data[i] & 0x0F, data[i + 1] & 0x80, data[i + 1] & 0x7F
        assert masked, "client frames are masked"
        i += 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, i = int.from_bytes(data[i : i + width], "big"), i + width
        mask, i = data[i : i + 4], i + 4
        payload = bytes(b ^ mask[k % 4] for k, b in enumerate(data[i : i + size]))
        assert len(payload) == size, "a truncated frame"
        frames.append((opcode, payload))
        i += size
    return frames


def split_points(data: bytes) -> Iterable[tuple[bytes, bytes]]:
    for i in range(len(data) + 1):
        yield data[:i], data[i:]


Feeder = Callable[[DiscordConnection, bytes], list[bytes]]
