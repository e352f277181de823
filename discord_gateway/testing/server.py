"""A sans-I/O Discord gateway *server*: the other side of ``DiscordConnection``.

Theory of operation
-------------------
Two objects, because Discord sessions outlive connections:

* :class:`~.sessions.SessionStore` (in :mod:`.sessions`, re-exported here)
  holds the sessions (id, token, intents, shard, the seq counter and the log
  of sent dispatches for RESUME replays, and when a detached session expires).
  It is shared by every connection of one server, and it is where tests push
  dispatches (:meth:`~.sessions.SessionStore.dispatch`).
* :class:`GatewayServer`, this module, is one TCP connection, server side: it
  parses the first HTTP request (a WebSocket upgrade, or a ``GET
  /api/v10/gateway``; the head's limits and checks are in :mod:`.http`), then
  speaks the gateway over wsproto. Like wsproto and the client core it does no
  I/O and reads no clock: feed it bytes with ``receive_data(data, now)``
  (``None`` = the transport was lost), write what ``data_to_send()`` returns,
  and call ``handle_timer(now)`` at ``next_deadline()``. Its configuration
  (:class:`ServerConfig`, in :mod:`._config`) is re-exported here.

It enforces Discord's rules the way Discord does (checklist sections D, F, H,
K); each check cites its spec item. Misbehaviour on purpose is in
:mod:`.faults` (what goes wrong on one connection, when) and :mod:`.profiles`
(how a whole server differs from Discord, the way real servers do).
"""

from __future__ import annotations

import contextlib
import logging
import random
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qs

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from ..codec import ZLIB_SUFFIX, json_dumps, json_loads
from ..opcodes import CloseCode, Opcode, close_policy
from . import faults as _f
from . import http as _http
from ._config import DEFAULT_TOKEN, PRIVILEGED_INTENTS, ConnectionState, ServerConfig
from .profiles import PRE_READY_EVENT, Deviations
from .sessions import Session, SessionStore

__all__ = (
    "DEFAULT_TOKEN",
    "KNOWN_INTENTS",
    "PRIVILEGED_INTENTS",
    "ConnectionState",
    "GatewayServer",
    "Received",
    "ServerConfig",
    "Session",
    "SessionStore",
)

logger = logging.getLogger("discord_gateway.testing")

#: Every intent bit Discord defines today; any other bit is "invalid" (4013).
KNOWN_INTENTS = sum(1 << bit for bit in (*range(17), 20, 21, 24, 25))

#: Opcodes a client may send (protocol G).
_CLIENT_OPS = frozenset(
    {
        Opcode.HEARTBEAT,
        Opcode.IDENTIFY,
        Opcode.PRESENCE_UPDATE,
        Opcode.VOICE_STATE_UPDATE,
        Opcode.RESUME,
        Opcode.REQUEST_GUILD_MEMBERS,
        Opcode.REQUEST_SOUNDBOARD_SOUNDS,
        Opcode.REQUEST_CHANNEL_INFO,
    }
)
#: What may be sent before IDENTIFY/RESUME succeeded (protocol 18).
_UNAUTHENTICATED_OPS = frozenset({Opcode.HEARTBEAT, Opcode.IDENTIFY, Opcode.RESUME})

#: Snowflakes are unsigned 64-bit integers, sent as strings (ints accepted too).
_MAX_SNOWFLAKE = (1 << 64) - 1
_STATUSES = frozenset({"online", "dnd", "idle", "invisible", "offline"})


@dataclass(frozen=True, slots=True)
class Received:
    """One payload a client sent: ``op``, ``d`` and when (``now`` at receipt)."""

    op: int
    data: Any
    at: float


_NOTHING: deque[float] = deque(maxlen=0)
_SPENT_RNG = random.Random(0)


class _Closed(Exception):
    """Internal: a rule was broken and the connection is now closing."""


class _CloseScanner:
    """Client frames after a WebSocket protocol error: wsproto's parser is spent.

    Skips every frame's payload without keeping it and reports the client's close
    frame, so we neither buffer what a broken client sends (the header bytes of one
    frame at most) nor miss a well-behaved client's answer to our close.
    """

    def __init__(self) -> None:
        self._head = b""
        self._skip = 0

    def feed(self, data: bytes) -> bool:
        """Whether ``data`` holds the start of a close frame."""
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            head = self._head + bytes(view[:14])
            if len(head) < 2:
                self._head = head
                return False
            if head[0] & 0x0F == 0x8:
                return True
            length = head[1] & 0x7F
            extra = {126: 2, 127: 8}.get(length, 0)
            size = 2 + extra + (4 if head[1] & 0x80 else 0)
            if len(head) < size:
                self._head = head
                return False
            if extra:
                length = int.from_bytes(head[2 : 2 + extra], "big")
            view = view[size - len(self._head) :]
            self._head = b""
            self._skip = length
        return False


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_snowflake(value: Any) -> bool:
    """Discord ids: unsigned 64-bit, as a decimal string (ints are accepted too)."""
    if isinstance(value, str):
        return (
            value.isascii()
            and value.isdigit()
            and len(value) <= 20
            and int(value) <= _MAX_SNOWFLAKE
        )
    return _is_int(value) and 0 <= value <= _MAX_SNOWFLAKE


def _valid_presence(d: Any) -> bool:
    """op 3: ``since`` (int or null), ``activities`` (list of objects), ``status``, ``afk``."""
    return (
        isinstance(d, dict)
        and (d.get("since") is None or (_is_int(d["since"]) and 0 <= d["since"] < 1 << 53))
        and isinstance(d.get("activities"), list)
        and all(isinstance(a, dict) for a in d["activities"])
        and d.get("status") in _STATUSES
        and isinstance(d.get("afk"), bool)
    )


def _valid_voice_state(d: Any) -> bool:
    """op 4: ``guild_id``, ``channel_id`` (or null), ``self_mute``, ``self_deaf``."""
    return (
        isinstance(d, dict)
        and _is_snowflake(d.get("guild_id"))
        and (d.get("channel_id") is None or _is_snowflake(d["channel_id"]))
        and isinstance(d.get("self_mute"), bool)
        and isinstance(d.get("self_deaf"), bool)
    )


def _valid_request_members(d: Any) -> bool:
    """op 8: ``guild_id``; ``query`` + ``limit`` or ``user_ids``; ``nonce`` up to 32 bytes."""
    if not isinstance(d, dict) or not _is_snowflake(d.get("guild_id")):
        return False
    user_ids = d.get("user_ids")
    if user_ids is not None and not (
        _is_snowflake(user_ids)
        or (
            isinstance(user_ids, list)
            and len(user_ids) <= 100
            and all(map(_is_snowflake, user_ids))
        )
    ):
        return False
    if "query" in d and not _is_text(d["query"], 100):
        return False
    if "limit" in d and not (_is_int(d["limit"]) and 0 <= d["limit"] <= 100):
        return False
    if user_ids is None and not ("query" in d and "limit" in d):
        return False
    if "presences" in d and not isinstance(d["presences"], bool):
        return False
    return "nonce" not in d or (_is_text(d["nonce"], 32) and len(d["nonce"].encode()) <= 32)


def _is_text(value: Any, max_length: int) -> bool:
    """A string we can echo in JSON and ETF (no lone surrogate), of bounded length."""
    if not isinstance(value, str) or len(value) > max_length:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class GatewayServer:
    """One client connection, server side. See the module docstring.

    Public record for tests: ``received`` (every payload the client sent),
    ``sent`` (every payload written), ``close_code``/``close_reason`` (of the
    close frame either side sent first), ``closed_by`` (``"client"``,
    ``"server"`` or ``"transport"``), ``aborted`` (drop TCP now, no close
    frame), ``session``, ``state``, ``version``/``encoding``/``compress`` and
    ``target`` (the request target), ``headers`` (the upgrade request's).
    ``deviations`` defaults to the store's.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        now: float,
        faults: _f.ConnectionFaults | None = None,
        deviations: Deviations | None = None,
    ) -> None:
        self.store = store
        self.faults = faults or _f.ConnectionFaults()
        self.deviations = store.deviations if deviations is None else deviations
        self.index = store._register(self)
        self.rng = store.connection_rng(self.index)
        self.opened_at = now
        self._state = ConnectionState.HANDSHAKE
        self.received: list[Received] = []
        self.sent: list[dict[str, Any]] = []
        self.session: Session | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: str | None = None
        self.aborted = False
        self.stalled = False
        self.target: str | None = None
        self.headers: dict[str, str] = {}
        self.version: int | None = None
        self.encoding = "json"
        self.compress: str | None = None
        self.payload_compression = False
        self.heartbeats = 0
        self.dispatches_sent = 0
        self._now = now
        self._ws = WSConnection(ConnectionType.SERVER)
        self._http_head = b""
        self._upgrading = False  # the request head went to wsproto
        self._out: list[bytes] = []
        self._message: list[str | bytes] = []
        self._message_size = 0
        self._compressor: Any = None
        self._heartbeat_deadline: float | None = None
        self._close_deadline: float | None = None
        self._pending_acks: deque[float] = deque()
        self._command_times: deque[float] = deque()
        self._script = list(self.faults.script)
        self._handshake_deadline = now + store.config.handshake_timeout
        self._scanner: _CloseScanner | None = None  # after a WebSocket protocol error

    @property
    def state(self) -> ConnectionState:
        return self._state

    @state.setter
    def state(self, state: ConnectionState) -> None:
        if state is ConnectionState.CLOSED and self._state is not ConnectionState.CLOSED:
            self._release()
        self._state = state

    def _release(self) -> None:
        """Closed: let go of everything but the record (``_out`` is still to be written)."""
        self._compressor = None
        self._message, self._message_size = [], 0
        self._http_head = b""
        self._scanner = None
        # Shared, and inert: a deque with maxlen 0 keeps nothing, nothing draws
        # from a closed connection's randomness.
        self._pending_acks = self._command_times = _NOTHING
        self.rng = _SPENT_RNG
        self._script.clear()
        self._heartbeat_deadline = self._close_deadline = None
        self.store._forget(self)

    def __repr__(self) -> str:
        return f"<GatewayServer #{self.index} {self.state.value}>"

    def _stopped(self) -> bool:
        return self.state is ConnectionState.CLOSED or self.stalled

    @property
    def config(self) -> ServerConfig:
        return self.store.config

    # -- I/O boundary ------------------------------------------------------------

    def receive_data(self, data: bytes | None, now: float) -> None:
        """Feed bytes read from the socket; ``None`` or ``b""`` means it was closed."""
        self._now = now
        if self.state is ConnectionState.CLOSED:
            return
        if not data:
            self._lost(now)
            return
        if self.stalled:
            return  # a stalled connection reads nothing (it only notices EOF)
        if self._scanner is not None:
            if self._scanner.feed(data):  # the client answered our close frame
                self.state = ConnectionState.CLOSED
            return
        try:
            if self.state is ConnectionState.HANDSHAKE and not self._upgrading:
                data = self._read_http_head(data)
                if not data:
                    return
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._handle_ws_event(event, now)
                if self._stopped() or self._scanner is not None:
                    break
        except _Closed:
            pass
        except WsRemoteProtocolError as exc:
            self._protocol_error(str(exc), now)
        except Exception as exc:  # a bug of ours: one ERROR line, the server goes on
            where = traceback.extract_tb(exc.__traceback__)[-1]
            logger.error(
                "connection #%d: internal error on client input: %r at %s:%d",
                self.index,
                exc,
                where.filename,
                where.lineno,
            )
            self._abort(now)

    def data_to_send(self) -> list[bytes]:
        """Bytes to write, as chunks to write one by one (several only with ``split_writes``)."""
        if not self._out:
            return []
        data = b"".join(self._out)
        self._out.clear()
        if not self.faults.split_writes or len(data) < 2:
            return [data]
        cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, 3)))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must run next (``None``: nothing scheduled)."""
        if self.state is ConnectionState.CLOSED or self.stalled:
            return None
        if self.state is ConnectionState.CLOSING:
            return self._close_deadline
        if self.state is ConnectionState.HANDSHAKE:
            return self._handshake_deadline
        deadlines = [t for t in (self._heartbeat_deadline,) if t is not None]
        if self._pending_acks:  # sorted: the head leaves first
            deadlines.append(self._pending_acks[0])
        deadlines.extend(
            self.opened_at + trigger.seconds
            for trigger, _ in self._script
            if isinstance(trigger, _f.AtTime)
        )
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.store.expire(now)
        if self.state is ConnectionState.CLOSED or self.stalled:
            return
        if self.state is ConnectionState.CLOSING:
            if self._close_deadline is not None and now >= self._close_deadline:
                self._abort(now)  # the client never answered our close frame
            return
        if self.state is ConnectionState.HANDSHAKE:
            if now >= self._handshake_deadline:  # no (complete) request head in time
                logger.info("connection #%d: no upgrade request in time", self.index)
                self._http_reply(408, {"message": "408: Request Timeout", "code": 0})
            return
        try:
            while self._pending_acks and self._pending_acks[0] <= now:
                self._pending_acks.popleft()
                self._send({"op": Opcode.HEARTBEAT_ACK.value, "d": None, "s": None, "t": None})
            self._fire(
                lambda t: isinstance(t, _f.AtTime) and now >= self.opened_at + t.seconds, now
            )
            if self._heartbeat_deadline is not None and now >= self._heartbeat_deadline:
                # No heartbeat within interval + grace: the session timed out.
                self._close(self.config.heartbeat_timeout_close_code, "Session timed out", now)
        except _Closed:
            pass

    # -- control: tests, the asyncio adapter and faults ----------------------------

    def inject(self, fault: _f.Fault, now: float | None = None) -> None:
        """Do ``fault`` now (see :mod:`.faults`)."""
        now = self._now if now is None else now
        self._now = now
        with contextlib.suppress(_Closed):
            self._apply(fault, now)
        self.store._wake(self)

    def dispatch(self, name: str, data: Any) -> int | None:
        """Push a dispatch to this connection's session; its seq (None without a
        session, or when the session's intents do not cover it)."""
        if self.session is None:
            return None
        return self.store._append(self.session, name, data)

    def not_reading(self, unsent: int, now: float) -> None:
        """The I/O adapter could not write for too long: the client is a zombie, reset it."""
        if self.state is ConnectionState.CLOSED:
            return
        logger.warning(
            "connection #%d: the client stopped reading (%d bytes unsent): reset",
            self.index,
            unsent,
        )
        self._abort(now)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        self.inject(_f.Close(code, reason))

    # -- HTTP ----------------------------------------------------------------------

    # ---- HTTP request parsing: everything about the request head is here ----

    def _read_http_head(self, data: bytes) -> bytes:
        """Buffer the request head; hand it to wsproto if it is a valid upgrade, else answer.

        Bounded: the head (complete or not) is at most 16 KiB and 100 header
        lines (HTTP 431 beyond); a malformed request line or target gets 400,
        an upgrade that is not HTTP/1.1 ``GET`` with ``Connection: upgrade`` and
        a ``Sec-WebSocket-Key`` gets 400, one without ``Sec-WebSocket-Version:
        13`` gets 426 (RFC 6455 section 4.2.2). Other requests go to
        :meth:`_answer_http`.
        """
        head = self._http_head + data
        end = head.find(b"\r\n\r\n")
        if end > _http.MAX_HEAD or (end < 0 and len(head) > _http.MAX_HEAD):
            self._http_reply(431, {"message": "Request header fields too large", "code": 0})
            return b""
        if end < 0:
            self._http_head = head
            return b""
        self._http_head = b""
        lines = head[:end].decode("latin-1").split("\r\n")
        if len(lines) > _http.MAX_HEADERS + 1:
            self._http_reply(431, {"message": "Request header fields too large", "code": 0})
            return b""
        parts = lines[0].split(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                self._http_reply(400, {"message": "400: Bad Request", "code": 0})
                return b""
            headers[name.lower()] = value.strip()
        if (
            len(parts) != 3
            or not parts[2].startswith("HTTP/1.")
            or _http.split_target(parts[1]) is None
        ):
            self._http_reply(400, {"message": "400: Bad Request", "code": 0})
            return b""
        method, target, version = parts
        if headers.get("upgrade", "").lower() == "websocket":
            tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
            if method != "GET" or version == "HTTP/1.0" or "upgrade" not in tokens:
                self._http_reply(400, {"message": "400: Bad Request", "code": 0})
                return b""
            if headers.get("sec-websocket-version") != "13":
                self._http_reply(
                    426,
                    {"message": "426: Upgrade Required", "code": 0},
                    [("Sec-WebSocket-Version", "13")],
                )
                return b""
            if not head[:end].isascii() or not _http.idna_host(
                headers.get("host", "")
            ):  # wsproto would raise on these: non-ASCII bytes, a host that is not IDNA
                self._http_reply(400, {"message": "400: Bad Request", "code": 0})
                return b""
            if not headers.get("sec-websocket-key"):
                self._http_reply(400, {"message": "400: Bad Request", "code": 0})
                return b""
            self._upgrading = True
            return head
        self._answer_http(method, target, headers)
        return b""

    def _answer_http(self, method: str, target: str, headers: Mapping[str, str]) -> None:
        """``GET /api/v{n}/gateway`` and ``/gateway/bot`` (protocol 46)."""
        split = _http.split_target(target)
        assert split is not None  # checked by _read_http_head
        path = split[0].rstrip("/")
        segments = path.split("/")
        is_api = len(segments) >= 3 and segments[1] == "api"
        route = "/".join(segments[3:] if is_api and segments[2].startswith("v") else segments[2:])
        if not is_api or route not in ("gateway", "gateway/bot"):
            self._http_reply(404, {"message": "404: Not Found", "code": 0})
        elif method != "GET":
            self._http_reply(405, {"message": "405: Method Not Allowed", "code": 0})
        elif route == "gateway":
            self._http_reply(200, {"url": self.config.url})
        else:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme != "Bot" or token not in self.config.tokens:
                self._http_reply(401, {"message": "401: Unauthorized", "code": 0})
                return
            remaining = max(0, self.config.session_start_limit - self.store.identify_count)
            self._http_reply(
                200,
                {
                    "url": self.config.url,
                    "shards": self.config.recommended_shards,
                    "session_start_limit": {
                        "total": self.config.session_start_limit,
                        "remaining": remaining,
                        "reset_after": 86_400_000,
                        "max_concurrency": self.config.max_concurrency,
                    },
                },
            )
        logger.info("connection #%d: HTTP %s %s", self.index, method, target)

    def _http_reply(
        self, status: int, body: Any, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self._out.append(_http.response(status, body, headers))
        self.state = ConnectionState.CLOSED
        self.closed_by = "server"
        if status >= 400:
            logger.info("connection #%d: HTTP %d", self.index, status)

    # ---- end of HTTP request parsing ----

    # -- WebSocket events ------------------------------------------------------------

    def _handle_ws_event(self, event: Event, now: float) -> None:
        if isinstance(event, Request):
            self._accept(event, now)
        elif isinstance(event, (TextMessage, BytesMessage)):
            if self.state is ConnectionState.CLOSING:
                return  # in flight when we closed: Discord ignores it too
            chunk = event.data if isinstance(event.data, str) else bytes(event.data)
            self._on_message_chunk(chunk, event.message_finished, now)
        elif isinstance(event, CloseConnection):
            self._on_client_close(event, now)
        elif isinstance(event, Ping):
            # After our close frame wsproto refuses to send a Pong; the client's
            # Ping then goes unanswered (RFC 6455 5.5.1: close frames end it).
            with contextlib.suppress(WsLocalProtocolError):
                self._out.append(self._ws.send(event.response()))

    def _accept(self, request: Request, now: float) -> None:
        self.target = request.target
        self.headers = {
            bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
            for name, value in request.extra_headers
        }
        split = _http.split_target(request.target)
        assert split is not None  # checked by _read_http_head
        query = parse_qs(split[1])
        encoding = query.get("encoding", ["json"])[0]
        compress = query.get("compress", [None])[0]
        if encoding not in ("json", "etf") or compress not in (None, "zlib-stream", "zstd-stream"):
            # Our choice: refuse the upgrade so the mistake is visible at once.
            body = json_dumps({"message": f"invalid encoding/compress in {request.target}"})
            self._out.append(
                self._ws.send(
                    RejectConnection(
                        status_code=400,
                        headers=[(b"content-type", b"application/json")],
                        has_body=True,
                    )
                )
            )
            self._out.append(self._ws.send(RejectData(data=body)))
            self.state = ConnectionState.CLOSED
            self.closed_by = "server"
            logger.info("connection #%d: rejected upgrade %s", self.index, request.target)
            return
        self.encoding = encoding
        self.compress = compress
        if compress == "zlib-stream":
            self._compressor = zlib.compressobj()  # one context per connection (protocol 33)
        elif compress == "zstd-stream":
            import zstandard

            if self.deviations.zstd_frame_per_message:
                # Deviation: a whole frame per message (``.compress()``), not one
                # frame for the connection flushed per message (protocol 35).
                self._compressor = zstandard.ZstdCompressor()
            else:
                self._compressor = zstandard.ZstdCompressor().compressobj()
        self._out.append(self._ws.send(AcceptConnection()))
        self.state = ConnectionState.AWAITING_IDENTIFY
        logger.info(
            "connection #%d: upgraded %s (encoding=%s compress=%s)",
            self.index,
            request.target,
            encoding,
            compress,
        )
        if self.deviations.require_user_agent and not self.headers.get("user-agent"):
            # Deviation: Discord does not insist on a User-Agent on the upgrade.
            self._close(CloseCode.DECODE_ERROR, "A User-Agent header is required.", now)
        version_text = query.get("v", [str(self.config.default_version)])[0]
        short_number = version_text.isascii() and version_text.isdigit() and len(version_text) < 4
        version = int(version_text) if short_number else None
        if version not in self.config.versions:
            self._close(CloseCode.INVALID_API_VERSION, "Invalid API version", now)  # protocol 3
        self.version = version
        self._heartbeat_deadline = self._heartbeat_due(now)
        if self.faults.reconnect_instead_of_hello:
            self._apply(_f.SendReconnect(), now)  # protocol 16
            return
        self._send(
            {
                "op": Opcode.HELLO.value,
                "d": {
                    "heartbeat_interval": round(self.config.heartbeat_interval * 1000),
                    "_trace": ['["gateway-local",{"micros":0.0}]'],
                },
                "s": None,
                "t": None,
            }
        )
        self._fire(lambda t: isinstance(t, _f.AfterDispatches) and t.count == 0, now)

    def _on_message_chunk(self, chunk: str | bytes, finished: bool, now: float) -> None:
        size = len(chunk.encode()) if isinstance(chunk, str) else len(chunk)
        self._message_size += size
        if self._message_size > self.config.max_payload_size:
            # protocol 42: over 4096 encoded bytes is a decode error (nothing kept).
            self._message, self._message_size = [], 0
            self._close(CloseCode.DECODE_ERROR, "Error while decoding payload.", now)
        self._message.append(chunk)
        if not finished:
            return
        parts, self._message, self._message_size = self._message, [], 0
        if isinstance(parts[0], str):
            raw: str | bytes = "".join(p for p in parts if isinstance(p, str))
        else:
            raw = b"".join(p for p in parts if isinstance(p, bytes))
        self._on_payload(self._decode(raw, now), now)

    def _decode(self, raw: str | bytes, now: float) -> dict[str, Any]:
        payload: Any = None
        try:
            if self.encoding == "etf" and isinstance(raw, bytes):
                from .. import _etf

                # protocol 39: atom keys get 4002
                payload = _etf.loads(raw, reject_atom_keys=True)
            else:
                payload = json_loads(raw)
        except Exception:
            payload = None
        if not isinstance(payload, dict) or not _is_int(payload.get("op")):
            self._close(CloseCode.DECODE_ERROR, "Error while decoding payload.", now)
        assert isinstance(payload, dict)
        return payload

    def _on_payload(self, payload: dict[str, Any], now: float) -> None:
        op, data = payload["op"], payload.get("d")
        self.received.append(Received(op, data, now))
        if len(self.received) > 2 * self.config.record_limit:
            del self.received[: -self.config.record_limit]
        # protocol 41: 120 commands per connection per 60 s.
        window_start = now - self.config.rate_limit_window
        while self._command_times and self._command_times[0] <= window_start:
            self._command_times.popleft()
        self._command_times.append(now)
        if len(self._command_times) > self.config.rate_limit:
            self._close(CloseCode.RATE_LIMITED, "You are being rate limited.", now)
        if op not in _CLIENT_OPS:
            self._close(CloseCode.UNKNOWN_OPCODE, "Unknown opcode.", now)
        if self.session is None and op not in _UNAUTHENTICATED_OPS:
            self._close(CloseCode.NOT_AUTHENTICATED, "Not authenticated.", now)  # protocol 18
        if op == Opcode.HEARTBEAT:
            self._on_heartbeat(now)
        elif op in (Opcode.IDENTIFY, Opcode.RESUME):
            if self.session is not None:
                self._close(CloseCode.ALREADY_AUTHENTICATED, "Already authenticated.", now)
            if not isinstance(data, dict):
                self._close(CloseCode.DECODE_ERROR, "Error while decoding payload.", now)
            assert isinstance(data, dict)
            if op == Opcode.IDENTIFY:
                self._on_identify(data, now)
            else:
                self._on_resume(data, now)
        elif op == Opcode.PRESENCE_UPDATE:
            self._check(_valid_presence(data), now)
        elif op == Opcode.VOICE_STATE_UPDATE:
            self._check(_valid_voice_state(data), now)
        elif op == Opcode.REQUEST_GUILD_MEMBERS:
            # Validated before anything is echoed and stored in the replay log.
            self._check(_valid_request_members(data), now)
            assert isinstance(data, dict)
            # issue 16 hook: the world's members, ids as strings
            self.dispatch("GUILD_MEMBERS_CHUNK", self.store.world.members_chunk(data))
        else:  # other commands are only recorded
            self._check(isinstance(data, dict), now)

    def _check(self, valid: bool, now: float) -> None:
        """A command's ``d`` Discord would not accept: 4002, as Discord closes."""
        if not valid:
            self._close(CloseCode.DECODE_ERROR, "Error while decoding payload.", now)

    def _heartbeat_due(self, now: float) -> float:
        """A heartbeat must arrive within the interval plus some grace (protocol 10)."""
        return now + self.config.heartbeat_interval + self.config.heartbeat_grace

    def _on_heartbeat(self, now: float) -> None:
        self.heartbeats += 1
        self._heartbeat_deadline = self._heartbeat_due(now)
        drop = self.faults.drop_heartbeat_acks
        if drop and self.rng.random() < drop:
            pass
        elif self.faults.heartbeat_ack_delay:
            # ACKs leave in order (one stream): one held for 12 s holds back a
            # later one held for 1 s. Kept sorted, the head is the next deadline.
            due = now + self.faults.heartbeat_ack_delay
            pending = self._pending_acks
            pending.append(max(due, pending[-1]) if pending else due)
        else:
            self._send({"op": Opcode.HEARTBEAT_ACK.value, "d": None, "s": None, "t": None})
        count = self.heartbeats
        self._fire(lambda t: isinstance(t, _f.OnHeartbeat) and t.count == count, now)

    def _bad_token_code(self) -> int:
        if self.deviations.bad_token_closes_4000:
            return CloseCode.UNKNOWN_ERROR  # deviation: Discord closes 4004
        return CloseCode.AUTHENTICATION_FAILED

    def _on_identify(self, d: dict[str, Any], now: float) -> None:
        config = self.config
        token = d.get("token")
        if isinstance(token, str) and token.startswith("Bot "):
            token = token[4:]
        if not isinstance(token, str) or token not in config.tokens:
            self._close(self._bad_token_code(), "Authentication failed.", now)
        assert isinstance(token, str)
        properties = d.get("properties")
        if not isinstance(properties, dict) or not all(
            isinstance(properties.get(key), str) for key in ("os", "browser", "device")
        ):  # protocol 17
            self._close(CloseCode.DECODE_ERROR, "Invalid identify properties.", now)
        large_threshold = d.get("large_threshold", 50)
        if not (_is_int(large_threshold) and 50 <= large_threshold <= 250):
            self._close(CloseCode.DECODE_ERROR, "Invalid large_threshold.", now)
        if not isinstance(d.get("compress", False), bool):
            self._close(CloseCode.DECODE_ERROR, "Invalid compress.", now)
        shard = self._check_shard(d.get("shard"), now)
        intents = d.get("intents")
        if not _is_int(intents) or intents < 0 or intents & ~KNOWN_INTENTS:
            self._close(CloseCode.INVALID_INTENTS, "Invalid intent(s).", now)  # protocol 19
        assert isinstance(intents, int)
        if intents & PRIVILEGED_INTENTS & ~config.allowed_intents:
            self._close(CloseCode.DISALLOWED_INTENTS, "Disallowed intent(s).", now)
        limit = config.session_start_limit
        if config.enforce_session_start_limit and self.store.identify_count >= limit:
            # Discord resets the token of a bot over its daily session starts.
            logger.warning(
                "connection #%d: IDENTIFY refused: all %d session starts are spent",
                self.index,
                limit,
            )
            self._close(CloseCode.AUTHENTICATION_FAILED, "Session start limit reached.", now)
        if not self.store.identify_allowed(shard, now):
            # protocol 21, 29: over the identify concurrency limit: op 9 d:false.
            logger.info(
                "connection #%d: IDENTIFY within 5 s of the last one in its bucket: op 9",
                self.index,
            )
            self._send({"op": Opcode.INVALID_SESSION.value, "d": False, "s": None, "t": None})
            return
        if d.get("compress") and self.compress is None and self.encoding == "json":
            self.payload_compression = True  # protocol 36
        session = self.store.create_session(token, intents, shard)
        self._attach(session)
        logger.info(
            "connection #%d: identified, new session %s shard=%s",
            self.index,
            session.session_id,
            shard,
        )
        deviations = self.deviations
        if deviations.seq_from_zero:
            # Deviation: a dispatch before READY, numbered 0 like READY after it
            # (Discord: READY opens the session's stream with s=1, protocol 22).
            self.store._append(session, PRE_READY_EVENT, [], reuse_seq=True)
        ready: dict[str, Any] = {
            "v": self.version,
            "user": dict(config.user),
            "guilds": [{"id": str(g), "unavailable": True} for g in self._guilds(shard)],
            "session_id": session.session_id,
            "resume_gateway_url": config.resume_gateway_url or config.url,
            "session_type": "normal",
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "application": {"id": str(config.user.get("id")), "flags": config.application_flags},
            "_trace": ['["gateway-local",{"micros":0}]'],
        }
        if shard is not None:
            ready["shard"] = list(shard)  # protocol 22: only if sent when identifying
        if deviations.no_resume_gateway_url:
            del ready["resume_gateway_url"]  # deviation (protocol 22, 59: added in 2022)
        # READY is seq 1 (seq 0 after the dispatch before it, with seq_from_zero).
        self.store._append(session, "READY", ready, reuse_seq=deviations.seq_from_zero)
        if config.send_guild_creates:
            for guild_id in self._guilds(shard):
                self.store._append(session, "GUILD_CREATE", self._guild(guild_id))

    def _check_shard(self, shard: Any, now: float) -> tuple[int, int] | None:
        if shard is None:
            guilds = len(self._guilds(None))  # issue 16: the world's guilds
        elif (
            isinstance(shard, list)
            and len(shard) == 2
            and all(_is_int(x) for x in shard)
            and 0 <= shard[0] < shard[1]
        ):
            guilds = len(self._guilds((shard[0], shard[1])))
        else:
            self._close(CloseCode.INVALID_SHARD, "Invalid shard.", now)  # protocol 45
        if guilds > self.config.max_guilds_per_shard:
            self._close(CloseCode.SHARDING_REQUIRED, "Sharding required.", now)
        return None if shard is None else (shard[0], shard[1])

    def _guilds(self, shard: tuple[int, int] | None) -> list[int]:
        guild_ids = self.store.world.guild_ids()  # issue 16 hook: the world's guilds
        if shard is None:
            return guild_ids
        return [g for g in guild_ids if (g >> 22) % shard[1] == shard[0]]

    def _guild(self, guild_id: int) -> dict[str, Any]:
        return self.store.world.guild_payload(guild_id)  # issue 16 hook

    def _on_resume(self, d: dict[str, Any], now: float) -> None:
        token, session_id, seq = d.get("token"), d.get("session_id"), d.get("seq")
        if isinstance(token, str) and token.startswith("Bot "):
            token = token[4:]
        if not isinstance(token, str) or token not in self.config.tokens:
            self._close(self._bad_token_code(), "Authentication failed.", now)
        if not isinstance(session_id, str) or not (seq is None or _is_int(seq)):
            self._close(CloseCode.DECODE_ERROR, "Error while decoding payload.", now)
        assert isinstance(session_id, str)
        session = self.store.lookup(session_id[:64], now)
        seq = seq or 0
        first_kept = session.log[0]["s"] if session is not None and session.log else seq + 1
        if session is not None and session.token != token:
            # Someone else's session: refused, and the session is not touched.
            session = None
        if (
            self.deviations.refuse_resume  # deviation: no resuming at all
            or session is None
            or not session.valid
            or not first_kept - 1 <= seq <= session.seq
        ):
            # protocol 29: a failed resume is answered with op 9 d:false; the client may
            # identify on this same connection (protocol 56).
            if session is not None:
                self._end_session(session, now)
            logger.info(
                "connection #%d: resume of %r failed (seq %s)",
                self.index,
                session_id[:64],
                seq if abs(seq) < 10**20 else "out of range",
            )
            self._send({"op": Opcode.INVALID_SESSION.value, "d": False, "s": None, "t": None})
            return
        previous = session.connection
        if previous is not None and previous is not self:
            previous.session = None  # the session moves here; the old socket goes away
            previous._abort(now)
        self._attach(session)
        logger.info(
            "connection #%d: resumed session %s from seq %d (replaying %d)",
            self.index,
            session_id,
            seq,
            session.seq - seq,
        )
        # READY opens a session and is never replayed (protocol 24).
        replay = [p for p in session.log if p["s"] > seq and p["t"] != "READY"]
        if self.deviations.inclusive_replay:
            # Deviation: the client's own last event comes again first (a client
            # must drop the overlap, protocol 24); READY and RESUMED are never replayed so.
            had = [payload for payload in session.log if payload["s"] == seq][-1:]
            replay = [p for p in had if p["t"] not in ("READY", "RESUMED")] + replay
        for payload in replay:  # protocol 24: replay in order, then RESUMED
            self._send_dispatch(payload)
        resumed = {"_trace": ['["gateway-local",{"micros":0}]']}
        if self.deviations.resumed_reuses_seq:
            # Deviation: RESUMED numbered like the last event (not logged: it has
            # no seq of its own, so it is never replayed).
            self._send_dispatch(
                {"op": Opcode.DISPATCH.value, "d": resumed, "s": session.seq, "t": "RESUMED"}
            )
        else:
            self.store._append(session, "RESUMED", resumed)

    def _end_session(self, session: Session, now: float) -> None:
        """A RESUME of ``session`` failed: destroy it and tell its live connection, if any.

        That connection gets op 9 ``d: false`` and may identify again, never
        left as a zombie that gets ACKs but no events.
        """
        self.store.destroy(session)
        owner = session.connection
        if owner is not None and owner is not self and owner.session is session:
            owner.session = None
            if owner.state is ConnectionState.CONNECTED:
                owner.state = ConnectionState.AWAITING_IDENTIFY
                owner._send({"op": Opcode.INVALID_SESSION.value, "d": False, "s": None, "t": None})
                self.store._wake(owner)

    def _attach(self, session: Session) -> None:
        session.connection = self
        session.expires_at = None
        self.session = session
        self.state = ConnectionState.CONNECTED

    def _release_session(self, destroy: bool, now: float) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        if destroy:
            self.store.destroy(session)
            logger.info("connection #%d: session %s destroyed", self.index, session.session_id)
        else:
            self.store._detach(session, now)

    # -- closing -----------------------------------------------------------------

    def _on_client_close(self, event: CloseConnection, now: float) -> None:
        if self._ws.state in (WsState.OPEN, WsState.LOCAL_CLOSING):
            # Not a close frame: wsproto reports a broken frame as the close it
            # wants us to send, with RFC 6455's code (1002 protocol error, 1007
            # invalid UTF-8, 1009 too big). Its parser is spent: from now on we
            # only look for the client's close frame, keeping nothing.
            logger.info(
                "connection #%d: WebSocket protocol error (%d): %s",
                self.index,
                event.code,
                event.reason,
            )
            self._scanner = _CloseScanner()
            self._close(event.code, (event.reason or "")[:100], now)
        if self.state is ConnectionState.CLOSING:  # the answer to our close frame
            self.state = ConnectionState.CLOSED
            return
        self.close_code, self.close_reason, self.closed_by = event.code, event.reason, "client"
        with contextlib.suppress(WsLocalProtocolError):  # wsproto may have closed already
            self._out.append(self._ws.send(event.response()))
        self.state = ConnectionState.CLOSED
        # protocol 30: a client closing with 1000/1001 ends its session; other codes keep it.
        self._release_session(event.code in (1000, 1001), now)
        logger.info("connection #%d: client closed with %s", self.index, event.code)

    def _lost(self, now: float) -> None:
        if self.closed_by is None:
            self.closed_by = "transport"
        self.state = ConnectionState.CLOSED
        self._release_session(False, now)
        logger.info("connection #%d: transport closed", self.index)

    def _protocol_error(self, message: str, now: float) -> None:
        logger.info("connection #%d: WebSocket protocol error: %s", self.index, message)
        if self.state is ConnectionState.HANDSHAKE:  # wsproto refused the upgrade request
            self._http_reply(400, {"message": "400: Bad Request", "code": 0})
        elif self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            self._abort(now)
        else:
            self._scanner = _CloseScanner()
            with contextlib.suppress(_Closed):
                self._close(1002, "Protocol error", now)

    def _close(self, code: int, reason: str, now: float) -> None:
        """Send a close frame and stop handling input (raises ``_Closed``)."""
        if self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            raise _Closed
        self.close_code, self.close_reason, self.closed_by = code, reason, "server"
        with contextlib.suppress(WsLocalProtocolError):  # wsproto may have closed already
            self._out.append(self._ws.send(CloseConnection(code, reason)))
        self.state = ConnectionState.CLOSING
        self._close_deadline = now + self.config.close_timeout
        self._release_session(not close_policy(code).resume, now)
        logger.info("connection #%d: server closed with %d (%s)", self.index, code, reason)
        raise _Closed

    def _abort(self, now: float) -> None:
        """Drop TCP with no close frame: the adapter must reset the socket."""
        self._out.clear()
        self.aborted = True
        if self.closed_by is None:
            self.closed_by = "server"
        self.state = ConnectionState.CLOSED
        self._release_session(False, now)
        logger.info("connection #%d: reset (no close frame)", self.index)
        self.store._wake(self)

    # -- faults ---------------------------------------------------------------------

    def _fire(self, matches: Callable[[_f.Trigger], bool], now: float) -> None:
        due = [item for item in self._script if matches(item[0])]
        for item in due:
            self._script.remove(item)
        for _, fault in due:
            self._apply(fault, now)

    def _apply(self, fault: _f.Fault, now: float) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        if isinstance(fault, _f.SendReconnect):
            self._send({"op": Opcode.RECONNECT.value, "d": None, "s": None, "t": None})
        elif isinstance(fault, _f.SendInvalidSession):
            if not fault.resumable and self.session is not None:
                self.store.destroy(self.session)
                self.session = None
                self.state = ConnectionState.AWAITING_IDENTIFY
            self._send(
                {"op": Opcode.INVALID_SESSION.value, "d": fault.resumable, "s": None, "t": None}
            )
        elif isinstance(fault, _f.SendHeartbeatRequest):
            self._send({"op": Opcode.HEARTBEAT.value, "d": None, "s": None, "t": None})
        elif isinstance(fault, _f.Close):
            self._close(fault.code, fault.reason, now)
        elif isinstance(fault, _f.ResetConnection):
            self._abort(now)
        elif isinstance(fault, _f.Stall):
            self.stalled = True  # what was already written still goes out
            logger.info("connection #%d: stalled", self.index)
        elif isinstance(fault, _f.SendMalformed):
            self._write(TextMessage(data='{"op": 0, "d": {"broken'))
        elif isinstance(fault, _f.CorruptCompressed):
            garbage = b"\x78\x9c\xde\xad\xbe\xef\xde\xad"
            if self.compress == "zlib-stream":
                garbage = b"\xff\xfe\xfd\xfc" + ZLIB_SUFFIX
            elif self.compress == "zstd-stream":
                garbage = b"\x28\xb5\x2f\xfd\xff\xff\xff\xff\xff"
            self._write(BytesMessage(data=garbage))
        elif isinstance(fault, _f.InvalidateSession) and self.session is not None:
            self.session.valid = False

    # -- sending ----------------------------------------------------------------------

    def _send_dispatch(self, payload: dict[str, Any]) -> None:
        if self.state is not ConnectionState.CONNECTED:
            return
        self._send(payload)
        self.dispatches_sent += 1
        count = self.dispatches_sent
        with contextlib.suppress(_Closed):
            self._fire(lambda t: isinstance(t, _f.AfterDispatches) and t.count == count, self._now)
        self.store._wake(self)

    def _send(self, payload: dict[str, Any]) -> None:
        if self.stalled or self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            return
        if self.deviations.bare_control_payloads and payload["op"] != Opcode.DISPATCH:
            # Deviation: Discord sends "s": null, "t": null (protocol 5); clients must
            # accept frames that omit keys (protocol 7).
            payload = {"op": payload["op"], "d": payload["d"]}
        self.sent.append(payload)
        if len(self.sent) > 2 * self.config.record_limit:  # bounded, trimmed in batches
            del self.sent[: -self.config.record_limit]
        if self.encoding == "etf":
            from .. import _etf

            raw: bytes = _etf.dumps(payload, atom_keys=True)  # as Discord does (protocol 39)
        else:
            raw = json_dumps(payload)
        if self.compress == "zlib-stream":
            data = self._compressor.compress(raw) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
            pieces = self._split(data, self.faults.split_messages)
            for piece in pieces:  # protocol 34: only the last piece ends with 00 00 ff ff
                self._write(BytesMessage(data=piece))
        elif self.compress == "zstd-stream":
            import zstandard

            data = self._compressor.compress(raw)
            if not self.deviations.zstd_frame_per_message:
                data += self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self._write(BytesMessage(data=data))
        elif self.payload_compression and len(raw) >= self.config.payload_compression_threshold:
            self._write(BytesMessage(data=zlib.compress(raw)))
        elif self.encoding == "etf":
            self._write(BytesMessage(data=raw))
        else:
            self._write(TextMessage(data=raw.decode()))

    def _split(self, data: bytes, parts: int) -> list[bytes]:
        if parts <= 1 or len(data) <= 4:
            return [data]
        # Never split inside the suffix: a piece ending in 00 00 ff ff ends a message.
        body = len(data) - 4
        cuts = sorted(self.rng.sample(range(1, body), min(parts - 1, body - 1)))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]

    def _write(self, event: TextMessage | BytesMessage) -> None:
        if self.stalled:
            return
        frames = self.faults.fragment_frames
        data = event.data
        if frames <= 1 or len(data) < 2:
            self._out.append(self._ws.send(event))
            return
        cuts = sorted(self.rng.sample(range(1, len(data)), min(frames - 1, len(data) - 1)))
        bounds = list(zip([0, *cuts], [*cuts, len(data)], strict=True))
        for i, (start, end) in enumerate(bounds):
            finished = i == len(bounds) - 1
            if isinstance(data, str):
                self._out.append(self._ws.send(TextMessage(data[start:end], True, finished)))
            else:
                self._out.append(self._ws.send(BytesMessage(data[start:end], True, finished)))
