"""A deliberately dumb gateway client for the server tests: raw wsproto + our Codec.

It sends exactly what a test tells it to (so tests can break Discord's rules)
and records everything it receives. It talks to a ``GatewayServer`` in memory.
"""

from __future__ import annotations

from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from discord_gateway.codec import Codec, json_dumps
from discord_gateway.testing import DEFAULT_TOKEN, GatewayServer, SessionStore

IDENTIFY: dict[str, Any] = {
    "token": DEFAULT_TOKEN,
    # GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES: tests push MESSAGE_CREATE with and
    # without a guild_id (the local gateway filters by intents, as Discord does).
    "intents": 4609,
    "properties": {"os": "linux", "browser": "test", "device": "test"},
}


class FakeClient:
    def __init__(
        self,
        store: SessionStore,
        *,
        now: float = 0.0,
        query: str = "v=10&encoding=json",
        encoding: str = "json",
        compress: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        decode: bool = True,
        **server_kwargs: Any,
    ) -> None:
        self.server = GatewayServer(store, now=now, **server_kwargs)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.codec = Codec(encoding, compress, 16 * 1024 * 1024)
        self.encoding = encoding
        self.payloads: list[dict[str, Any]] = []
        self.accepted = False
        self.rejected: RejectConnection | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.binary_messages = 0
        self.decode = decode  # False: only record ``messages`` (no Codec)
        self.messages: list[str | bytes] = []  # the last frame of every message, raw
        self.unfinished_frames = 0  # frames that did not end their message
        self.now = now
        request = Request(host="127.0.0.1", target="/?" + query, extra_headers=headers or [])
        self.server.receive_data(self.ws.send(request), now)
        self.pump()

    # -- driving -------------------------------------------------------------

    def pump(self) -> None:
        """Move bytes server -> client (and the client's automatic replies back)."""
        while True:
            chunks = self.server.data_to_send()
            if not chunks:
                return
            for chunk in chunks:
                self.ws.receive_data(chunk)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.accepted = True
                elif isinstance(event, RejectConnection):
                    self.rejected = event
                elif isinstance(event, (TextMessage, BytesMessage)):
                    if not event.message_finished:
                        self.unfinished_frames += 1
                    else:
                        data = event.data
                        self.messages.append(data if isinstance(data, str) else bytes(data))
                    if not self.decode:
                        continue
                    if isinstance(event, TextMessage):
                        self._got(self.codec.text(event.data, event.message_finished))
                    else:
                        self.binary_messages += event.message_finished
                        self._got(self.codec.binary(bytes(event.data), event.message_finished))
                elif isinstance(event, CloseConnection):
                    self.close_code, self.close_reason = event.code, event.reason
                    if self.ws.state is WsState.REMOTE_CLOSING:  # not the echo of ours
                        self.server.receive_data(self.ws.send(event.response()), self.now)

    def _got(self, payload: Any) -> None:
        if payload is not None:
            self.payloads.append(payload)

    def send(self, payload: Any, now: float | None = None) -> None:
        if self.encoding == "etf":
            import erlpack

            self.send_raw(erlpack.pack(payload), now)
        else:
            self.send_raw(json_dumps(payload).decode(), now)

    def send_raw(self, data: str | bytes, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        self.server.receive_data(self.ws.send(event), self.now)
        self.pump()

    def op(self, op: int, d: Any, now: float | None = None) -> None:
        self.send({"op": op, "d": d}, now)

    def identify(self, now: float | None = None, **changes: Any) -> None:
        d = {**IDENTIFY, **changes}
        self.op(2, {k: v for k, v in d.items() if v is not None}, now)

    def resume(self, session_id: str, seq: int | None, now: float | None = None) -> None:
        self.op(6, {"token": DEFAULT_TOKEN, "session_id": session_id, "seq": seq}, now)

    def timer(self, now: float) -> None:
        self.now = now
        self.server.handle_timer(now)
        self.pump()

    def close(self, code: int) -> None:
        self.server.receive_data(self.ws.send(CloseConnection(code)), self.now)
        self.pump()

    def drop(self) -> None:
        self.server.receive_data(None, self.now)

    # -- reading -------------------------------------------------------------

    def ops(self) -> list[int]:
        return [p["op"] for p in self.payloads]

    def dispatches(self) -> list[tuple[int, str]]:
        return [(p["s"], p["t"]) for p in self.payloads if p["op"] == 0]

    def last(self, op: int) -> dict[str, Any]:
        return [p for p in self.payloads if p["op"] == op][-1]

    def ready(self) -> dict[str, Any]:
        return next(p["d"] for p in self.payloads if p.get("t") == "READY")
