"""Issue 12: real servers that deviate, and hostile bytes. Each test names the
behaviour it guards; each failed on the core before issue 12."""

from __future__ import annotations

import logging
import math
import random
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import discord_gateway
from discord_gateway import (
    CloseDiscordConnection,
    ConfigurationError,
    DiscordConnection,
    Dispatch,
    GatewayError,
    InternalError,
    InvalidCommand,
    LocalProtocolError,
    Ready,
    RejectedConnectionData,
    RemoteProtocolError,
    Resumed,
    State,
    _etf,
)
from discord_gateway._version import __version__
from discord_gateway.connection import (
    MAX_HEARTBEAT_INTERVAL_MS,
    MAX_REJECTED_BODY,
    READY_TIMEOUT,
    RESUME_TIMEOUT,
    USER_AGENT,
)

from peer import Link, Peer, client_frames, hello_link, ready_link

ROOT = Path(__file__).parent.parent
HOUR_MS = 3_600_000  # the HELLO interval that puts the first heartbeat far away


def close_frame(data: bytes) -> tuple[int, str]:
    """The code and reason of the close frame in ``data``."""
    frames = [payload for opcode, payload in client_frames(data) if opcode == 8]
    assert len(frames) == 1, frames
    return int.from_bytes(frames[0][:2], "big"), frames[0][2:].decode()


def finish_close(link: Link) -> CloseDiscordConnection:
    reply, link.peer_replies = link.peer_replies, b""
    assert reply, "the client did not close"
    link.deliver(reply)
    assert link.closed is not None
    return link.closed


def resuming_link(seq: int = 5, **kwargs: Any) -> Link:
    """A connection built with a session, HELLO read, RESUME sent at now=0."""
    conn = DiscordConnection(
        "wss://gateway.discord.gg", session_id="abc", sequence=seq, rng=random.Random(0), **kwargs
    )
    link = Link(conn)
    link.hello(HOUR_MS)
    link.client(conn.resume("t0ken", now=link.now))
    assert conn.state is State.RESUMING
    return link


def seqs(link: Link) -> list[tuple[str, int | None]]:
    return [(e.name, e.seq) for e in link.events() if isinstance(e, Dispatch)]


# -- 1. READY always starts the session -------------------------------------------------


@pytest.mark.parametrize("split", [None, 1])
def test_ready_with_s_0_after_a_dispatch_with_s_0_starts_the_session(split: int | None) -> None:
    # A real server numbers a dispatch before READY with s=0, then READY with s=0:
    # READY used to be dropped as a duplicate and the connection never got ready.
    link = hello_link(split=split)
    link.identify()
    link.dispatch(0, "GUILD_CREATE")
    link.ready(seq=0)
    assert link.conn.state is State.READY
    assert seqs(link) == [("GUILD_CREATE", 0), ("READY", 0)]
    assert link.conn.sequence == 0
    assert link.conn.should_resume
    assert link.conn.out_of_order_dispatches == 0  # READY is never judged by its s
    link.dispatch(1)
    assert seqs(link) == [("MESSAGE_CREATE", 1)]


def test_readys_s_is_the_sessions_sequence_even_below_what_came_before() -> None:
    link = hello_link()
    link.identify()
    link.dispatch(7, "GUILD_CREATE")
    link.ready(seq=3)
    assert link.conn.state is State.READY
    assert link.conn.sequence == 3


def test_a_ready_after_a_session_with_higher_seqs_is_not_old() -> None:
    # A new session (IDENTIFY after op 9 false) restarts the numbering.
    link = ready_link()
    link.dispatch(500)
    link.conn.should_resume = False
    link.conn.close(4000)
    link.peer_replies = b""
    link.conn.reconnect()
    second = Link(link.conn)
    second.hello()
    second.identify()
    second.ready(seq=1)
    assert link.conn.state is State.READY
    assert link.conn.sequence == 1


# -- 2. RESUMED always ends a resume; dedup only in the replay ------------------------------


@pytest.mark.parametrize("resumed_s", [5, 4, 0, None, 6])
def test_resumed_ends_the_resume_whatever_its_s(resumed_s: int | None) -> None:
    # A real server answers a quick RESUME with RESUMED carrying the client's own
    # last s; it used to be dropped, and the connection stayed resuming forever.
    link = resuming_link(seq=5)
    link.server({"op": 0, "s": resumed_s, "t": "RESUMED", "d": {}})
    assert link.conn.state is State.READY
    events = link.events()
    assert [type(e) for e in events] == [type(events[0]), Resumed]
    # The sequence never moves back on RESUMED.
    assert link.conn.sequence == max(5, resumed_s or 0)
    assert link.conn.next_deadline() is not None


def test_a_replay_overlapping_what_was_delivered_is_dropped_once() -> None:
    link = resuming_link(seq=5)
    for s in (4, 5, 6, 6, 7):
        link.dispatch(s)
    link.server({"op": 0, "s": 8, "t": "RESUMED", "d": {}})
    assert seqs(link) == [("MESSAGE_CREATE", 6), ("MESSAGE_CREATE", 7), ("RESUMED", 8)]
    assert link.conn.out_of_order_dispatches == 0  # a replay's overlap is not disorder


def test_out_of_order_dispatches_are_logged_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    link = ready_link()
    link.dispatch(10)
    with caplog.at_level(logging.WARNING, "discord_gateway"):
        for _ in range(2500):
            link.dispatch(3)
    assert link.conn.out_of_order_dispatches == 2500
    warnings = [r for r in caplog.records if "not above the last one" in r.getMessage()]
    assert len(warnings) == 3  # the first, the 1000th and the 2000th
    assert len(seqs(link)) == 1 + 1 + 2500  # READY, s=10 and every one of them
    assert link.conn.state is State.READY


@pytest.mark.parametrize("s", [-1, 2**63, 2**64 - 1, True, 1.5, "7", [1]])
def test_a_sequence_outside_0_to_2_63_is_refused_and_not_stored(s: object) -> None:
    link = ready_link()
    link.events()
    frame = link.peer.send({"op": 0, "s": s, "t": "MESSAGE_CREATE", "d": {}})
    with pytest.raises(RemoteProtocolError, match="sequence"):
        link.conn.receive(frame, now=link.now)
    assert link.conn.sequence == 1
    assert not seqs(link)


def test_an_etf_bignum_sequence_never_breaks_heartbeats() -> None:
    # An ETF dispatch with s = 2**2048 made every later heartbeat raise (our
    # encoder stops at 255 bytes; 2**1000 is as good a bignum).
    conn = DiscordConnection("wss://gateway.discord.gg", encoding="etf", rng=random.Random(0))
    link = Link(conn)
    link.server(_etf.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
    link.identify()
    link.server(_etf.dumps({"op": 0, "s": 1, "t": "READY", "d": {"session_id": "abc"}}))
    frame = link.peer.send(_etf.dumps({"op": 0, "s": 2**1000, "t": "X", "d": None}))
    with pytest.raises(RemoteProtocolError):
        conn.receive(frame, now=0.0)
    assert conn.sequence == 1
    fresh = DiscordConnection("wss://g", encoding="etf", session_id="s", sequence=2**63 - 1)
    fresh_link = Link(fresh)
    fresh_link.server(_etf.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
    assert fresh.heartbeat(now=1.0)  # the largest valid s still encodes


# -- 3. Liveness: READY and RESUMED must come in time --------------------------------------


def test_ready_must_arrive_within_ready_timeout() -> None:
    link = Link()
    link.hello(HOUR_MS)
    link.now = 100.0
    link.identify()
    assert link.conn.next_deadline() == 100.0 + READY_TIMEOUT == 130.0
    assert link.conn.handle_timer(129.9) == []
    out = link.conn.handle_timer(130.0)
    assert close_frame(b"".join(out)) == (4000, "no READY in time")
    assert link.conn.state is State.CLOSING


def test_resumed_must_arrive_within_resume_timeout_and_counts_as_a_failed_resume() -> None:
    link = resuming_link(seq=5)
    link.conn.resume_gateway_url = "wss://gateway-us-east1-c.discord.gg"
    assert link.conn.next_deadline() == RESUME_TIMEOUT == 60.0
    link.dispatch(6)  # a replay that never ends with RESUMED
    out = link.conn.handle_timer(60.0)
    assert close_frame(b"".join(out)) == (4000, "no RESUMED in time")
    link.client(b"".join(out))
    assert link.closed is not None
    assert link.conn.state is State.RECONNECTING
    assert link.conn.should_resume  # the session may still be resumed ...
    assert link.conn.resume_gateway_url is None  # ... but not on the URL that failed


def test_three_resume_timeouts_fall_back_to_identify() -> None:
    conn = DiscordConnection("wss://g", session_id="abc", sequence=5, rng=random.Random(0))
    for attempt in range(3):
        if attempt:
            conn.reconnect()
        link = Link(conn)
        link.hello(HOUR_MS)
        link.client(conn.resume("t0ken", now=0.0))
        link.client(b"".join(conn.handle_timer(60.0)))
    assert conn.state is State.RECONNECTING
    assert not conn.should_resume  # protocol 54: the session is given up


def test_timeouts_are_configurable_and_ready_clears_the_deadline() -> None:
    link = Link(ready_timeout=5.0, resume_timeout=7.0)
    link.hello(HOUR_MS)
    link.identify()
    assert link.conn.next_deadline() == 5.0
    link.ready()
    deadline = link.conn.next_deadline()
    assert deadline is not None and deadline > 1000  # only the heartbeat is left
    link.conn.handle_timer(5.0)
    assert link.conn.state is State.READY


# -- 4. User-Agent and headers -----------------------------------------------------------------


def test_the_upgrade_carries_a_user_agent() -> None:
    link = Link()
    assert link.peer.request is not None
    headers = dict(link.peer.request.extra_headers)
    expected = f"DiscordBot (https://pypi.org/project/discord-gateway/, {__version__})"
    assert expected == USER_AGENT
    assert headers[b"user-agent"] == expected.encode()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Trace": "1", "Authorization": "Bot abc"},
        [("X-Trace", "1"), ("Authorization", "Bot abc")],
        (("X-Trace", "1"), ("Authorization", "Bot abc")),
    ],
)
def test_extra_headers_are_sent(headers: Any) -> None:
    link = Link(headers=headers)
    assert link.peer.request is not None
    sent = link.peer.request.extra_headers
    assert (b"x-trace", b"1") in sent and (b"authorization", b"Bot abc") in sent
    assert (b"user-agent", USER_AGENT.encode()) in sent


def test_a_user_agent_of_ones_own_replaces_ours() -> None:
    link = Link(headers={"User-Agent": "MyBot/2 (latin-1 caf\xe9)"})
    assert link.peer.request is not None
    agents = [v for k, v in link.peer.request.extra_headers if k == b"user-agent"]
    assert agents == ["MyBot/2 (latin-1 caf\xe9)".encode("latin-1")]


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"X-A": "a\r\nX-Injected: 1"}, "line breaks"),
        ({"X-A": "a\nb"}, "line breaks"),
        ({"X-A": "\u20ac"}, "Latin-1"),
        ({"X-A": " padded"}, "surrounding spaces"),
        ({"X-A": 5}, "must be a string"),
        ({"X A": "1"}, "not a valid HTTP header name"),
        ({"X-A\r\n": "1"}, "not a valid HTTP header name"),
        ({"": "1"}, "not a valid HTTP header name"),
        ({"Host": "evil"}, "set by the WebSocket upgrade"),
        ({"sec-websocket-key": "x"}, "set by the WebSocket upgrade"),
        ([("X-A",)], "pair"),
        (["X-A: 1"], "pair"),
        ("X-A: 1", "mapping"),
        (5, "mapping"),
    ],
)
def test_bad_headers_are_refused_at_construction(headers: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DiscordConnection("wss://gateway.discord.gg", headers=headers)


def test_the_version_is_in_one_place() -> None:
    assert discord_gateway.__version__ == __version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert match is not None and match.group(1) == __version__


# -- 5. The user's close ends the connection ---------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001])
@pytest.mark.parametrize("ending", ["handshake", "timeout", "transport"])
def test_the_users_close_ends_the_connection(code: int, ending: str) -> None:
    link = ready_link()
    frame = link.conn.close(code, now=link.now)
    if ending == "handshake":
        link.client(frame)
    elif ending == "timeout":
        with pytest.raises(CloseDiscordConnection):
            link.conn.handle_timer(link.now + 5.0)
    else:
        with pytest.raises(CloseDiscordConnection):
            link.conn.receive(b"", now=link.now)
    assert link.conn.state is State.CLOSED
    assert not link.conn.should_reconnect()
    assert link.conn.fatal_close_code is None and link.conn.fatal_close_reason is None
    assert not link.conn.should_resume  # protocol 30
    # reconnect() may still start afresh, with IDENTIFY on the original URL.
    assert link.conn.reconnect() == 0
    assert link.conn.state is State.CONNECTING
    second = Link(link.conn)
    second.hello()
    second.identify()
    second.ready()
    assert link.conn.state is State.READY


def test_a_fatal_close_still_refuses_reconnect() -> None:
    link = ready_link()
    link.deliver(link.peer.close(4004, "Authentication failed."))
    assert link.conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="fatal code 4004"):
        link.conn.reconnect()


def test_the_readme_loop_ends_after_the_users_close() -> None:
    # The shape of the README's core loop, in memory: the user closes once ready.
    conn = DiscordConnection("wss://gateway.discord.gg", rng=random.Random(0))
    connections = 0
    while conn.should_reconnect():
        conn.reconnect()
        connections += 1
        assert connections < 3, "the loop started a new session after the user's close"
        link = Link(conn)
        link.hello()
        link.identify()
        link.ready()
        link.client(conn.close(1000))
        assert link.closed is not None
    assert connections == 1


# -- 6. The server's close reason -------------------------------------------------------------


def test_the_fatal_close_reason_reaches_the_user() -> None:
    link = ready_link()
    link.deliver(link.peer.close(4014, "Disallowed intent(s)."))
    assert link.conn.fatal_close_code == 4014
    assert link.conn.fatal_close_reason == "Disallowed intent(s)."


def test_no_fatal_reason_for_other_closes() -> None:
    link = ready_link()
    link.deliver(link.peer.close(4000, "Unknown error"))
    assert link.conn.fatal_close_reason is None
    link = ready_link()
    link.deliver(link.peer.close(4004))
    assert link.conn.fatal_close_code == 4004 and link.conn.fatal_close_reason is None


# -- 7. Every option is validated at construction ------------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"encoding": "etf", "compress": True}, "JSON only"),
    ({"encoding": 5}, "encoding"),
    ({"compress": 1}, "compress"),
    ({"compress": "gzip"}, "compression"),
    ({"version": "10"}, "version must be an int"),
    ({"version": 10.0}, "version must be an int"),
    ({"version": True}, "version must be an int"),
    ({"session_id": 5, "sequence": 1}, "session_id"),
    ({"session_id": "", "sequence": 1}, "session_id"),
    ({"session_id": "s", "sequence": -1}, "sequence"),
    ({"session_id": "s", "sequence": True}, "sequence"),
    ({"session_id": "s", "sequence": 2**63}, "sequence"),
    ({"session_id": "s", "sequence": "1"}, "sequence"),
    ({"dispatch_handled": "yes"}, "dispatch_handled"),
    ({"etf_snowflakes_as_str": 1}, "etf_snowflakes_as_str"),
    ({"max_payload_size": 1e9}, "max_payload_size"),
    ({"max_payload_size": 100}, "max_payload_size"),
    ({"max_queued_commands": -1}, "max_queued_commands"),
    ({"max_queued_commands": 1.5}, "max_queued_commands"),
    ({"max_queued_commands": True}, "max_queued_commands"),
    ({"hello_timeout": math.inf}, "hello_timeout"),
    ({"hello_timeout": math.nan}, "hello_timeout"),
    ({"hello_timeout": 86_401}, "hello_timeout"),
    ({"hello_timeout": "5"}, "hello_timeout"),
    ({"hello_timeout": True}, "hello_timeout"),
    ({"close_timeout": -1}, "close_timeout"),
    ({"ready_timeout": 0}, "ready_timeout"),
    ({"ready_timeout": 1e300}, "ready_timeout"),
    ({"resume_timeout": math.nan}, "resume_timeout"),
    ({"resume_timeout": None}, "resume_timeout"),
    ({"rng": object()}, "rng"),
    ({"clock": 5.0}, "clock"),
    ({"logger": "discord"}, "logger"),
    ({"headers": {"X": "a\r\nb"}}, "header"),
    (
        {"resume_gateway_url": "ws://gateway.discord.gg", "session_id": "s", "sequence": 1},
        "unencrypted",
    ),
    (
        {"resume_gateway_url": "wss://u:p@x.discord.gg", "session_id": "s", "sequence": 1},
        "credentials",
    ),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_OPTIONS)
def test_every_option_is_validated_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        DiscordConnection("wss://gateway.discord.gg", **kwargs)
    assert "spec" not in str(info.value)  # messages say what to do, no internal numbers


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("wss://gateway.discord.gg/\x00", "control"),
        ("wss://gateway .discord.gg", "spaces"),
        ("wss://g\u00e4teway.discord.gg", "non-ASCII"),
        ("wss://gateway.discord.gg/?" + "a" * 2000, "characters long"),
        ("wss://" + "a" * 70 + ".gg", "invalid host name"),
        ("wss://gateway.discord.gg/?v=" + "9" * 5000, "characters long"),
    ],
)
def test_bad_uris_are_refused_at_construction(uri: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DiscordConnection(uri)


def test_a_version_in_the_url_that_is_not_a_small_number_is_ignored() -> None:
    for query in ("v=%C2%B2", "v=9999", "v=abc", "v=" + "9" * 900):
        assert DiscordConnection(f"wss://g/?{query}").query_params.startswith("v=10&")


def test_good_options_are_accepted() -> None:
    conn = DiscordConnection(
        "wss://gateway.discord.gg",
        encoding="etf",
        compress="zlib-stream",
        version=9,
        max_queued_commands=0,
        hello_timeout=1,
        close_timeout=0.001,
        ready_timeout=86_400,
        resume_timeout=90.5,
        headers=[],
        logger=logging.LoggerAdapter(logging.getLogger("x"), {}),  # type: ignore[arg-type]
        rng=random.Random(1),
    )
    assert conn.state is State.CONNECTING


# -- 8. Hostile bytes: the error contract ------------------------------------------------------


def test_a_ping_after_our_close_frame_is_not_answered() -> None:
    # wsproto refuses to send a Pong after our close frame and raised its own
    # LocalProtocolError out of receive(): the threading adapter's thread died.
    link = ready_link()
    link.server({"op": 7, "d": None})
    assert link.conn.state is State.CLOSING
    ping = b"\x89\x02hi"  # an unmasked server Ping frame
    assert link.conn.receive(ping + ping, now=link.now) == []
    finish_close(link)
    assert link.conn.state is State.RECONNECTING


def test_a_ping_while_open_is_still_answered() -> None:
    link = ready_link()
    out = link.conn.receive(b"\x89\x02hi", now=link.now)
    assert client_frames(b"".join(out)) == [(0xA, b"hi")]


def upgrade_response(extra_header: bytes) -> tuple[DiscordConnection, bytes]:
    conn = DiscordConnection("wss://gateway.discord.gg")
    response = Peer().accept(conn.connect())
    head, _, rest = response.partition(b"\r\n\r\n")
    return conn, head + b"\r\n" + extra_header + b"\r\n\r\n" + rest


@pytest.mark.parametrize(
    "header",
    [
        b"Sec-WebSocket-Protocol: caf\xe9",
        b"Sec-WebSocket-Protocol: \xff\xfe",
        b"Sec-WebSocket-Extensions: permessage-deflate",
        b"Connection: \xff",
    ],
)
def test_garbage_in_the_101_headers_is_a_remote_protocol_error(header: bytes) -> None:
    conn, response = upgrade_response(header)
    with pytest.raises(RemoteProtocolError, match="upgrade") as info:
        conn.receive(response, now=0.0)
    assert info.value.data == b""  # no WebSocket to close
    assert conn.state is State.RECONNECTING
    assert conn.should_reconnect()


def test_an_endless_rejection_body_is_capped() -> None:
    conn = DiscordConnection("wss://gateway.discord.gg")
    conn.connect()
    body = b"x" * (4 * MAX_REJECTED_BODY)
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body)
    with pytest.raises(GatewayError):
        conn.receive(head, now=0.0)
    with pytest.raises(RejectedConnectionData) as info:
        for i in range(0, len(body), 4096):
            conn.receive(body[i : i + 4096], now=0.0)
    assert info.value.data == body[:MAX_REJECTED_BODY]


class BrokenRandom(random.Random):
    """A fake with a bug: stands for any unexpected exception inside receive()."""

    def random(self) -> float:
        raise ZeroDivisionError("a bug")


def test_an_unexpected_exception_becomes_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = Link(DiscordConnection("wss://gateway.discord.gg", rng=BrokenRandom()))
    frame = link.peer.send({"op": 10, "d": {"heartbeat_interval": 41250}})
    with caplog.at_level(logging.ERROR, "discord_gateway"), pytest.raises(InternalError) as info:
        link.conn.receive(frame, now=0.0)
    assert isinstance(info.value, RemoteProtocolError)  # adapters recover from it
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert "please report" in str(info.value)
    assert close_frame(info.value.data) == (4000, "internal error")
    assert link.conn.state is State.CLOSING
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "please report" in record.getMessage().lower()


def contract_holds(conn: DiscordConnection, chunks: list[bytes]) -> None:
    """The error contract: only GatewayError or CloseDiscordConnection, whatever arrives."""
    for chunk in chunks:
        try:
            conn.receive(chunk, now=1.0)
            conn.handle_timer(2.0)
            deadline = conn.next_deadline()
            assert deadline is None or math.isfinite(deadline)
            list(conn.events())
        except (GatewayError, CloseDiscordConnection):
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6), st.sampled_from(["open", "closing"]))
def test_random_bytes_after_the_upgrade_never_break_the_contract(
    chunks: list[bytes], when: str
) -> None:
    link = ready_link()
    if when == "closing":
        link.server({"op": 7, "d": None})
    contract_holds(link.conn, chunks)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 200))
def test_random_bytes_in_the_upgrade_response_never_break_the_contract(
    junk: bytes, where: int
) -> None:
    conn, response = upgrade_response(b"X-Junk: ok")
    where = min(where, len(response))
    contract_holds(conn, [response[:where] + junk + response[where:]])


# -- 9. HELLO's heartbeat_interval is bounded -----------------------------------------------------


@pytest.mark.parametrize("interval", [0, 0.5, -1, MAX_HEARTBEAT_INTERVAL_MS + 1, 1e300, True])
def test_a_json_hello_interval_out_of_range_is_refused(interval: object) -> None:
    link = Link()
    frame = link.peer.send({"op": 10, "d": {"heartbeat_interval": interval}})
    with pytest.raises(RemoteProtocolError, match="heartbeat_interval"):
        link.conn.receive(frame, now=0.0)
    assert link.conn.state is State.CLOSING
    assert link.conn.heartbeat_interval is None


@pytest.mark.parametrize("interval", [2**1100, math.inf, -math.inf, math.nan, 2**64])
def test_an_etf_hello_interval_out_of_range_is_refused(interval: float) -> None:
    link = Link(DiscordConnection("wss://g", encoding="etf"))
    frame = link.peer.send(_etf.dumps({"op": 10, "d": {"heartbeat_interval": interval}}))
    with pytest.raises(RemoteProtocolError, match="heartbeat_interval"):
        link.conn.receive(frame, now=0.0)


def test_deadlines_stay_finite_and_within_an_hour_of_now() -> None:
    link = Link()
    link.hello(MAX_HEARTBEAT_INTERVAL_MS)
    deadline = link.conn.next_deadline()
    assert deadline is not None and 0 <= deadline <= 3600


def test_queued_commands_never_make_the_deadline_infinite() -> None:
    # The send limit's "room already" was -inf: a deadline no adapter should be handed.
    link = Link()
    link.hello(HOUR_MS)
    link.identify()
    link.ready()
    conn = link.conn
    for _ in range(130):
        conn.update_presence(now=0.0)
    assert conn.next_deadline() == 60.0  # the window is full until the first one ages out
    conn.close(4000)
    link.peer_replies = b""
    conn.reconnect()
    second = Link(conn)
    second.now = 70.0
    second.hello(HOUR_MS)
    second.client(conn.resume("t0ken", now=70.0))
    deadline = conn.next_deadline()
    assert deadline is not None and math.isfinite(deadline) and deadline <= 70.0
    assert len(client_frames(b"".join(conn.handle_timer(70.0)))) > 0


# -- 10. resume_gateway_url: never downgraded, no credentials, the host policy --------------------


@pytest.mark.parametrize(
    ("original", "resume", "why"),
    [
        ("wss://gateway.discord.gg", "ws://gateway-us-east1-c.discord.gg", "unencrypted"),
        ("wss://gateway.discord.gg", "wss://user:pw@gateway-us.discord.gg", "credentials"),
        ("wss://gateway.discord.gg", "wss://token@gateway-us.discord.gg", "credentials"),
        ("wss://gateway.discord.gg", "wss://evil.example", "leaves discord.gg"),
        ("wss://gateway.discord.gg", "wss://discord.gg.evil.example", "leaves discord.gg"),
        ("wss://gateway.discord.gg", "wss://evildiscord.gg", "leaves discord.gg"),
        ("wss://discord.gg", "wss://example.com", "leaves discord.gg"),
        ("wss://proxy.example", "ws://proxy.example", "unencrypted"),
        ("wss://gateway.discord.gg", "wss://x.discord.gg/" + "a" * 2000, "characters long"),
        ("wss://gateway.discord.gg", "wss://x.discord.gg/\r\nHost: evil", "control"),
        ("wss://gateway.discord.gg", "wss://x.discord.gg/ a", "spaces"),
        ("wss://gateway.discord.gg", "https://x.discord.gg", "must use wss://"),
        ("wss://gateway.discord.gg", 5, "not a string"),
        ("wss://gateway.discord.gg", ["wss://x.discord.gg"], "not a string"),
    ],
)
def test_a_refused_resume_gateway_url_is_logged_and_the_original_used(
    original: str, resume: object, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    link = hello_link(conn=DiscordConnection(original, rng=random.Random(0)))
    link.identify()
    with caplog.at_level(logging.WARNING, "discord_gateway"):
        link.server(
            {
                "op": 0,
                "s": 1,
                "t": "READY",
                "d": {"session_id": "abc", "resume_gateway_url": resume},
            }
        )
    (ready,) = [e for e in link.events() if isinstance(e, Ready)]
    assert ready.resume_gateway_url is None
    assert link.conn.resume_gateway_url is None
    assert why in caplog.text and "resume_gateway_url" in caplog.text
    link.conn.close(4000)
    link.peer_replies = b""
    link.conn.reconnect()
    assert link.conn.should_resume
    assert link.conn.url.startswith(original)


@pytest.mark.parametrize(
    ("original", "resume"),
    [
        ("wss://gateway.discord.gg", "wss://gateway-us-east1-c.discord.gg"),
        ("wss://gateway.discord.gg", "wss://discord.gg"),
        ("wss://gateway.discord.gg", "wss://GATEWAY-EU.Discord.GG:443/?x=1"),
        ("ws://127.0.0.1:8080", "ws://127.0.0.1:9090"),
        ("ws://127.0.0.1:8080", "wss://resume.local"),
        ("wss://proxy.example", "wss://other-proxy.example:8443/gw"),
    ],
)
def test_an_accepted_resume_gateway_url_is_used(original: str, resume: str) -> None:
    link = hello_link(conn=DiscordConnection(original, rng=random.Random(0)))
    link.identify()
    link.ready(url=resume)
    assert link.conn.resume_gateway_url == resume
    link.conn.close(4000)
    link.peer_replies = b""
    link.conn.reconnect()
    assert link.conn.url.startswith(resume.split("?")[0].rstrip("/"))


# -- 11. A refused message is not buffered while closing ------------------------------------


def test_later_chunks_of_a_refused_text_message_do_not_pile_up_while_closing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 1 GiB text frame cost ~1 GiB once the connection was closing: the cap
    # raised, was logged, and every later chunk was buffered all the same.
    link = ready_link(max_payload_size=4096)
    link.server({"op": 7, "d": None})
    assert link.conn.state is State.CLOSING
    size = 64 * 1024
    chunks = 160  # 10 MiB of one text frame
    header = b"\x81\x7f" + (size * chunks).to_bytes(8, "big")
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, "discord_gateway"):
            link.conn.receive(header + b"a" * size, now=0.0)
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(chunks - 1):
                link.conn.receive(b"a" * size, now=0.0)
            grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 1024 * 1024, grown
    refusals = [r for r in caplog.records if "while closing" in r.getMessage()]
    assert len(refusals) == 1  # refused once, the rest skipped
    finish_close(link)
    assert link.conn.state is State.RECONNECTING


@pytest.mark.parametrize("reason", [5, b"bytes", "\udc80"])
def test_a_close_reason_that_is_not_text_is_refused(reason: Any) -> None:
    link = ready_link()
    with pytest.raises(InvalidCommand, match="close reason"):
        link.conn.close(4000, reason)
    assert link.conn.state is State.READY


def test_without_now_the_ready_deadline_is_in_the_callers_clock() -> None:
    # An adapter passing its own clock's now (trio's) to receive()/handle_timer()
    # but none to identify() must not get a deadline from the core's clock.
    conn = DiscordConnection("wss://gateway.discord.gg", clock=lambda: 1e6, rng=random.Random(0))
    link = Link(conn)
    link.hello(HOUR_MS)
    link.client(conn.identify(token="t0ken", intents=513))
    link.now = 10.0
    link.server({"op": 11})
    assert conn.next_deadline() == 40.0
    out = conn.handle_timer(40.0)
    assert close_frame(b"".join(out)) == (4000, "no READY in time")


def test_without_now_handle_timer_also_anchors_the_resume_deadline() -> None:
    conn = DiscordConnection("wss://g", session_id="abc", sequence=5, clock=lambda: 1e6)
    link = Link(conn)
    link.hello(HOUR_MS)
    link.client(conn.resume("t0ken"))
    assert conn.handle_timer(5.0) == []
    assert conn.next_deadline() == 65.0


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame (RFC 6455 5.2), for a peer that has already closed."""
    size = len(payload)
    if size < 126:
        return bytes([0x80 | opcode, size]) + payload
    if size < 1 << 16:
        return bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big") + payload


@pytest.mark.parametrize("compress", [None, "zlib-stream"])
def test_refused_messages_while_closing_neither_pile_up_nor_flood_the_log(
    compress: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    # Separate oversized messages after the first refusal used to be appended to
    # the codec's stale buffer, one after the other, without bound.
    link = ready_link(max_payload_size=4096, compress=compress)
    link.server({"op": 7, "d": None})
    assert link.conn.state is State.CLOSING
    big = server_frame(0x1, b"a" * 64 * 1024) + server_frame(0x2, b"b" * 64 * 1024)
    late = server_frame(0x1, b'{"op": 0, "s": 9, "t": "X", "d": {}}')
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, "discord_gateway"):
            link.conn.receive(big, now=0.0)
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(100):
                link.conn.receive(big + late, now=0.0)
            grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 1024 * 1024, grown
    assert len([r for r in caplog.records if "while closing" in r.getMessage()]) == 1
    # Later text messages are still read (a late READY counts).
    assert len(seqs(link)[1:]) == 100
    finish_close(link)
    assert link.conn.state is State.RECONNECTING


def test_a_payload_error_that_is_not_the_codecs_keeps_decoding_while_closing() -> None:
    # A READY answering our IDENTIFY may still arrive after our close frame.
    link = hello_link()
    link.identify()
    link.server({"op": 7, "d": None})
    assert link.conn.receive(server_frame(0x1, b"[1, 2]"), now=0.0) == []  # not an object
    ready = b'{"op": 0, "s": 1, "t": "READY", "d": {"session_id": "abc"}}'
    assert link.conn.receive(server_frame(0x1, ready), now=0.0) == []
    assert link.conn.session_id == "abc"


@pytest.mark.parametrize("session_id", ["", "x" * 513, 5, None])
def test_a_session_id_that_no_resume_could_carry_is_refused(session_id: object) -> None:
    # It goes back in every RESUME: 5000 characters would make every resume fail.
    link = hello_link()
    link.identify()
    frame = link.peer.send({"op": 0, "s": 1, "t": "READY", "d": {"session_id": session_id}})
    with pytest.raises(RemoteProtocolError, match="session_id"):
        link.conn.receive(frame, now=0.0)
    assert link.conn.session_id is None


def test_messages_about_hostile_values_never_fail_to_format() -> None:
    from discord_gateway.connection import _brief

    assert _brief(10**5000) == "<int>"  # repr() itself raises past 4300 digits
    assert _brief("x" * 500, 10) == "'xxxxxx..."  # 10 characters in all


class BrokenUniform(random.Random):
    def uniform(self, a: float, b: float) -> float:
        raise ZeroDivisionError("a bug")


def test_an_internal_error_while_closing_ends_the_websocket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = Link(DiscordConnection("wss://gateway.discord.gg", rng=BrokenUniform(0)))
    link.hello()
    link.identify()
    link.ready()
    link.conn.close(4000)
    with caplog.at_level(logging.ERROR, "discord_gateway"):
        frame = server_frame(0x1, b'{"op": 9, "d": false}')
        with pytest.raises(InternalError) as info:
            link.conn.receive(frame, now=0.0)
    assert info.value.data == b""  # our close frame is already out
    assert link.conn.state is State.RECONNECTING


def test_dispatches_and_ready_without_s_leave_the_sequence_alone() -> None:
    link = hello_link()
    link.identify()
    link.dispatch(4, "GUILD_CREATE")
    link.server({"op": 0, "t": "READY", "d": {"session_id": "abc"}})
    assert link.conn.state is State.READY and link.conn.sequence == 4
    link.server({"op": 0, "t": "X", "d": {}})
    assert link.conn.sequence == 4
    assert seqs(link) == [("GUILD_CREATE", 4), ("READY", None), ("X", None)]


@pytest.mark.parametrize(("s", "counted"), [(1, 1), (2, 0), (None, 0)])
def test_a_resumed_while_ready_is_a_dispatch_judged_like_any_other(
    s: int | None, counted: int
) -> None:
    link = ready_link()
    link.events()
    link.server({"op": 0, "s": s, "t": "RESUMED", "d": {}})
    assert seqs(link) == [("RESUMED", s)]
    assert link.conn.out_of_order_dispatches == counted
    assert link.conn.sequence == (1 if s is None else s)


@settings(max_examples=100, deadline=None)
@given(
    before=st.lists(st.integers(0, 5), max_size=4),
    ready_s=st.integers(0, 5),
    after=st.lists(st.integers(0, 8), max_size=8),
)
def test_identifying_never_wedges_whatever_the_numbering(
    before: list[int], ready_s: int, after: list[int]
) -> None:
    # Invariant: READY always makes the connection ready; outside a replay every
    # dispatch is delivered once and the sequence is the last s received.
    link = hello_link()
    link.identify()
    for s in before:
        link.dispatch(s, "GUILD_CREATE")
    link.ready(seq=ready_s)
    assert link.conn.state is State.READY
    for s in after:
        link.dispatch(s)
    assert [s for _, s in seqs(link)] == [*before, ready_s, *after]
    assert link.conn.sequence == (after[-1] if after else ready_s)


@settings(max_examples=100, deadline=None)
@given(last=st.integers(0, 5), replay=st.lists(st.integers(0, 10), max_size=8))
def test_a_replay_delivers_only_what_is_new_in_order(last: int, replay: list[int]) -> None:
    # Invariant: during a resume nothing at or below what was delivered comes twice.
    link = resuming_link(seq=last)
    for s in replay:
        link.dispatch(s)
    link.server({"op": 0, "s": None, "t": "RESUMED", "d": {}})
    delivered = [s for name, s in seqs(link) if name != "RESUMED"]
    expected: list[int] = []
    for s in replay:
        if s > max([last, *expected]):
            expected.append(s)
    assert delivered == expected
    assert link.conn.state is State.READY
