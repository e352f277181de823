"""The in-memory world the gateway machines run in: wires, links, a wire tap and the model.

A :class:`Link` is one TCP connection between the ``DiscordConnection`` under
test and one sans-I/O ``GatewayServer``. Bytes written by either side wait in
the link (``up``: client to server, ``down``: server to client) until a rule
delivers them, in any split. A side that closes its socket sets an EOF that is
delivered after the bytes already in flight.

Everything the client writes also goes through a *tap*: a server-role wsproto
connection that decodes the client's frames at the moment they are produced,
so invariants see each payload together with the client's state when it was
emitted (the real server only sees it when a rule delivers it).

:class:`Model` is the reference model: what must be true of the session,
derived only from what crossed the wire and the events the client yielded,
written from the checklist (``docs/protocol.md``), not from the
core's code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from discord_gateway import _etf
from discord_gateway.fsm import State
from discord_gateway.opcodes import close_policy
from discord_gateway.testing import Deviations, GatewayServer, ServerConfig, Session, SessionStore

INTERVAL = 10.0  # seconds; the server's heartbeat_interval
MAIN_URL = "ws://gateway.local/"
RESUME_URL = "ws://resume.gateway.local/"
TOKEN = "local-token"
#: GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES: the machines push MESSAGE_CREATEs
#: without a guild_id (DMs), and the local gateway filters by intents as Discord does.
INTENTS = 4609

#: Fatal close codes (protocol 31, table H).
FATAL_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})
#: Codes that end the session when the gateway sends them (table H).
SESSION_ENDING_SERVER_CODES = frozenset({4003, 4007, 4009}) | FATAL_CODES
#: Codes the gateway uses to punish a misbehaving client: the harness never
#: injects them, so seeing one means the client broke a rule (protocol 12, 18, 41, 42).
CLIENT_FAULT_CODES = frozenset({4001, 4002, 4003, 4005, 4008})

# -- profiles -------------------------------------------------------------------------

#: (max_examples, stateful_step_count) per HYPOTHESIS_PROFILE, for the machines only;
#: the rest of the suite keeps its own explicit settings.
_BUDGETS = {"dev": (30, 40), "ci": (2000, 80), "fuzz": (20_000, 120)}


def budget() -> tuple[int, int]:
    """The profile's budget; ``STATEFUL_EXAMPLES=n`` overrides the example count."""
    examples, steps = _BUDGETS.get(os.environ.get("HYPOTHESIS_PROFILE", "dev"), _BUDGETS["dev"])
    return int(os.environ.get("STATEFUL_EXAMPLES", examples)), steps


class RecordingStore(SessionStore):
    """A ``SessionStore`` that remembers every session it created, destroyed or not."""

    def __init__(self, config: ServerConfig, *, seed: int) -> None:
        super().__init__(config, seed=seed)
        self.created: dict[str, Session] = {}

    def create_session(self, token: str, intents: int, shard: tuple[int, int] | None) -> Session:
        session = super().create_session(token, intents, shard)
        self.created[session.session_id] = session
        return session


def new_store(**overrides: Any) -> RecordingStore:
    config: dict[str, Any] = {
        "heartbeat_interval": INTERVAL,
        "heartbeat_grace": 2.0,
        "url": MAIN_URL,
        "resume_gateway_url": RESUME_URL,
        "guild_ids": (),
        "tokens": frozenset({TOKEN}),
        # Opt-outs of limits the model does not track: the machine identifies back
        # to back (protocol 21's 5 s buckets and the session start budget would turn
        # its IDENTIFYs into op 9 / 4004), and it may hold the client's upgrade
        # request in flight for any virtual time (the request-head deadline).
        "enforce_identify_concurrency": False,
        "enforce_session_start_limit": False,
        "handshake_timeout": 1e9,
    }
    config.update(overrides)
    return RecordingStore(ServerConfig(**config), seed=1)


# -- the wire ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One payload (or close frame) the client wrote, as the tap decoded it."""

    op: int | None  # None: a close frame
    data: Any
    close_code: int | None = None


class Tap:
    """Decodes the client's side of one WebSocket at the moment it is written."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.ws = WSConnection(ConnectionType.SERVER)
        self.closed = False

    def feed(self, data: bytes) -> list[Sent]:
        out: list[Sent] = []
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Request):
                self.ws.send(AcceptConnection())
            elif isinstance(event, CloseConnection):
                out.append(Sent(None, None, event.code))
                self.closed = True
            elif isinstance(event, TextMessage | BytesMessage):
                assert event.message_finished, "the client writes whole messages"
                raw = event.data
                payload = json.loads(raw) if isinstance(raw, str) else _etf.loads(raw)
                assert set(payload) == {"op", "d"}, f"protocol 8: only op and d: {payload}"
                out.append(Sent(payload["op"], payload["d"]))
        return out


@dataclass(eq=False)
class Link:
    """One TCP connection and what the model knows about it."""

    number: int
    server: GatewayServer
    url: str  # what the client connected to
    tap: Tap
    resume_attempt: bool  # the model expected this connection to RESUME
    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)
    client_gone: bool = False  # the client closed its socket: EOF follows ``up``
    server_eof_sent: bool = False  # the server closed its socket: EOF follows ``down``
    server_saw_eof: bool = False
    client_saw_eof: bool = False
    hello: bool = False
    identifies: int = 0
    pre_ready: int = 0  # dispatches delivered before READY (a seq_from_zero server)
    got_ready: bool = False
    resumes: int = 0
    got_resumed: bool = False
    client_close: int | None = None  # the code of the close frame the client started
    client_answered_close: bool = False
    requested_close: int | None = None  # a close() the driver asked for
    unacked_since: float | None = None  # first heartbeat still waiting for its ACK
    injected_closes: set[int] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)

    def pull_server_output(self) -> None:
        for chunk in self.server.data_to_send():
            if not self.client_gone:
                self.down += chunk
        if not self.server_eof_sent and (
            self.server.aborted or self.server.state.value == "closed"
        ):
            self.server_eof_sent = True


# -- the reference model -------------------------------------------------------------------


@dataclass
class Model:
    """What must be true of the client, from the checklist.

    ``deviations`` is how the server departs from Discord (the run's profile):
    the model accounts for it (READY's seq, RESUMED's seq, the replay's overlap).
    """

    deviations: Deviations = field(default_factory=Deviations)
    state: State = State.CONNECTING
    session_id: str | None = None
    session: Session | None = None  # the server's record of it
    last_seq: int | None = None
    resume_url: str | None = None
    resume_failures: int = 0
    invalid_session_wait: bool = False  # op 9 d:false seen: wait 1-5 s (protocol 28)
    fatal: int | None = None
    delivered: dict[str, list[int]] = field(default_factory=dict)

    @property
    def resumable(self) -> bool:
        return self.session_id is not None and self.last_seq is not None

    @property
    def ready_seq(self) -> int:
        """READY's ``s``: 1 (protocol 22), 0 from a server that numbers from 0."""
        return 0 if self.deviations.seq_from_zero else 1

    def logged(self, seq: int) -> dict[str, Any]:
        """The server's record of dispatch ``seq`` of the live session.

        Counted from the end: after READY the log's seqs rise one by one (before
        it, a seq_from_zero server logs two dispatches with s=0).
        """
        assert self.session is not None
        log = self.session.log
        payload = log[len(log) - 1 - (log[-1]["s"] - seq)]
        assert payload["s"] == seq, (payload, seq)
        return payload

    def drop_session(self) -> None:
        self.session_id = None
        self.session = None
        self.last_seq = None
        self.resume_url = None
        self.resume_failures = 0

    def connection_ended(self, link: Link, code: int | None) -> None:
        """The WebSocket of ``link`` is gone, with the peer's ``code`` (1006 if none).

        protocol 30: if we started the close, our code decides (1000/1001 end the
        session); a gateway close frame that crossed ours with a session-ending or
        fatal code of its own still counts (table H). Otherwise the gateway's code
        decides (protocol 25, 31, 32).
        """
        ours = link.client_close
        if ours is not None:
            keep = ours not in (1000, 1001)
            fatal = False
            if code is not None and code != ours and code >= 4000:
                keep = keep and code not in SESSION_ENDING_SERVER_CODES
                fatal = code in FATAL_CODES
        else:
            policy = close_policy(code)
            keep, fatal = policy.resume, not policy.reconnect
        self.account_for_lost_connection(link)
        if not keep:
            self.drop_session()
        if fatal:
            self.fatal = code
            self.state = State.CLOSED
        elif ours in (1000, 1001):
            self.state = State.CLOSED  # the user's own close ends the connection
        else:
            self.state = State.RECONNECTING

    def account_for_lost_connection(self, link: Link) -> None:
        # protocol 54: a resume that never got RESUMED failed; the next try goes to the
        # main URL, and after three in a row the session is given up.
        if link.resume_attempt and not link.got_resumed and link.identifies == 0:
            link.resume_attempt = False
            self.resume_failures += 1
            self.resume_url = None
            if self.resume_failures >= 3:
                self.drop_session()

    def expected_url_prefix(self) -> str:
        if self.resumable and self.resume_url is not None:
            return self.resume_url  # protocol 4, 26
        return MAIN_URL  # protocol 1, 27
