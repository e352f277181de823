"""``DiscordConnection``: the sans-I/O gateway client.

It turns received bytes into events and commands into bytes. It never does
I/O and never sleeps; it reads the clock only when a caller passes no ``now``.

Layers, outermost first:

* wsproto frames the WebSocket (a fresh ``WSConnection`` per connection);
* ``Codec`` inflates (zlib-stream, zstd-stream, payload zlib) and decodes
  (JSON, ETF);
* the lifecycle (``fsm``) decides which moves are legal - every change of
  state goes through it, and nothing else;
* the hot path (DISPATCH, sequence numbers, HEARTBEAT_ACK) is plain code here.

Time is an input, aioquic style: ``next_deadline()`` says when the connection
next needs attention and ``handle_timer(now)`` emits what is due then (a
heartbeat, or the close of a zombie connection). The 0.4.0-style manual
``heartbeat()`` keeps working.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeGuard, cast
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from . import _fastframes, commands
from ._version import __version__
from .codec import DEFAULT_MAX_PAYLOAD_SIZE, MAX_SEND_SIZE, Codec
from .errors import (
    CloseDiscordConnection,
    CommandQueueFull,
    ConfigurationError,
    ConnectionRejected,
    GatewayError,
    InternalError,
    InvalidCommand,
    LocalProtocolError,
    RejectedConnectionData,
    RemoteProtocolError,
)
from .events import (
    CommandsDropped,
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
    _set_data,
    _set_name,
    _set_payload,
    _set_seq,
    new_dispatch,
)
from .events import _new as _new_event
from .fsm import Lifecycle, State, Trigger
from .fsm.states import HEARTBEAT_STATES, OPEN_STATES, SENDING_STATES
from .opcodes import (
    CLOSE_CODE_POLICIES,
    RESUMABLE_CLOSE_CODE,
    SESSION_ENDING_CLOSE_CODES,
    CloseCode,
    Opcode,
    close_policy,
)
from .ratelimit import CommandRateLimiter

__all__ = ("DEFAULT_API_VERSION", "READY_TIMEOUT", "RESUME_TIMEOUT", "DiscordConnection")

DEFAULT_API_VERSION = 10
#: API versions Discord still serves (protocol 3: 10 and 9 available, 6-8 deprecated).
SUPPORTED_API_VERSIONS = (6, 7, 8, 9, 10)
#: Backoff for ``reconnect()``: 0 for the first attempt, then full jitter over
#: ``min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))`` seconds.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: Protocol 28 [hist]: wait 1-5 s before identifying after op 9 d=false.
INVALID_SESSION_WAIT = (1.0, 5.0)
#: Protocol 54: a session whose resumes keep failing is "bricked"; identify after this many.
MAX_RESUME_ATTEMPTS = 3
#: How long we wait for the gateway to answer our close frame before giving up on it.
CLOSE_TIMEOUT = 5.0
#: How long after connect() the upgrade and HELLO may take before we give up.
HELLO_TIMEOUT = 20.0
#: How long after IDENTIFY READY may take before we close (resumably) and reconnect.
READY_TIMEOUT = 30.0
#: How long after RESUME the replay and RESUMED may take; overdue counts as a failed resume.
RESUME_TIMEOUT = 60.0
#: No timeout may exceed a day: deadlines must stay within what selectors,
#: asyncio and trio can wait for, and a longer one is a mistake (ms for s).
MAX_TIMEOUT = 86_400.0
#: HELLO's heartbeat_interval, in milliseconds, must lie in this range (Discord
#: sends about 41250). Outside it the gateway is broken or hostile: an interval
#: of 1e300 ms would hand adapters a deadline no selector can wait for.
MIN_HEARTBEAT_INTERVAL_MS = 1
MAX_HEARTBEAT_INTERVAL_MS = 3_600_000
#: ``heartbeat_grid`` is used up to this share of the heartbeat interval (1/16:
#: a heartbeat at most ~6 % early), so a short interval keeps its spacing.
HEARTBEAT_GRID_SHARE = 1 / 16
#: Protocol 6: sequence numbers are non-negative 64-bit signed integers; anything
#: else is refused before it is stored (every heartbeat and RESUME carries it).
MAX_SEQUENCE = 2**63 - 1
#: Longest session_id accepted from READY (Discord's are 32 characters).
MAX_SESSION_ID = 512
#: Out-of-order dispatches are logged at the first and then every this many.
OUT_OF_ORDER_LOG_EVERY = 1000
#: The upgrade request's User-Agent, as Discord asks of bots.
USER_AGENT = f"DiscordBot (https://pypi.org/project/discord-gateway/, {__version__})"
#: How much of a rejected upgrade's HTTP body is kept for RejectedConnectionData.
MAX_REJECTED_BODY = 64 * 1024
#: Longest gateway URL accepted (Discord's are under 60 characters).
MAX_URL_LENGTH = 1024

#: Hosts whose resume_gateway_url must stay on the same domain (see _resume_url_problem).
_DISCORD_DOMAIN = "discord.gg"
#: Headers the WebSocket upgrade sets itself.
_UPGRADE_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")

_DEFAULT_PORTS = {"wss": 443, "ws": 80}
_LOG = logging.getLogger("discord_gateway")

# The states receive() looks at on every read: reading an Enum member off its
# class costs ~45 ns in CPython 3.11, a module global ~5 ns.
_RECONNECTING = State.RECONNECTING
_CLOSED = State.CLOSED


def _brief(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about hostile data.

    Never raises: ``repr`` of an int of over 4300 digits does (``ValueError``).
    """
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_gateway_url(uri: str, what: str = "uri") -> SplitResult:
    """Accept ``wss://host[:port][/path][?query]`` or a bare host (as 0.4.0's README did)."""
    if not isinstance(uri, str) or not uri:
        raise ConfigurationError(
            f"{what} must be a non-empty string such as 'wss://gateway.discord.gg'"
        )
    if len(uri) > MAX_URL_LENGTH:
        raise ConfigurationError(
            f"{what} is {len(uri)} characters long; a gateway URL has at most {MAX_URL_LENGTH}"
        )
    if not (uri.isascii() and uri.isprintable()) or any(c.isspace() for c in uri):
        raise ConfigurationError(
            f"{what} {_brief(uri)} contains spaces, control or non-ASCII characters; "
            "percent-encode them or fix the URL"
        )
    text = uri if "://" in uri else f"wss://{uri}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse {what} {uri!r}: {exc}") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigurationError(f"{what} {uri!r} must use wss:// (or ws:// for a local gateway)")
    if not parts.hostname:
        raise ConfigurationError(f"cannot find a host name in {what} {uri!r}")
    try:
        parts.hostname.encode("idna")
    except UnicodeError as exc:
        raise ConfigurationError(f"{what} {uri!r} has an invalid host name: {exc}") from exc
    del port
    return parts


def _encodable(text: str) -> bool:
    """Whether ``text`` can go out as UTF-8 (lone surrogates cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _on_discord_domain(host: str) -> bool:
    return host == _DISCORD_DOMAIN or host.endswith("." + _DISCORD_DOMAIN)


def _resume_url_problem(url: object, original: SplitResult) -> str | None:
    """Why READY's ``resume_gateway_url`` must not be followed, or None if it may.

    The policy (the token goes out in the RESUME sent there):

    * it is a gateway URL we could connect to: a ``str`` of at most
      ``MAX_URL_LENGTH`` printable ASCII characters without spaces, ``wss://``
      or ``ws://``, with a host name;
    * no credentials (``user:password@``) in it;
    * never a downgrade: from a ``wss://`` gateway only ``wss://`` is followed
      (``ws://`` only from a ``ws://`` one, e.g. a local gateway);
    * when the original host is ``discord.gg`` or one of its subdomains, the
      resume host must be too; any other original host (a local gateway, a
      proxy, a compatible server) may send its clients to any host.
    """
    if not isinstance(url, str):
        return f"it is not a string: {_brief(url, 40)}"
    try:
        parts = _parse_gateway_url(url, "resume_gateway_url")
    except ConfigurationError as exc:
        return str(exc)
    if "@" in parts.netloc:
        return f"it carries credentials ({_brief(url, 40)} has a user name or password)"
    if original.scheme == "wss" and parts.scheme != "wss":
        return f"{_brief(url, 60)} would move a wss:// session to unencrypted ws://"
    assert original.hostname is not None and parts.hostname is not None
    if _on_discord_domain(original.hostname) and not _on_discord_domain(parts.hostname):
        return f"{_brief(url, 60)} leaves {_DISCORD_DOMAIN}, where the session started"
    return None


def _timeout(name: str, value: object) -> float:
    if type(value) not in (int, float) or not 0 < value <= MAX_TIMEOUT:  # type: ignore[operator]
        raise ConfigurationError(
            f"{name} must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f} "
            f"(a day), not {_brief(value, 40)}"
        )
    return float(value)  # type: ignore[arg-type]


def _upgrade_headers(headers: object) -> list[tuple[bytes, bytes]]:
    """The ``headers=`` option as wsproto's extra headers, User-Agent included."""
    if headers is None:
        pairs: list[object] = []
    elif isinstance(headers, Mapping):
        pairs = list(headers.items())
    elif isinstance(headers, str | bytes) or not isinstance(headers, Iterable):
        raise ConfigurationError(
            "headers must be a mapping {name: value} or an iterable of (name, value) pairs, "
            f"not {type(headers).__name__}"
        )
    else:
        pairs = list(headers)
    out: list[tuple[bytes, bytes]] = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigurationError(
                f"each header must be a (name, value) pair of strings, not {_brief(pair, 60)}"
            )
        name, value = pair
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(
                f"header name {_brief(name, 60)} is not a valid HTTP header name "
                "(letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        if name.lower() in _UPGRADE_HEADERS:
            raise ConfigurationError(
                f"header {name!r} is set by the WebSocket upgrade itself; leave it out"
            )
        if (
            not isinstance(value, str)
            or not _HEADER_VALUE.fullmatch(value)
            or value != value.strip(" \t")
        ):
            raise ConfigurationError(
                f"the value of header {name!r} must be a string without line breaks, "
                f"control characters or surrounding spaces, not {_brief(value, 60)}"
            )
        try:
            out.append((name.encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError as exc:
            raise ConfigurationError(
                f"the value of header {name!r} must be Latin-1 text (HTTP/1.1 headers "
                f"cannot carry other characters): {_brief(value, 60)}"
            ) from exc
    if not any(name.lower() == b"user-agent" for name, _ in out):
        out.insert(0, (b"User-Agent", USER_AGENT.encode("ascii")))
    return out


def _sendable_session_id(session_id: object) -> TypeGuard[str]:
    """Whether READY's ``session_id`` can go back in a RESUME (protocol 22, 26)."""
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID:
        return False
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. an ETF binary that is not UTF-8
        return False
    return True


class DiscordConnection:
    """One gateway session's client side, across as many WebSockets as it takes.

    Parameters:
        uri: the gateway URL from ``GET /gateway/bot`` (``wss://gateway.discord.gg``),
            or a bare host name. An existing query string is kept and merged.
        encoding: ``'json'`` or ``'etf'`` (needs the ``etf`` extra).
        compress: transport compression, ``'zlib-stream'`` or ``'zstd-stream'``
            (needs the ``zstd`` extra); or ``True`` to ask for payload compression
            in IDENTIFY by default (0.4.0 semantics); ``None``/``False`` for none.
        version: gateway API version; default 10, or the URL's ``v`` if it has one.
        session_id, sequence, resume_gateway_url: a session to resume.
            ``resume_gateway_url`` follows the same policy as READY's (see
            ``_resume_url_problem``: no downgrade to ``ws://``, no credentials,
            and from a ``discord.gg`` URL only to ``discord.gg`` hosts).
        dispatch_handled: also yield the events the connection handles itself
            (``HeartbeatAck``, ``HeartbeatRequest``, ``Reconnect``, ``InvalidSession``).
        max_payload_size: cap on one received message after decompression.
        etf_snowflakes_as_str: with ETF, turn the integer snowflakes Discord sends
            (``id``, ``*_id``, ``*_ids``, role lists, map keys) into ``str`` as in JSON.
        fast_frames: parse complete plain data frames directly out of each read
            instead of through wsproto (several times cheaper per frame; wsproto
            still handles the upgrade, control frames, closing and every
            protocol error). ``False`` sends everything through wsproto.
        heartbeat_grid: seconds; 0 (the default) times heartbeats exactly. Above 0,
            every heartbeat deadline is moved to the last multiple of it (on the
            clock that gives ``now``) at or before the exact one: connections
            sharing a clock then beat together, one wake-up for several. The first
            heartbeat stays jittered (protocol 10), at this resolution; a heartbeat
            is never late, at most one grid step (and at most 1/16 of the
            interval) early.
        max_queued_commands: how many commands may wait for the send limit.
        hello_timeout: seconds from ``connect()`` to HELLO before the attempt is abandoned.
        close_timeout: seconds to wait for the gateway to answer our close frame.
        ready_timeout: seconds from IDENTIFY to READY before the connection is
            closed (resumably, 4000) and should be reconnected.
        resume_timeout: seconds from RESUME to RESUMED, likewise; it counts as a
            failed resume.
        headers: extra HTTP headers for the upgrade request, a mapping or
            ``(name, value)`` pairs. ``User-Agent`` defaults to
            ``DiscordBot (https://pypi.org/project/discord-gateway/, <version>)``.
        rng: randomness for heartbeat and backoff jitter (inject a seeded one in tests).
        clock: the monotonic clock read when a method is given no ``now``.
        logger: where to log; default ``logging.getLogger("discord_gateway")``.
    """

    __slots__ = (
        "_ack_pending",
        "_answer_deadline",
        "_answer_timeout",
        "_attempts",
        "_awaiting",
        "_clock",
        "_close_deadline",
        "_close_sent_code",
        "_close_timeout",
        "_codec",
        "_command_queue",
        "_command_window",
        "_events",
        "_fast_carry",
        "_fast_frames",
        "_fast_queue",
        "_fast_rest",
        "_fatal_code",
        "_fatal_reason",
        "_headers",
        "_heartbeat_grid",
        "_hello_at",
        "_hello_deadline",
        "_hello_timeout",
        "_ignored_while_closing",
        "_invalid_session_wait",
        "_last_heartbeat_sent",
        "_latencies",
        "_lifecycle",
        "_log",
        "_max_queued_commands",
        "_next_heartbeat",
        "_ready_timeout",
        "_rejected_body",
        "_resume_attempt",
        "_resume_failures",
        "_resume_timeout",
        "_rng",
        "_upgrade_sent",
        "_url",
        "_version",
        "_ws",
        "_ws_unread",
        "dispatch_handled",
        "encoding",
        "heartbeat_interval",
        "out_of_order_dispatches",
        "payload_compression",
        "resume_gateway_url",
        "sequence",
        "session_id",
        "transport_compression",
        "uri",
    )

    def __init__(
        self,
        uri: str,
        *,
        encoding: str = "json",
        compress: str | bool | None = None,
        version: int | None = None,
        session_id: str | None = None,
        sequence: int | None = None,
        resume_gateway_url: str | None = None,
        dispatch_handled: bool = False,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
        etf_snowflakes_as_str: bool = False,
        fast_frames: bool = True,
        heartbeat_grid: float = 0.0,
        max_queued_commands: int = 1000,
        hello_timeout: float = HELLO_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        ready_timeout: float = READY_TIMEOUT,
        resume_timeout: float = RESUME_TIMEOUT,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.uri = uri
        self._url = _parse_gateway_url(uri)
        if version is None:
            url_version = dict(parse_qsl(self._url.query)).get("v")
            if url_version and len(url_version) <= 3 and url_version.isdecimal():
                version = int(url_version)
        elif type(version) is not int:
            raise ConfigurationError(
                f"version must be an int such as {DEFAULT_API_VERSION}, not {_brief(version, 40)}"
            )
        self._version = DEFAULT_API_VERSION if version is None else version
        if self._version not in SUPPORTED_API_VERSIONS:
            raise ConfigurationError(
                f"gateway API version {self._version} is not served by Discord; "
                f"use one of {SUPPORTED_API_VERSIONS} (10 is current)"
            )
        if self._version < 9:
            _LOG.warning("gateway API version %d is deprecated: use 10", self._version)
        if compress is True or compress is False or compress is None:
            self.transport_compression: str | None = None
            self.payload_compression = bool(compress)
        elif isinstance(compress, str):
            self.transport_compression = compress
            self.payload_compression = False
        else:
            raise ConfigurationError(
                "compress must be 'zlib-stream', 'zstd-stream', True (payload compression) "
                f"or None, not {_brief(compress, 40)}"
            )
        if encoding == "etf" and self.payload_compression:
            raise ConfigurationError(
                "compress=True (payload compression) works with JSON only: use "
                "encoding='json', or compress='zlib-stream' for compressed ETF"
            )
        for name, flag in (
            ("dispatch_handled", dispatch_handled),
            ("etf_snowflakes_as_str", etf_snowflakes_as_str),
            ("fast_frames", fast_frames),
        ):
            if type(flag) is not bool:
                raise ConfigurationError(f"{name} must be True or False, not {_brief(flag, 40)}")
        if type(max_payload_size) is not int:
            raise ConfigurationError(
                f"max_payload_size must be an int (bytes), not {_brief(max_payload_size, 40)}"
            )
        self.encoding = encoding
        self._fast_frames = fast_frames
        # Reads not handled yet, in stream order, behind what wsproto holds (and
        # the other fragments of a message the fast path took, as tuples).
        # A list, not a deque: it rarely holds more than one read, and an empty
        # deque costs ~600 bytes per idle connection.
        self._fast_queue: list[_fastframes.Chunk | bytes] = []
        # A data frame's header cut by the end of a read, kept for the next one.
        self._fast_carry = b""
        self._codec = Codec(
            encoding,
            self.transport_compression,
            max_payload_size,
            etf_snowflakes_as_str=etf_snowflakes_as_str,
        )
        if session_id is not None and sequence is None:
            raise ConfigurationError("resuming a session needs both session_id and sequence")
        if session_id is not None and (not isinstance(session_id, str) or not session_id):
            raise ConfigurationError(
                f"session_id must be READY's session_id (a non-empty str), not {_brief(session_id)}"
            )
        if sequence is not None and (
            type(sequence) is not int or not 0 <= sequence <= MAX_SEQUENCE
        ):
            raise ConfigurationError(
                "sequence must be the last dispatch's s (an int from 0 to 2**63-1), "
                f"not {_brief(sequence, 40)}"
            )
        if resume_gateway_url is not None:
            _parse_gateway_url(resume_gateway_url, "resume_gateway_url")
            problem = _resume_url_problem(resume_gateway_url, self._url)
            if problem is not None:
                raise ConfigurationError(
                    f"resume_gateway_url cannot be used: {problem}; pass READY's "
                    "resume_gateway_url unchanged, or None to resume on uri"
                )
        self.session_id = session_id
        self.sequence = sequence
        self.resume_gateway_url = resume_gateway_url
        self.dispatch_handled = dispatch_handled
        if rng is not None and not (
            callable(getattr(rng, "random", None)) and callable(getattr(rng, "uniform", None))
        ):
            raise ConfigurationError(
                f"rng must be a random.Random (or None), not {type(rng).__name__}"
            )
        if not callable(clock):
            raise ConfigurationError(
                f"clock must be a function returning monotonic seconds, such as "
                f"time.monotonic, not {_brief(clock, 40)}"
            )
        if logger is not None and not isinstance(logger, logging.Logger | logging.LoggerAdapter):
            raise ConfigurationError(
                f"logger must be a logging.Logger (or None), not {type(logger).__name__}"
            )
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._log = logger if logger is not None else _LOG
        self.out_of_order_dispatches = 0
        self._fatal_reason: str | None = None
        self._headers = _upgrade_headers(headers)

        self._lifecycle = Lifecycle()
        # Events not yet taken by events(). A plain dispatch waits as its payload
        # dict, and its Dispatch is built as events() yields it: one object less
        # per event held between receive() and events() (fewer and cheaper
        # passes of the cyclic GC, which scans what a read leaves alive).
        self._events: deque[Event | dict[str, Any]] = deque()
        # Lists, not deques, for what is short or rarely used: an empty deque
        # costs ~600 bytes, and idle connections are kept by the thousand.
        self._latencies: list[float] = []  # the last five round trips
        self._attempts = 0
        self._invalid_session_wait = 0.0
        self._resume_failures = 0
        self._fatal_code: int | None = None
        self._command_window = CommandRateLimiter()
        # Commands over the send limit wait here, encoded, until handle_timer()
        # releases them; they survive a resume but never a lost session.
        self._command_queue: list[tuple[dict[str, Any], str | bytes]] = []
        if type(max_queued_commands) is not int or max_queued_commands < 0:
            raise ConfigurationError(
                "max_queued_commands must be an int of 0 or more (0: never queue), "
                f"not {_brief(max_queued_commands, 40)}"
            )
        self._max_queued_commands = max_queued_commands
        if (
            type(heartbeat_grid) not in (int, float)
            or not 0 <= heartbeat_grid <= MAX_TIMEOUT  # also refuses nan
        ):
            raise ConfigurationError(
                "heartbeat_grid must be a number of seconds from 0 (exact heartbeats) "
                f"to {MAX_TIMEOUT:.0f}, such as 2.0, not {_brief(heartbeat_grid, 40)}"
            )
        self._heartbeat_grid = float(heartbeat_grid)
        self._hello_timeout = _timeout("hello_timeout", hello_timeout)
        self._close_timeout = _timeout("close_timeout", close_timeout)
        self._ready_timeout = _timeout("ready_timeout", ready_timeout)
        self._resume_timeout = _timeout("resume_timeout", resume_timeout)
        self._new_websocket()

    def _new_websocket(self) -> None:
        """Per-WebSocket state; the session (and undelivered events) survive it."""
        self._ws = WSConnection(ConnectionType.CLIENT)
        # Whether wsproto may have events we have not read: it gets no bytes
        # while the fast path reads, and asking it for events costs ~1.5 us.
        self._ws_unread = True
        self._fast_queue.clear()
        self._fast_carry = b""
        # Bytes still to come of a binary frame the fast path is streaming.
        self._fast_rest = 0
        self._codec.reset()
        self._command_window.reset()  # protocol 41: the limit is per connection
        self._upgrade_sent = False
        self._hello_deadline: float | None = None
        self._resume_attempt = False
        # READY after IDENTIFY, RESUMED after RESUME: what this WebSocket still
        # expects, and by when (ready_timeout, resume_timeout).
        self._awaiting: str | None = None
        self._answer_deadline: float | None = None
        # identify()/resume() given no ``now``: the timeout, anchored at the next
        # receive() or handle_timer() (a caller passing its own clock's ``now``
        # there must not get a deadline from ours).
        self._answer_timeout: float | None = None
        # Invalid payloads read while closing: the first is logged as a warning.
        self._ignored_while_closing = 0
        self._hello_at: float | None = None
        self.heartbeat_interval: float | None = None
        self._next_heartbeat: float | None = None
        self._ack_pending = False
        self._last_heartbeat_sent: float | None = None
        self._close_sent_code: int | None = None
        self._close_deadline: float | None = None
        self._rejected_body = bytearray()

    def __repr__(self) -> str:
        return (
            f"<DiscordConnection {self.state.value} url={self.url!r} "
            f"session_id={self.session_id!r} sequence={self.sequence!r}>"
        )

    # -- Introspection -----------------------------------------------------

    @property
    def state(self) -> State:
        """The lifecycle state (see ``discord_gateway.fsm.states``)."""
        return self._lifecycle.state

    @property
    def compress(self) -> str | bool:
        """0.4.0's attribute: the transport compression, else whether payload compression is on."""
        return self.transport_compression or self.payload_compression

    @property
    def should_resume(self) -> bool:
        """Whether the next connection will RESUME (True) or IDENTIFY (False)."""
        return self.session_id is not None and self.sequence is not None

    @should_resume.setter
    def should_resume(self, value: bool) -> None:
        if value and not self.should_resume:
            raise LocalProtocolError("there is no session to resume (no session_id and sequence)")
        if not value:
            self._drop_session()

    @property
    def closing(self) -> bool:
        """True from the moment a close frame is sent or received: send nothing more."""
        return self._lifecycle.state in (State.CLOSING, State.RECONNECTING, State.CLOSED)

    @property
    def acknowledged(self) -> bool:
        """Whether the last heartbeat was acknowledged (0.4.0 attribute)."""
        return not self._ack_pending

    @property
    def latency(self) -> float | None:
        """Mean of the last five heartbeat round trips in seconds; None before the first ACK."""
        if not self._latencies:
            return None
        return sum(self._latencies) / len(self._latencies)

    @property
    def query_params(self) -> str:
        """``v``, ``encoding`` and ``compress`` as a query string (protocol 2)."""
        params: dict[str, str] = {"v": str(self._version), "encoding": self.encoding}
        if self.transport_compression is not None:
            params["compress"] = self.transport_compression
        return urlencode(params)

    def _target_url(self) -> SplitResult:
        if self.should_resume and self.resume_gateway_url is not None:
            return _parse_gateway_url(self.resume_gateway_url, "resume_gateway_url")
        return self._url

    def _request_target(self, parts: SplitResult) -> str:
        # Merge, don't glue: keep the URL's other parameters, ours override theirs.
        ours = ("v", "encoding", "compress")
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
        query = urlencode(kept)
        query = f"{query}&{self.query_params}" if query else self.query_params
        return f"{parts.path or '/'}?{query}"

    @property
    def url(self) -> str:
        """The full URL the next (or current) WebSocket connects to.

        ``resume_gateway_url`` while the session can be resumed (protocol 4, 26),
        the original URL when identifying (protocol 1, 27).
        """
        parts = self._target_url()
        return f"{parts.scheme}://{parts.netloc}{self._request_target(parts)}"

    @property
    def destination(self) -> tuple[str, int]:
        """``(host, port)`` to open the TCP connection to."""
        parts = self._target_url()
        assert parts.hostname is not None  # checked by _parse_gateway_url
        return parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]

    @property
    def secure(self) -> bool:
        """Whether the transport must be TLS (``wss://``)."""
        return self._target_url().scheme == "wss"

    def should_reconnect(self) -> bool:
        """False once the connection ended: the gateway closed with a fatal code
        (4004, 4010-4014), or the close you asked for with 1000/1001 is done."""
        return self._lifecycle.state is not State.CLOSED

    @property
    def fatal_close_code(self) -> int | None:
        """The fatal close code that ended the connection for good, if any."""
        return self._fatal_code

    @property
    def fatal_close_reason(self) -> str | None:
        """The reason the gateway gave in that fatal close frame, if it gave one."""
        return self._fatal_reason

    def events(self) -> Iterator[Event]:
        """Yield (and forget) the events received so far, oldest first."""
        events = self._events
        popleft = events.popleft
        while events:
            event = popleft()
            if type(event) is dict:
                # A plain dispatch, queued as its checked payload (_on_dispatch):
                # new_dispatch(), inlined.
                dispatch = _new_event(Dispatch)
                _set_name(dispatch, event["t"])
                _set_seq(dispatch, event.get("s"))
                _set_data(dispatch, event.get("d"))
                _set_payload(dispatch, event)
                yield dispatch
            else:
                yield event  # type: ignore[misc]  # an Event: only dispatches wait as dicts

    def _fire(self, trigger: Trigger) -> None:
        before = self._lifecycle.fire(trigger)
        if before is not self._lifecycle.state:
            self._log.info("gateway state %s -> %s", before.value, self._lifecycle.state.value)

    # -- Timers --------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def next_deadline(self) -> float | None:
        """The monotonic time at which ``handle_timer()`` must next be called, or None.

        Always a finite number (a time already past means "now") within a day
        of the last ``now`` given: safe for any selector or event loop.
        """
        state = self._lifecycle.state
        if state is State.CLOSING:
            return self._close_deadline
        if state is State.CONNECTING:
            return self._hello_deadline
        if state not in HEARTBEAT_STATES:
            return None
        deadline = self._next_heartbeat
        if self._answer_deadline is not None:
            deadline = (
                self._answer_deadline if deadline is None else min(deadline, self._answer_deadline)
            )
        if self._command_queue and state in SENDING_STATES:
            release = self._command_window.next_free(self.heartbeat_interval)
            if release == -math.inf:
                # Room already (a new WebSocket's window): due now, and HELLO,
                # read on this WebSocket, is a finite time that is past.
                assert self._hello_at is not None  # every SENDING_STATE is after HELLO
                release = self._hello_at
            deadline = release if deadline is None else min(deadline, release)
        return deadline

    def handle_timer(self, now: float | None = None) -> list[bytes]:
        """Do what is due at ``now``: a heartbeat, queued commands, or closing a zombie.

        Also closes (resumably, 4000 "no READY in time" / "no RESUMED in time")
        when ``ready_timeout`` / ``resume_timeout`` passed without an answer.
        Raises :class:`CloseDiscordConnection` (code 1006) when the gateway failed
        to send HELLO or to answer our close frame in time: drop the socket and
        reconnect.
        """
        now = self._now(now)
        if self._answer_timeout is not None:
            self._anchor_answer_deadline(now)
        state = self._lifecycle.state
        if state is State.CONNECTING:
            if self._hello_deadline is not None and now >= self._hello_deadline:
                self._log.warning(
                    "no HELLO within %s s; abandoning this connection", self._hello_timeout
                )
                self._connection_ended(CloseCode.ABNORMAL_CLOSURE, peer_closed=True)
                raise CloseDiscordConnection(None, CloseCode.ABNORMAL_CLOSURE, "no HELLO in time")
            return []
        if state is State.CLOSING:
            if self._close_deadline is not None and now >= self._close_deadline:
                self._log.warning("the gateway did not answer our close frame; dropping it")
                self._connection_ended(CloseCode.ABNORMAL_CLOSURE, peer_closed=False)
                raise CloseDiscordConnection(
                    None, CloseCode.ABNORMAL_CLOSURE, "close handshake timed out"
                )
            return []
        if state not in HEARTBEAT_STATES or self._next_heartbeat is None:
            return []
        if self._answer_deadline is not None and now >= self._answer_deadline:
            # Liveness: a gateway that ACKs heartbeats but never answers IDENTIFY
            # or RESUME would hold the connection forever. Close resumably; an
            # unanswered RESUME counts as a failed one (protocol 54).
            awaited = "READY" if state is State.IDENTIFYING else "RESUMED"
            waited = self._ready_timeout if awaited == "READY" else self._resume_timeout
            self._log.warning("no %s within %s s; closing to reconnect", awaited, waited)
            return [self._start_close(RESUMABLE_CLOSE_CODE, f"no {awaited} in time", now)]
        out: list[bytes] = []
        if now >= self._next_heartbeat:
            if self._ack_pending:
                # protocol 13: no ACK between two heartbeats: a zombie connection. Close
                # with a code other than 1000/1001 so the session can be resumed.
                return [self._start_close(RESUMABLE_CLOSE_CODE, "heartbeat ACK missed", now)]
            out.append(self._send_heartbeat(now, expect_ack=True))
        if self._command_queue and state in SENDING_STATES:
            self._release_commands(now, out)
        return out

    def _release_commands(self, now: float, out: list[bytes]) -> None:
        queue = self._command_queue
        while queue and self._command_window.try_acquire(now, self.heartbeat_interval):
            out.append(self._frame(queue.pop(0)[1]))

    def _send_heartbeat(self, now: float, *, expect_ack: bool) -> bytes:
        data = self._encode(Opcode.HEARTBEAT, self.sequence)  # protocol 11
        self._last_heartbeat_sent = now
        if expect_ack:
            self._ack_pending = True
            assert self.heartbeat_interval is not None
            assert self._next_heartbeat is not None
            # Keep the cadence, but never fire a burst after a late timer call.
            # protocol 10: every interval, on the grid never later (at most a step early).
            interval = self.heartbeat_interval
            deadline = self._on_grid(self._next_heartbeat + interval)
            if deadline <= now:
                deadline = self._on_grid(now + interval)
            self._next_heartbeat = deadline
        return data

    def _on_grid(self, deadline: float) -> float:
        """``deadline`` moved back to the heartbeat grid's last point at or before it."""
        grid = self._heartbeat_grid
        if not grid:
            return deadline
        assert self.heartbeat_interval is not None
        grid = min(grid, self.heartbeat_interval * HEARTBEAT_GRID_SHARE)
        point = math.floor(deadline / grid) * grid
        # Float rounding may land a hair after the deadline: never late.
        return point - grid if point > deadline else point

    def heartbeat(self, *, acknowledge: bool = True, now: float | None = None) -> bytes:
        """A HEARTBEAT to send now (0.4.0 API; prefer ``handle_timer``).

        If the previous heartbeat was never acknowledged this returns the
        close frame of a zombie connection instead (protocol 13), as 0.4.0 did.
        ``acknowledge=False`` sends one without expecting an ACK.
        """
        state = self._lifecycle.state
        if state not in HEARTBEAT_STATES:
            raise LocalProtocolError(
                f"can't send a heartbeat in state {state.value!r}: "
                + ("wait for HELLO" if state is State.CONNECTING else "the connection is closing")
            )
        now = self._now(now)
        if acknowledge and self._ack_pending:
            return self._start_close(RESUMABLE_CLOSE_CODE, "heartbeat ACK missed", now)
        if acknowledge:
            assert self.heartbeat_interval is not None
            self._next_heartbeat = now
        return self._send_heartbeat(now, expect_ack=acknowledge)

    # -- Sending ---------------------------------------------------------------

    def _serialise(self, op: Opcode, data: Any) -> tuple[dict[str, Any], str | bytes]:
        # protocol 8: send only op and d.
        payload = {"op": int(op), "d": data}
        text_or_bytes, size = self._codec.dumps(payload)
        if size > MAX_SEND_SIZE:
            raise InvalidCommand(
                f"{op.name} payload is {size} bytes; Discord closes with 4002 over "
                f"{MAX_SEND_SIZE}: send less"
            )
        return payload, text_or_bytes

    def _frame(self, text_or_bytes: str | bytes) -> bytes:
        if isinstance(text_or_bytes, str):
            return self._ws.send(TextMessage(text_or_bytes))
        return self._ws.send(BytesMessage(text_or_bytes))

    def _encode(self, op: Opcode, data: Any) -> bytes:
        return self._frame(self._serialise(op, data)[1])

    def send_command(self, op: Opcode | int, data: Any, *, now: float | None = None) -> bytes:
        """Encode a command (op 3, 4, 8, 31, 43, ...) after IDENTIFY or RESUME was sent.

        Commands count against Discord's limit of 120 per 60 s per connection
        (protocol 41), minus the room heartbeats need. Over the limit the command is
        queued and ``b""`` returned; ``handle_timer()`` sends it when the window
        allows, and ``next_deadline()`` says when. Queued commands survive a
        resume; if the session is lost they are dropped with a
        :class:`CommandsDropped` event. Raises :class:`CommandQueueFull` when
        ``max_queued_commands`` are already waiting.
        """
        state = self._lifecycle.state
        if state not in SENDING_STATES:
            raise LocalProtocolError(
                f"can't send commands in state {state.value!r}: "
                + (
                    "the connection is closing"
                    if self.closing
                    else "send IDENTIFY or RESUME first (Discord closes with 4003 otherwise)"
                )
            )
        try:
            opcode = Opcode(op)
        except ValueError as exc:
            raise InvalidCommand(f"unknown opcode {op!r}") from exc
        if opcode in (Opcode.HEARTBEAT, Opcode.IDENTIFY, Opcode.RESUME):
            raise InvalidCommand(f"use heartbeat()/identify()/resume() to send {opcode.name}")
        if opcode in (
            Opcode.DISPATCH,
            Opcode.RECONNECT,
            Opcode.INVALID_SESSION,
            Opcode.HELLO,
            Opcode.HEARTBEAT_ACK,
        ):
            raise InvalidCommand(f"{opcode.name} is sent by the gateway, never by a client")
        payload, text_or_bytes = self._serialise(opcode, data)
        queue = self._command_queue
        if not queue and self._command_window.try_acquire(self._now(now), self.heartbeat_interval):
            return self._frame(text_or_bytes)
        if len(queue) >= self._max_queued_commands:
            raise CommandQueueFull(
                f"{len(queue)} commands already wait for the send limit (120 per 60 s); "
                "slow down or raise max_queued_commands"
            )
        queue.append((payload, text_or_bytes))
        return b""

    # The commands, validated before encoding (protocol 47-51). Names and
    # parameters of the first three are those of discord-gateway 0.4.0.

    def update_presence(
        self,
        *,
        activities: Iterable[commands.Activity | Mapping[str, Any]] = (),
        status: commands.Status | str = "online",
        afk: bool = False,
        since: int | None = None,
        now: float | None = None,
    ) -> bytes:
        """Update Presence (op 3); ``Status``/``Activity`` or Discord's raw strings and dicts."""
        data = commands.presence_data(activities=activities, status=status, afk=afk, since=since)
        return self.send_command(Opcode.PRESENCE_UPDATE, data, now=now)

    def update_voice_state(
        self,
        guild: int | str,
        channel: int | str | None,
        *,
        mute: bool = False,
        deafen: bool = False,
        now: float | None = None,
    ) -> bytes:
        """Update Voice State (op 4); ``channel=None`` disconnects."""
        data = commands.voice_state_data(guild, channel, self_mute=mute, self_deaf=deafen)
        return self.send_command(Opcode.VOICE_STATE_UPDATE, data, now=now)

    def request_guild_members(
        self,
        guild: int | str,
        *,
        limit: int | None = None,
        query: str | None = None,
        presences: bool | None = None,
        users: int | str | Iterable[int | str] | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> bytes:
        """Request Guild Members (op 8); the answer is GUILD_MEMBERS_CHUNK dispatches."""
        data = commands.request_guild_members_data(
            guild, query=query, limit=limit, presences=presences, user_ids=users, nonce=nonce
        )
        return self.send_command(Opcode.REQUEST_GUILD_MEMBERS, data, now=now)

    def request_soundboard_sounds(
        self, guild_ids: Iterable[int | str], *, now: float | None = None
    ) -> bytes:
        """Request Soundboard Sounds (op 31); one SOUNDBOARD_SOUNDS dispatch per guild."""
        data = commands.request_soundboard_sounds_data(guild_ids)
        return self.send_command(Opcode.REQUEST_SOUNDBOARD_SOUNDS, data, now=now)

    def request_channel_info(
        self,
        guild_id: int | str,
        fields: Iterable[str] = ("status", "voice_start_time"),
        *,
        now: float | None = None,
    ) -> bytes:
        """Request Channel Info (op 43); the answer is a CHANNEL_INFO dispatch."""
        data = commands.request_channel_info_data(guild_id, fields)
        return self.send_command(Opcode.REQUEST_CHANNEL_INFO, data, now=now)

    def connect(self, *, now: float | None = None) -> bytes:
        """The HTTP upgrade request for a fresh WebSocket to ``self.url``.

        It carries ``User-Agent`` and the ``headers`` given to the constructor.
        HELLO must follow within ``hello_timeout`` (see ``next_deadline()``).
        """
        state = self._lifecycle.state
        if state is not State.CONNECTING or self._upgrade_sent:
            raise LocalProtocolError(
                f"can't connect in state {state.value!r}"
                + (" (connect() was already called)" if state is State.CONNECTING else "")
                + ": call reconnect() first"
            )
        parts = self._target_url()
        host = parts.netloc.rpartition("@")[2]
        self._resume_attempt = self.should_resume
        data = self._ws.send(
            Request(host=host, target=self._request_target(parts), extra_headers=self._headers)
        )
        self._upgrade_sent = True
        self._hello_deadline = self._now(now) + self._hello_timeout
        self._log.debug("connecting to %s", self.url)
        return data

    def identify(
        self,
        *,
        token: str,
        intents: int,
        properties: Mapping[str, str] | None = None,
        compress: bool | None = None,
        large_threshold: int | None = None,
        shard: tuple[int, int] | list[int] | None = None,
        presence: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> bytes:
        """IDENTIFY: start a new session (protocol 17). Only after HELLO, once per connection.

        ``compress`` asks for payload compression; it defaults to the constructor's
        ``compress=True`` and cannot be combined with transport compression (protocol 36).
        Identifying replaces any session this connection held. READY must follow
        within ``ready_timeout`` of ``now`` (see ``next_deadline()``); without
        ``now``, of the next ``receive()`` or ``handle_timer()`` call, so that the
        deadline is in the caller's clock whatever clock that is.
        """
        self._require_hello("identify")
        if compress is None:
            compress = self.payload_compression
        if compress and self.transport_compression is not None:
            raise InvalidCommand(
                "payload compression can't be combined with transport compression "
                f"{self.transport_compression!r}: choose one or the other"
            )
        if compress and self.encoding != "json":
            raise InvalidCommand("payload compression works with JSON only: use encoding='json'")
        data = commands.identify_data(
            token=token,
            intents=intents,
            properties=properties,
            compress=True if compress else None,
            large_threshold=large_threshold,
            shard=shard,
            presence=presence,
        )
        out = self._encode(Opcode.IDENTIFY, data)
        self._fire(Trigger.IDENTIFY_SENT)
        self._drop_session()
        self._resume_attempt = False
        self._awaiting = "READY"
        self._await_answer(self._ready_timeout, now)
        return out

    def resume(self, token: str, *, now: float | None = None) -> bytes:
        """RESUME the session (protocol 26). Only after HELLO, and only with a session.

        The replay and RESUMED must follow within ``resume_timeout`` of ``now``
        (without ``now``: of the next ``receive()`` or ``handle_timer()`` call).
        """
        self._require_hello("resume")
        if not self.should_resume:
            raise LocalProtocolError(
                "there is no session to resume: identify() instead (should_resume is False)"
            )
        if not isinstance(token, str) or not token:
            raise InvalidCommand("token must be a non-empty string")
        out = self._encode(
            Opcode.RESUME, {"token": token, "session_id": self.session_id, "seq": self.sequence}
        )
        self._fire(Trigger.RESUME_SENT)
        self._resume_attempt = True
        self._awaiting = "RESUMED"
        self._await_answer(self._resume_timeout, now)
        return out

    def _await_answer(self, timeout: float, now: float | None) -> None:
        if now is None:
            self._answer_deadline = None
            self._answer_timeout = timeout
        else:
            self._answer_deadline = now + timeout
            self._answer_timeout = None

    def _anchor_answer_deadline(self, now: float) -> None:
        assert self._answer_timeout is not None
        self._answer_deadline = now + self._answer_timeout
        self._answer_timeout = None

    def _require_hello(self, what: str) -> None:
        state = self._lifecycle.state
        if state is State.HELLO:
            return
        if state is State.CONNECTING:
            reason = "wait for HELLO (the first event of every connection)"
        elif state in (State.IDENTIFYING, State.RESUMING, State.READY):
            reason = "IDENTIFY or RESUME was already sent on this connection (once only)"
        else:
            reason = "the connection is closing or closed; reconnect() first"
        raise LocalProtocolError(f"can't {what} in state {state.value!r}: {reason}")

    def close(
        self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", *, now: float | None = None
    ) -> bytes:
        """Start the close handshake; keep receiving until ``CloseDiscordConnection``.

        1000 (the default) and 1001 end the session (Discord shows the bot offline,
        protocol 30) and the connection: once the handshake is done (or timed out, or
        the transport dropped) the state is ``closed`` and ``should_reconnect()``
        False; ``reconnect()`` would start afresh with IDENTIFY. Any other code,
        e.g. 4000, keeps the session resumable and ends in ``reconnecting``.
        """
        if (
            not isinstance(code, int)
            or not (1000 <= code <= 4999)
            or code in (1004, 1005, 1006, 1015)
            or 1016 <= code <= 2999  # reserved for RFC 6455 itself: peers fail on them
        ):
            raise InvalidCommand(f"{code!r} is not a close code a client may send")
        if not isinstance(reason, str) or not _encodable(reason):
            raise InvalidCommand(f"the close reason must be text, not {_brief(reason, 40)}")
        state = self._lifecycle.state
        if state not in OPEN_STATES:
            raise LocalProtocolError(
                f"can't close in state {state.value!r}: already closing or closed"
            )
        if self._ws.connection is None:
            # No WebSocket yet: nothing to shake hands with. Our own code decides,
            # as when the gateway echoes it (protocol 30): 1000/1001 end the session,
            # and a code from the gateway's table (4004, 4009, ...) is not its verdict.
            self._close_sent_code = code
            self._connection_ended(code, peer_closed=False)
            return b""
        return self._start_close(code, reason, self._now(now))

    def _start_close(self, code: int, reason: str, now: float) -> bytes:
        data = self._ws.send(CloseConnection(code, reason))
        self._close_sent_code = code
        self._close_deadline = now + self._close_timeout
        self._fire(Trigger.CLOSE_SENT)
        self._log.info("closing the connection with %d (%s)", code, reason or "no reason")
        return data

    # -- Reconnecting ----------------------------------------------------------

    def reconnect(self) -> float:
        """Reset for a fresh WebSocket; return how many seconds to wait before connecting.

        0 for the first attempt after a working session, then exponential backoff
        with full jitter (base ``BACKOFF_BASE``, cap ``BACKOFF_CAP``), plus 1-5 s
        after op 9 d=false (protocol 28). READY and RESUMED reset the backoff.
        Events already received are kept: drain ``events()`` whenever you like.
        After your own ``close(1000)`` (state ``closed``, no fatal code) it starts
        afresh, without delay: the next connection identifies.
        """
        state = self._lifecycle.state
        if state is State.CLOSED:
            code = self._fatal_code
            if code is not None:
                meaning = close_policy(code).meaning
                raise LocalProtocolError(
                    f"the gateway closed with fatal code {code} ({meaning}); "
                    "reconnecting cannot succeed: fix the cause and start again"
                )
            self._attempts = 0
        elif state is not State.RECONNECTING and self._upgrade_sent:
            # The caller gave up on a WebSocket we still thought was open
            # (a socket error, a timeout): it is a lost transport (protocol 53).
            self._account_for_lost_connection()
        self._fire(Trigger.RECONNECT)
        self._new_websocket()
        attempt = self._attempts
        self._attempts += 1
        delay = 0.0
        if attempt > 0:
            delay = self._rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
        delay += self._invalid_session_wait
        self._invalid_session_wait = 0.0
        return delay

    def _drop_session(self) -> None:
        if self._command_queue:
            # Never resend commands meant for one session into another.
            dropped = tuple(payload for payload, _ in self._command_queue)
            self._command_queue.clear()
            self._events.append(
                CommandsDropped(dropped, "the session was lost", {"op": None, "d": list(dropped)})
            )
        self.session_id = None
        self.sequence = None
        self.resume_gateway_url = None
        self._resume_failures = 0
        self._awaiting = None  # a late READY/RESUMED would revive what was dropped
        self._answer_deadline = None
        self._answer_timeout = None

    def _account_for_lost_connection(self) -> None:
        """Book-keeping when a WebSocket ends: failed resumes (protocol 54)."""
        if self._resume_attempt:
            self._resume_attempt = False
            self._resume_failures += 1
            # "dropped when a resume connect fails": the next try uses the main URL.
            self.resume_gateway_url = None
            if self._resume_failures >= MAX_RESUME_ATTEMPTS:
                self._log.warning(
                    "%d resumes failed in a row; starting a new session", self._resume_failures
                )
                self._drop_session()

    def _connection_ended(
        self, code: int | None, *, peer_closed: bool, reason: str | None = None
    ) -> None:
        """The WebSocket is gone: decide what becomes of the session, then move state.

        ``code`` is the peer's close code (1006 if none), ``reason`` its close
        frame's reason. If we started the close, our own code decides (protocol 30),
        unless the peer's close frame crossed ours with a code of its own that
        ends the session or is fatal. A close the user asked for with 1000/1001
        ends the connection (``closed``), not just the session.
        """
        policy = close_policy(code)
        ours = self._close_sent_code
        ended_by_user = False
        if ours is not None and not peer_closed:
            keep_session = ours not in SESSION_ENDING_CLOSE_CODES
            # Only close() sends 1000/1001; our own closes (op 7, zombie, ...) use 4000.
            ended_by_user = not keep_session
            if code != ours and code in CLOSE_CODE_POLICIES and code is not None and code >= 4000:
                keep_session = keep_session and policy.resume
                fatal = not policy.reconnect
            else:
                fatal = False
        else:
            keep_session = policy.resume
            fatal = not policy.reconnect
        self._account_for_lost_connection()
        if not keep_session:
            self._drop_session()
        if fatal:
            self._fatal_code = code
            self._fatal_reason = reason or None
            self._log.error(
                "the gateway closed with fatal code %s (%s)%s",
                code,
                policy.meaning,
                f": {reason}" if reason else "",
            )
            self._fire(Trigger.CLOSED_FATALLY)
        elif ended_by_user:
            self._log.info("the connection is closed, as close(%s) asked", ours)
            self._fire(Trigger.CLOSED_BY_USER)
        else:
            self._fire(Trigger.DISCONNECTED)

    # -- Receiving ---------------------------------------------------------------

    def receive(self, data: bytes | None, now: float | None = None) -> list[bytes]:
        """Feed bytes read from the socket; return bytes to write back.

        ``None`` or ``b''`` means the transport was lost. Events are queued for
        ``events()``. Raises :class:`CloseDiscordConnection` when the WebSocket
        has closed, :class:`ConnectionRejected` when the upgrade was refused and
        :class:`RemoteProtocolError` when the gateway sent garbage (the
        connection is then closing with a resumable code; write ``err.data``).
        Nothing else ever leaves it, whatever the bytes: an unexpected exception
        (a bug) is logged at ERROR and raised as :class:`InternalError`, a
        ``RemoteProtocolError`` the connection recovers from the same way.
        """
        try:
            # The whole read is handled here, inline: one call less per read.
            state = self._lifecycle.state
            if state is _RECONNECTING or state is _CLOSED:
                return []  # late bytes from a WebSocket that is already gone
            if not self._upgrade_sent:
                raise LocalProtocolError("call connect() and send its bytes before receiving")
            if self._answer_timeout is not None:
                self._anchor_answer_deadline(self._now(now))
            ws = self._ws
            if not data:
                data = None
                if ws.connection is None:
                    self._connection_ended(CloseCode.ABNORMAL_CLOSURE, peer_closed=True)
                    raise CloseDiscordConnection(
                        None,
                        CloseCode.ABNORMAL_CLOSURE,
                        "connection lost during the WebSocket upgrade",
                    )
            # A read that starts where wsproto stands at a message boundary, with
            # nothing else waiting: the fast path takes it at once (the common case).
            direct: bytes | None = None
            if data is None:
                # wsproto reports the lost transport ahead of anything still unread.
                self._fast_queue.clear()
                self._fast_carry = b""
                self._fast_rest = 0
                self._feed_websocket(None)
            else:
                if self._fast_carry:
                    data = self._fast_carry + data
                    self._fast_carry = b""
                if self._fast_queue or self._fast_rest:
                    self._fast_queue.append(data if type(data) is bytes else bytes(data))
                elif self._fast_frames and (start := _fastframes.boundary(ws)) >= 0:
                    if start or self._ws_unread:
                        # Read message by message as it is handled (_process_events).
                        self._fast_queue.append(data if type(data) is bytes else bytes(data))
                    else:
                        direct = data if type(data) is bytes else bytes(data)
                else:
                    self._feed_websocket(data)
            out: list[bytes] = []
            while True:
                try:
                    if direct is not None:
                        # Cleared first: after an error the rest of it is queued.
                        item, direct = direct, None
                        rest = self._fast_messages(item, out, now)
                        if rest:
                            self._feed_websocket(rest)  # wsproto's from here
                    if self._ws_unread or self._fast_queue:
                        self._process_events(out, now)
                    return out
                except CloseDiscordConnection as closed:
                    # The close frame came in the same read as something we answered
                    # (op 7 then 1001, protocol 52): our close frame and any other reply
                    # still have to be written, before the answer to theirs.
                    if out:
                        closed.data = b"".join(out) + (closed.data or b"")
                    raise
                except RemoteProtocolError as exc:
                    state = self._lifecycle.state
                    if state is State.CLOSING:
                        # Already closing: log it and keep reading towards the close
                        # frame (a late READY still counts). A flood is logged once.
                        self._ignored_while_closing += 1
                        level = (
                            logging.WARNING if self._ignored_while_closing == 1 else logging.DEBUG
                        )
                        self._log.log(level, "ignoring an invalid payload while closing: %s", exc)
                        continue
                    if state in OPEN_STATES:
                        out.append(
                            self._start_close(
                                RESUMABLE_CLOSE_CODE, "invalid payload", self._now(now)
                            )
                        )
                    exc.data = b"".join(out)
                    raise
        except (GatewayError, CloseDiscordConnection):
            raise
        except Exception as exc:
            raise self._internal_error(exc, now) from exc

    def _internal_error(self, exc: Exception, now: float | None) -> InternalError:
        """The last-resort net of ``receive()``: close as after garbage, and say so loudly."""
        self._log.error(
            "internal error in discord-gateway while reading from the gateway; "
            "closing the connection (the session is kept). Please report this "
            "with the traceback",
            exc_info=exc,
        )
        data = b""
        try:
            state = self._lifecycle.state
            if state in OPEN_STATES and self._ws.state is ConnectionState.OPEN:
                data = self._start_close(RESUMABLE_CLOSE_CODE, "internal error", self._now(now))
            elif state in OPEN_STATES or state is State.CLOSING:
                self._connection_ended(CloseCode.ABNORMAL_CLOSURE, peer_closed=False)
        except Exception:  # pragma: no cover - a second bug while handling the first
            self._log.exception("could not close the connection after an internal error")
        return InternalError(
            f"internal error while reading from the gateway ({type(exc).__name__}: "
            f"{_brief(str(exc), 200)}); please report it",
            data,
        )

    def _feed_websocket(self, data: bytes | None) -> None:
        self._ws_unread = True
        try:
            self._ws.receive_data(data)
        except Exception as exc:
            # wsproto's own errors, and whatever its upgrade parsing lets through
            # (UnicodeDecodeError for a non-ASCII byte in the 101's headers).
            raise self._broken_websocket(exc) from exc

    def _broken_websocket(self, exc: Exception) -> RemoteProtocolError:
        """wsproto itself failed on the gateway's bytes: this WebSocket is over.

        During the upgrade there is no WebSocket to close; after it, the byte
        stream cannot be trusted any more, so the connection ends as if the
        transport had dropped (1006: resumable, unless we were closing with
        1000/1001 ourselves).
        """
        upgrading = self._ws.connection is None
        self._connection_ended(CloseCode.ABNORMAL_CLOSURE, peer_closed=upgrading)
        what = "response to the WebSocket upgrade" if upgrading else "WebSocket data"
        return RemoteProtocolError(f"invalid {what}: {_brief(str(exc), 200)}")

    def _process_events(self, out: list[bytes], now: float | None) -> None:
        """Handle what was read, in stream order: wsproto's events first, then
        the reads queued for the fast path (see ``_fastframes``)."""
        queue = self._fast_queue
        while True:
            if self._ws_unread:
                self._process_websocket_events(out, now)
            if not queue:
                return
            item = queue.pop(0)
            if isinstance(item, tuple):  # a fragment of a message the fast path took
                text, data, finished = item
                codec = self._codec
                payload = codec.text(data, finished) if text else codec.binary(data, finished)
                if payload is not None:
                    self._on_payload(payload, out, now)
                continue
            if self._ws.state is ConnectionState.CLOSED:  # pragma: no cover - the close
                # frame ends the lifecycle's reading first (receive() returns early).
                queue.clear()  # after the close frame nothing more is read
                return
            while queue and not isinstance(queue[0], tuple):
                # Reads queued behind an error: all of them at once, as
                # wsproto would see them in its buffer (and, if they are
                # wsproto's, it gets them at once too: it cuts the chunks of a
                # frame where its buffer ends).
                item += cast(bytes, queue.pop(0))
            if self._fast_rest:
                item = self._fast_frame_rest(item, out, now)
                if not item:
                    continue
            start = _fastframes.boundary(self._ws)
            if 0 < start < len(item):
                # Only once wsproto has read the end of the frame it is in (and
                # perhaps refused it, which ends its parsing) is it known where
                # the stream stands.
                queue.insert(0, item[start:])
                self._feed_websocket(item[:start])
                continue
            if start == 0:
                item = self._fast_messages(item, out, now)
                if not item:
                    continue
            self._feed_websocket(item)  # wsproto's from here

    def _fast_messages(self, data: bytes, out: list[bytes], now: float | None) -> bytes:
        """Handle the plain messages at the start of ``data`` (wsproto is at a
        message boundary); return the rest, which is wsproto's.

        A message is handed to the codec once taken: if handling it raises,
        the rest of ``data`` goes back to the front of the queue, as wsproto
        keeps what it has not parsed yet. A data frame's header cut by the end
        of the read is kept for the next read (``_fastframes.incomplete_header``).
        """
        codec = self._codec
        max_size = codec.max_size
        size = len(data)
        pos = 0
        try:
            while pos < size:
                # _fastframes.message() inlined for its common case, one call less
                # per event: a whole binary frame under 64 KiB (FIN, RSV clear,
                # unmasked, length minimally encoded).
                start = end = -1
                first = data[pos]
                if (first == 0x82 or first == 0x81) and size - pos > 3:
                    length = data[pos + 1]
                    if length < 126:
                        start = pos + 2
                        end = start + length
                    elif length == 126:
                        length = (data[pos + 2] << 8) | data[pos + 3]
                        if length >= 126:
                            start = pos + 4
                            end = start + length
                if 0 <= end <= size and end - start <= max_size:
                    if first == 0x82:
                        pos = end
                        payload = codec.binary_message(data[start:end])
                    else:
                        frame_at, pos = pos, end
                        try:
                            payload = codec.text_message(data[start:end])
                        except UnicodeDecodeError:
                            pos = frame_at  # wsproto's from this frame on: it closes with 1007
                            break
                else:
                    kind, what, end = _fastframes.message(data, pos, max_size)
                    if kind < 0:
                        break
                    pos = end
                    if kind == 2:
                        payload = codec.binary_message(what)
                    elif kind == 1:
                        payload = codec.text(what, True)
                    else:  # a fragmented message: its chunks one by one, as wsproto yields them
                        queue = self._fast_queue
                        queue[0:0] = [*what, data[pos:]] if pos < size else what
                        return b""
                if payload is None:
                    continue
                if type(payload) is not dict:
                    raise RemoteProtocolError(
                        f"gateway payload is not an object: {_brief(payload)}"
                    )
                if payload.get("op") == 0:
                    self._on_dispatch(payload)
                else:
                    self._on_control(payload, out, now)
        except BaseException:
            if pos < size:
                self._fast_queue.insert(0, data[pos:])
            raise
        if pos == size:
            return b""
        start, end = _fastframes.cut_binary_frame(data, pos, max_size)
        if start >= 0:
            # Streamed to the codec read by read, as wsproto would.
            self._fast_rest = end - len(data)
            self._fast_messages_piece(data[start:], out, now)
            return b""
        if not self._fast_queue and _fastframes.incomplete_header(data, pos):
            self._fast_carry = data[pos:]
            return b""
        return data[pos:] if pos else data

    def _fast_messages_piece(self, piece: bytes, out: list[bytes], now: float | None) -> None:
        """A piece of the binary frame being streamed (``_fast_rest`` set after it)."""
        if piece:  # wsproto yields nothing for a frame cut right after its header
            payload = self._codec.binary(piece, not self._fast_rest)
            if payload is not None:
                self._on_payload(payload, out, now)

    def _fast_frame_rest(self, data: bytes, out: list[bytes], now: float | None) -> bytes:
        """The next piece of the binary frame being streamed; return what follows it."""
        size = self._fast_rest
        if len(data) <= size:
            self._fast_rest = size - len(data)
            self._fast_messages_piece(data, out, now)
            return b""
        self._fast_rest = 0
        rest = data[size:]
        try:
            self._fast_messages_piece(data[:size], out, now)
        except BaseException:
            self._fast_queue.insert(0, rest)
            raise
        return rest

    def _on_payload(self, payload: Any, out: list[bytes], now: float | None) -> None:
        if type(payload) is not dict:
            raise RemoteProtocolError(f"gateway payload is not an object: {_brief(payload)}")
        if payload.get("op") == 0:
            self._on_dispatch(payload)
        else:
            self._on_control(payload, out, now)

    def _process_websocket_events(self, out: list[bytes], now: float | None) -> None:
        codec = self._codec
        ws = self._ws
        events = ws.events()
        while True:
            try:
                event = next(events)
            except StopIteration:
                self._ws_unread = False
                return
            except Exception as exc:  # pragma: no cover - wsproto 1.2-1.3 turn every
                # framing error into a CloseConnection event; this guards later versions.
                raise self._broken_websocket(exc) from exc
            if isinstance(event, TextMessage):
                # A message the codec refused (over the cap, corrupt) is dropped
                # whole: it keeps none of it and discards its later chunks
                # unread, so nothing piles up while we read towards the close.
                payload = codec.text(event.data, event.message_finished)
            elif isinstance(event, BytesMessage):
                # zlib, zstd and our ETF decoder take wsproto's bytearray as is:
                # no copy per message.
                payload = codec.binary(event.data, event.message_finished)
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    out.append(ws.send(event.response()))
                else:
                    # After our close frame no Pong may be sent (RFC 6455 5.5.1).
                    self._log.debug("ignoring a ping read after our close frame")
                continue
            elif isinstance(event, AcceptConnection):
                self._log.debug("WebSocket upgrade accepted")
                continue
            elif isinstance(event, RejectConnection):
                raise ConnectionRejected(event)
            elif isinstance(event, RejectData):
                # Keep what explains the refusal, never an endless body.
                room = MAX_REJECTED_BODY - len(self._rejected_body)
                if room > 0:
                    self._rejected_body += event.data[:room]
                if event.body_finished:
                    body = bytes(self._rejected_body)
                    self._rejected_body.clear()
                    raise RejectedConnectionData(body)
                continue
            else:
                continue
            if payload is None:
                continue
            self._on_payload(payload, out, now)

    def _on_close(self, event: CloseConnection) -> None:
        ws_state = self._ws.state
        if ws_state is ConnectionState.OPEN:
            # wsproto reports a framing error as a close it wants us to send.
            raise RemoteProtocolError(f"invalid WebSocket frame: {event.reason}")
        peer_closed = ws_state is ConnectionState.REMOTE_CLOSING
        reply = self._ws.send(event.response()) if peer_closed else None
        code = int(event.code)
        reason = event.reason or None
        self._log.info("WebSocket closed: %s (%s)", code, reason or "no reason")
        self._connection_ended(
            code, peer_closed=peer_closed or self._close_sent_code is None, reason=reason
        )
        raise CloseDiscordConnection(reply, code, reason)

    def _on_dispatch(self, payload: dict[str, Any]) -> None:
        # Hot path: no Machine, no clock, nothing allocated but the event.
        # protocol 6: remember the last non-null s.
        name = payload.get("t")
        if type(name) is not str:
            raise RemoteProtocolError(f"dispatch without an event name: {_brief(payload)}")
        if (
            self.session_id is None
            and self._awaiting is None
            and self._lifecycle.state is State.CLOSING
        ):
            # The session was given up on this WebSocket (op 9 false, protocol 28):
            # what the gateway still sends on it (a replay, a RESUMED crossing
            # the op 9) belongs to no session of ours. The next IDENTIFY starts
            # afresh; its READY carries the state.
            self._log.info("ignoring %s read after the session was invalidated", name)
            return
        seq = payload.get("s")
        if seq is not None and (type(seq) is not int or not 0 <= seq <= MAX_SEQUENCE):
            # Refused before it is stored: every heartbeat and RESUME carries it.
            raise RemoteProtocolError(
                f"dispatch sequence is not an integer from 0 to 2**63-1: {_brief(seq, 40)}"
            )
        if name == "READY" or name == "RESUMED":
            # Never judged by their s: READY starts the session's numbering and
            # RESUMED ends a resume, whatever s they carry.
            self._on_session_dispatch(payload, name, seq)
            return
        if seq is not None:
            last = self.sequence
            if last is not None and seq <= last and self._not_above_last(seq, last):
                return
            self.sequence = seq
        self._events.append(payload)  # its Dispatch is built by events()

    def _not_above_last(self, seq: int, last: int) -> bool:
        """A dispatch whose ``s`` is not above the last one: True to drop it.

        Only a resume's replay overlapping what was already delivered is dropped
        (protocol 24: never twice). Anywhere else the gateway is out of order: the
        dispatch is delivered, counted and logged (sparingly), and the sequence
        follows the latest ``s`` received (protocol 6) - never a reason to wedge.
        """
        if self._awaiting == "RESUMED":
            self._log.debug("dropping replayed dispatch s=%d (delivered up to %d)", seq, last)
            return True
        self.out_of_order_dispatches += 1
        count = self.out_of_order_dispatches
        if count == 1 or count % OUT_OF_ORDER_LOG_EVERY == 0:
            self._log.warning(
                "dispatch s=%d is not above the last one (%d); delivering it anyway "
                "(%d out-of-order dispatches so far, logged every %d)",
                seq,
                last,
                count,
                OUT_OF_ORDER_LOG_EVERY,
            )
        return False

    def _on_session_dispatch(self, payload: dict[str, Any], name: str, seq: int | None) -> None:
        data = payload.get("d")
        state = self._lifecycle.state
        if name == "READY":
            if type(data) is not dict:
                data = {}
            session_id = data.get("session_id")
            if not _sendable_session_id(session_id):
                # It goes back in every RESUME: one that cannot (over 4096 bytes
                # with the token, or text that cannot be encoded, such as an ETF
                # binary that is not UTF-8) would make resume() fail on every attempt.
                raise RemoteProtocolError(f"READY without a valid session_id: {_brief(session_id)}")
            # After our close frame went out, the READY answering our IDENTIFY may
            # still arrive: its session is real (and resumable unless we closed
            # with 1000/1001), so keep it, without a lifecycle move.
            late = state is State.CLOSING and self._awaiting == name
            if state is not State.IDENTIFYING and not late:
                raise RemoteProtocolError(f"READY in state {state.value!r}")
            resume_url = data.get("resume_gateway_url")
            if resume_url is not None:
                problem = _resume_url_problem(resume_url, self._url)
                if problem is not None:
                    self._log.warning(
                        "not following READY's resume_gateway_url (%s); "
                        "resumes will use the original URL",
                        problem,
                    )
                    resume_url = None
            if not late:
                self._fire(Trigger.READY_RECEIVED)
            self._awaiting = None
            self._answer_deadline = None
            self._answer_timeout = None
            self.session_id = session_id
            if seq is not None:
                # A new session's numbering starts at READY's s, whatever came
                # before it on this WebSocket (protocol 22).
                self.sequence = seq
            self.resume_gateway_url = resume_url  # protocol 22
            self._attempts = 0
            self._resume_failures = 0
            self._events.append(Ready(name, seq, data, payload, session_id, resume_url))
            return
        late = state is State.CLOSING and self._awaiting == name
        if state is State.READY:
            # A session's replay (protocol 24) may hold the RESUMED of an earlier
            # resume, which then arrives before this resume's own RESUMED (or a
            # gateway repeats one). Rejecting it would close, resume, and be
            # replayed the same again: pass it on as a plain dispatch instead.
            self._log.warning("RESUMED s=%s while already ready; passing it on as a dispatch", seq)
            if seq is not None:
                last = self.sequence
                if last is not None and seq <= last:
                    self._not_above_last(seq, last)
                self.sequence = seq
            self._events.append(new_dispatch(name, seq, data, payload))
            return
        if state is not State.RESUMING and not late:
            raise RemoteProtocolError(f"RESUMED in state {state.value!r}")
        if not late:
            self._fire(Trigger.RESUMED_RECEIVED)
        self._awaiting = None
        self._answer_deadline = None
        self._answer_timeout = None
        self._attempts = 0
        self._resume_failures = 0
        self._resume_attempt = False
        if seq is not None and (self.sequence is None or seq > self.sequence):
            # A gateway may send RESUMED with the client's own last s: it ends
            # the resume all the same, and the sequence never moves back.
            self.sequence = seq
        # protocol 24: RESUMED carries no new URL; keep resume_gateway_url.
        self._events.append(Resumed(name, seq, data, payload))

    def _on_control(self, payload: dict[str, Any], out: list[bytes], now: float | None) -> None:
        op = payload.get("op")
        state = self._lifecycle.state
        if op == Opcode.HEARTBEAT_ACK:
            # Any ACK proves the connection alive, including one answering a
            # heartbeat we sent for a server op 1: zombie detection only needs
            # *a* sign of life between two of our heartbeats (protocol 13).
            self._ack_pending = False
            latency = None
            if self._last_heartbeat_sent is not None:
                latency = self._now(now) - self._last_heartbeat_sent
                self._latencies.append(latency)
                if len(self._latencies) > 5:
                    del self._latencies[0]
                self._last_heartbeat_sent = None
            if self.dispatch_handled:
                self._events.append(HeartbeatAck(latency, payload))
        elif op == Opcode.HEARTBEAT:
            # protocol 12: answer at once, without waiting for the interval.
            if state in HEARTBEAT_STATES:
                out.append(self._send_heartbeat(self._now(now), expect_ack=False))
            else:
                self._log.debug("ignoring a heartbeat request in state %s", state.value)
            if self.dispatch_handled:
                self._events.append(HeartbeatRequest(payload))
        elif op == Opcode.HELLO:
            self._on_hello(payload, now)
        elif op == Opcode.RECONNECT:
            # protocol 16, 25: may come at any point, even instead of HELLO.
            if state in OPEN_STATES:
                out.append(
                    self._start_close(RESUMABLE_CLOSE_CODE, "reconnect requested", self._now(now))
                )
            if self.dispatch_handled:
                self._events.append(Reconnect(payload))
        elif op == Opcode.INVALID_SESSION:
            resumable = payload.get("d") is True
            if not resumable:
                # protocol 28: a new session, after a random 1-5 s wait.
                self._drop_session()
                self._invalid_session_wait = self._rng.uniform(*INVALID_SESSION_WAIT)
            if state in OPEN_STATES:
                out.append(
                    self._start_close(RESUMABLE_CLOSE_CODE, "invalid session", self._now(now))
                )
            if self.dispatch_handled:
                self._events.append(InvalidSession(resumable, payload))
        else:
            # protocol 7: unknown opcodes are logged, never fatal.
            self._log.warning("ignoring a message with unknown opcode %s", _brief(op, 40))
            if self.dispatch_handled:
                self._events.append(UnknownMessage(op, payload))

    def _on_hello(self, payload: dict[str, Any], now: float | None) -> None:
        data = payload.get("d")
        interval = data.get("heartbeat_interval") if type(data) is dict else None
        # protocol 9: milliseconds. Bounded, so no deadline can overflow a selector:
        # bignums, inf, nan and 1e300 are all refused here.
        if type(interval) not in (int, float) or not (
            MIN_HEARTBEAT_INTERVAL_MS <= interval <= MAX_HEARTBEAT_INTERVAL_MS  # type: ignore[operator]
        ):
            raise RemoteProtocolError(
                "HELLO without a valid heartbeat_interval (milliseconds, "
                f"{MIN_HEARTBEAT_INTERVAL_MS} to {MAX_HEARTBEAT_INTERVAL_MS}): {_brief(data)}"
            )
        if self._lifecycle.state is not State.CONNECTING:
            self._log.warning("ignoring a second HELLO in state %s", self._lifecycle.state.value)
            return
        self._fire(Trigger.HELLO_RECEIVED)
        now = self._now(now)
        self._hello_at = now
        self.heartbeat_interval = interval / 1000  # type: ignore[operator]
        # protocol 10: first heartbeat after interval * jitter, jitter in [0, 1)
        # (on the grid: at its resolution, and never later).
        self._next_heartbeat = self._on_grid(now + self.heartbeat_interval * self._rng.random())
        self._ack_pending = False  # protocol 14: a stale flag would loop on 4000
        self._last_heartbeat_sent = None
        self._events.append(Hello(self.heartbeat_interval, payload))
