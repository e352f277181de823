"""The lifecycle through a real wsproto server peer, whole and one byte at a time."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
from wsproto.events import CloseConnection, Ping, Pong

from discord_gateway import (
    CloseDiscordConnection,
    DiscordConnection,
    Dispatch,
    HeartbeatAck,
    HeartbeatRequest,
    InvalidCommand,
    InvalidSession,
    LocalProtocolError,
    Ready,
    Reconnect,
    Resumed,
    State,
    UnknownMessage,
)
from discord_gateway.connection import BACKOFF_BASE, BACKOFF_CAP, MAX_RESUME_ATTEMPTS

from peer import Link, client_frames

SPLITS = [None, 1, 7]


def ready_link(split: int | None = None, **kwargs: Any) -> Link:
    link = Link(split=split, **kwargs)
    link.hello()
    link.identify()
    link.ready(url="wss://gateway-us-east1-c.discord.gg")
    return link


def finish_close(link: Link) -> CloseDiscordConnection:
    """The peer answers the client's close frame; return the close signal."""
    assert link.peer_replies, "the client did not close"
    reply, link.peer_replies = link.peer_replies, b""
    link.deliver(reply)
    assert link.closed is not None
    return link.closed


@pytest.mark.parametrize("split", SPLITS)
def test_identify_ready_dispatch(split: int | None) -> None:
    link = ready_link(split)
    link.dispatch(2, data={"content": "hi"})
    events = link.events()
    assert [type(e) for e in events] == [type(events[0]), Ready, Dispatch]
    ready, message = events[1], events[2]
    assert isinstance(ready, Ready) and isinstance(message, Dispatch)
    assert ready.session_id == "abc"
    assert ready.resume_gateway_url == "wss://gateway-us-east1-c.discord.gg"
    assert (message.name, message.seq, message.data) == ("MESSAGE_CREATE", 2, {"content": "hi"})
    assert link.conn.state is State.READY
    assert link.conn.sequence == 2
    assert link.conn.session_id == "abc"
    identify = link.peer.received[0]
    assert identify["op"] == 2
    assert set(identify["d"]["properties"]) == {"os", "browser", "device"}


@pytest.mark.parametrize("split", SPLITS)
def test_resume_uses_resume_gateway_url_and_replays(split: int | None) -> None:
    link = ready_link(split)
    link.dispatch(2)
    link.server({"op": 7, "d": None})  # protocol 25
    assert link.conn.state is State.CLOSING
    closed = finish_close(link)
    assert closed.data is None  # we started it: nothing more to send
    assert link.conn.state is State.RECONNECTING
    assert link.conn.should_resume
    assert link.conn.reconnect() == 0  # the first attempt is immediate
    # protocol 4, 26: resume on resume_gateway_url with the same query.
    assert link.conn.destination == ("gateway-us-east1-c.discord.gg", 443)
    assert link.conn.url == "wss://gateway-us-east1-c.discord.gg/?v=10&encoding=json"
    second = Link(link.conn, split=split)
    assert second.peer.request is not None
    assert second.peer.request.host == "gateway-us-east1-c.discord.gg"
    second.hello()
    second.client(link.conn.resume("t0ken"))
    assert second.peer.received[-1] == {
        "op": 6,
        "d": {"token": "t0ken", "session_id": "abc", "seq": 2},
    }
    assert link.conn.state is State.RESUMING
    second.dispatch(3)
    second.server({"op": 0, "s": 4, "t": "RESUMED", "d": {"_trace": []}})
    events = second.events()
    seqs = [(e.name, e.seq) for e in events if isinstance(e, Dispatch)]
    assert seqs == [("READY", 1), ("MESSAGE_CREATE", 2), ("MESSAGE_CREATE", 3), ("RESUMED", 4)]
    assert isinstance(events[-1], Resumed)
    assert link.conn.state is State.READY
    assert link.conn.sequence == 4
    # protocol 24: RESUMED carries no URL; the resume URL is kept for the next resume.
    assert link.conn.resume_gateway_url == "wss://gateway-us-east1-c.discord.gg"


def test_resume_url_is_dropped_when_the_resume_connect_fails() -> None:
    link = ready_link()
    link.server({"op": 7})
    finish_close(link)
    link.conn.reconnect()
    assert link.conn.destination[0] == "gateway-us-east1-c.discord.gg"
    link.conn.connect()  # ... and the TCP connection or upgrade fails:
    link.conn.reconnect()
    assert link.conn.should_resume  # still resuming, but on the original URL
    assert link.conn.destination == ("gateway.discord.gg", 443)


def test_a_bricked_session_falls_back_to_identify() -> None:
    # protocol 54: every RESUME fails; after MAX_RESUME_ATTEMPTS we identify.
    link = ready_link()
    conn = link.conn
    with pytest.raises(CloseDiscordConnection):
        conn.receive(b"")  # transport lost
    for _ in range(MAX_RESUME_ATTEMPTS):
        assert conn.should_resume
        conn.reconnect()
        attempt = Link(conn)
        attempt.hello()
        attempt.client(conn.resume("t"))
        with pytest.raises(CloseDiscordConnection):
            conn.receive(None)
    assert not conn.should_resume
    assert conn.reconnect() > 0  # still backing off
    assert conn.url == "wss://gateway.discord.gg/?v=10&encoding=json"


def test_a_session_from_the_constructor_gets_three_resumes_too() -> None:
    # protocol 54, for a session restored from storage rather than from READY.
    conn = DiscordConnection("wss://g", session_id="s", sequence=5)
    for _ in range(MAX_RESUME_ATTEMPTS):
        assert conn.should_resume
        attempt = Link(conn)
        attempt.hello()
        attempt.client(conn.resume("t"))
        with pytest.raises(CloseDiscordConnection):
            conn.receive(None)
        conn.reconnect()
    assert not conn.should_resume


def test_resumed_starts_the_count_of_failed_resumes_again() -> None:
    # protocol 54: it is resumes failing *in a row* that brick a session.
    link = ready_link()
    conn = link.conn

    def resume() -> Link:
        conn.reconnect()
        attempt = Link(conn)
        attempt.hello()
        attempt.client(conn.resume("t"))
        return attempt

    def lose() -> None:
        with pytest.raises(CloseDiscordConnection):
            conn.receive(None)

    lose()
    for _ in range(MAX_RESUME_ATTEMPTS - 1):
        resume()
        lose()
    resume().server({"op": 0, "s": 2, "t": "RESUMED", "d": {}})
    assert conn.state is State.READY
    lose()
    for _ in range(MAX_RESUME_ATTEMPTS - 1):
        resume()
        lose()
        assert conn.should_resume
    resume()
    lose()
    assert not conn.should_resume


def test_closing_before_connect_is_not_a_failed_resume() -> None:
    conn = DiscordConnection(
        "wss://g", session_id="s", sequence=1, resume_gateway_url="wss://resume.example"
    )
    assert conn.close(4000) == b""
    assert conn.should_resume
    assert conn.resume_gateway_url == "wss://resume.example"


def test_resume_url_is_dropped_when_the_session_dies() -> None:
    link = ready_link()
    link.server({"op": 9, "d": False})
    finish_close(link)
    assert not link.conn.should_resume
    assert link.conn.resume_gateway_url is None
    delay = link.conn.reconnect()
    assert 1.0 <= delay <= 5.0  # protocol 28: wait 1-5 s before identifying again
    assert link.conn.destination == ("gateway.discord.gg", 443)
    second = Link(link.conn)
    second.hello()
    with pytest.raises(LocalProtocolError, match="no session to resume"):
        link.conn.resume("t")
    second.identify()
    assert link.conn.state is State.IDENTIFYING


def test_invalid_session_resumable_keeps_the_session() -> None:
    link = ready_link()
    link.dispatch(2)
    link.server({"op": 9, "d": True})
    assert link.conn.state is State.CLOSING
    assert link.peer.received[-1] == ("close", 4000)
    finish_close(link)
    assert link.conn.should_resume
    assert link.conn.reconnect() == 0


def test_reconnect_instead_of_hello() -> None:
    # protocol 16: op 7 may come before/in place of HELLO.
    link = Link()
    link.server({"op": 7, "d": None})
    assert link.conn.state is State.CLOSING
    finish_close(link)
    assert link.conn.state is State.RECONNECTING
    assert not link.conn.should_resume


FATAL = [4004, 4010, 4011, 4012, 4013, 4014]
NEW_SESSION = [4003, 4007, 4009]
RESUMABLE = [1000, 1001, 1011, 3000, 4000, 4001, 4002, 4005, 4006, 4008, 4015, 4999]


@pytest.mark.parametrize("code", FATAL + NEW_SESSION + RESUMABLE)
def test_server_close_codes(code: int) -> None:
    link = ready_link()
    link.dispatch(2)
    link.deliver(link.peer.close(code, "bye"))
    closed = link.closed
    assert closed is not None
    assert closed.code == code
    assert closed.reason == "bye"
    assert closed.data  # our reply to the server's close frame
    assert link.peer.received[-1] == ("close", code)
    if code in FATAL:  # protocol 31: never reconnect
        assert link.conn.state is State.CLOSED
        assert not link.conn.should_reconnect()
        with pytest.raises(LocalProtocolError, match=f"fatal code {code}"):
            link.conn.reconnect()
        assert link.conn.state is State.CLOSED
    elif code in NEW_SESSION:  # protocol H: reconnect and identify
        assert link.conn.state is State.RECONNECTING
        assert not link.conn.should_resume
    else:  # protocol 31, 32: unknown codes and the server's 1000/1001 resume
        assert link.conn.state is State.RECONNECTING
        assert link.conn.should_resume
        assert link.conn.sequence == 2


@pytest.mark.parametrize(
    ("code", "resumable"),
    [(1000, False), (1001, False), (4000, True), (3001, True), (4004, True), (4009, True)],
)
def test_our_close_code_decides_the_session(code: int, resumable: bool) -> None:
    # protocol 30: closing ourselves with 1000/1001 ends the session; the gateway
    # echoing our 4004 or 4009 is not its verdict on the session.
    link = ready_link()
    frame = link.conn.close(code)
    assert link.conn.state is State.CLOSING
    assert link.conn.closing
    link.client(frame)  # the peer answers at once
    assert link.closed is not None and link.closed.data is None
    # Our 1000/1001 also ends the connection (closed, not reconnecting).
    assert link.conn.state is (State.RECONNECTING if resumable else State.CLOSED)
    assert link.conn.should_reconnect() is resumable
    assert link.conn.fatal_close_code is None
    assert link.conn.should_resume is resumable


def test_a_fatal_close_crossing_ours_still_wins() -> None:
    link = ready_link()
    close_frame = link.conn.close(4000)  # not yet delivered to the peer
    link.deliver(link.peer.close(4004))  # the server closed at the same time
    del close_frame
    assert link.conn.state is State.CLOSED


@pytest.mark.parametrize(("theirs", "resumable"), [(1000, True), (4008, True), (4009, False)])
def test_a_gateway_close_crossing_ours(theirs: int, resumable: bool) -> None:
    # protocol 30: our 4000 keeps the session, unless the gateway's own close frame,
    # crossing ours, ends it (4009: session timed out, table H).
    link = ready_link()
    link.conn.close(4000)  # not yet delivered to the peer
    link.deliver(link.peer.close(theirs))
    assert link.closed is not None and link.closed.code == theirs
    assert link.conn.state is State.RECONNECTING
    assert link.conn.should_resume is resumable


def test_close_sends_our_code_and_reason() -> None:
    link = ready_link()
    link.peer.ws.receive_data(link.conn.close(4000, "back in a moment"))
    (frame,) = list(link.peer.ws.events())
    assert isinstance(frame, CloseConnection)
    assert (frame.code, frame.reason) == (4000, "back in a moment")
    link = ready_link()
    link.peer.ws.receive_data(link.conn.close())
    (frame,) = list(link.peer.ws.events())
    assert isinstance(frame, CloseConnection)
    assert (frame.code, frame.reason) == (1000, "")  # protocol 30: the default ends the session


def test_events_before_a_close_survive_reconnect() -> None:
    # 0.4.0 emptied its queue in reconnect(), losing these.
    link = ready_link()
    link.events()
    data = link.peer.send({"op": 0, "s": 2, "t": "A", "d": {}}) + link.peer.send(
        {"op": 0, "s": 3, "t": "B", "d": {}}
    )
    link.deliver(data + link.peer.close(4000))  # one TCP read: events, then the close
    assert link.closed is not None
    link.conn.reconnect()
    assert [e.name for e in link.events() if isinstance(e, Dispatch)] == ["A", "B"]
    assert link.conn.sequence == 3


def test_transport_lost_is_resumable() -> None:
    link = ready_link()
    with pytest.raises(CloseDiscordConnection) as info:
        link.conn.receive(b"")
    assert info.value.code == 1006
    assert info.value.data is None
    assert link.conn.state is State.RECONNECTING
    assert link.conn.should_resume


def test_transport_lost_during_upgrade() -> None:
    conn = DiscordConnection("wss://g")
    conn.connect()
    with pytest.raises(CloseDiscordConnection) as info:
        conn.receive(None)
    assert info.value.code == 1006
    assert conn.state is State.RECONNECTING


def test_late_bytes_after_the_close_are_ignored() -> None:
    link = ready_link()
    link.deliver(link.peer.close(4000))
    assert link.conn.receive(b"garbage") == []


def test_backoff_is_zero_then_full_jitter_exponential_and_reset_by_ready() -> None:
    conn = DiscordConnection("wss://g", rng=random.Random(3))
    delays = [conn.reconnect() for _ in range(12)]
    assert delays[0] == 0
    for attempt, delay in enumerate(delays[1:], start=1):
        assert 0 <= delay <= min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    assert max(delays[8:]) > 4  # it really grows (full jitter over 128+ s, capped at 60)
    link = Link(conn)
    link.hello()
    link.identify()
    link.ready()
    link.server({"op": 7})
    finish_close(link)
    assert conn.reconnect() == 0  # READY reset the backoff


class UpperBounds(random.Random):
    """Draws the upper bound of every ``uniform()``, and records the bounds."""

    def __init__(self) -> None:
        super().__init__(0)
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return b


def test_backoff_doubles_from_one_second_up_to_the_cap() -> None:
    rng = UpperBounds()
    conn = DiscordConnection("wss://g", rng=rng)
    delays = [conn.reconnect() for _ in range(9)]
    assert (BACKOFF_BASE, BACKOFF_CAP) == (1.0, 60.0)
    assert delays == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert rng.bounds == [(0, delay) for delay in delays[1:]]  # full jitter: from 0


def test_resumed_is_delivered_and_resets_the_backoff() -> None:
    # protocol 24; like READY, RESUMED ends the backoff.
    link = ready_link()
    conn = link.conn
    link.server({"op": 7})
    finish_close(link)
    assert conn.reconnect() == 0
    assert conn.reconnect() > 0  # an attempt that never connected backs off
    again = Link(conn)
    again.hello()
    again.client(conn.resume("t0ken"))
    resumed = {"op": 0, "s": 2, "t": "RESUMED", "d": {"_trace": ["gw"]}}
    again.server(resumed)
    (event,) = [e for e in again.events() if isinstance(e, Resumed)]
    assert (event.seq, event.data, event.payload) == (2, {"_trace": ["gw"]}, resumed)
    again.server({"op": 7})
    finish_close(again)
    assert conn.reconnect() == 0


def test_hidden_events_unless_dispatch_handled() -> None:
    for handled in (False, True):
        link = ready_link(dispatch_handled=handled)
        link.events()
        link.server({"op": 1, "d": None}, {"op": 11}, {"op": 42, "d": 1}, {"op": 7})
        kinds = [type(e) for e in link.events()]
        if handled:
            assert kinds == [HeartbeatRequest, HeartbeatAck, UnknownMessage, Reconnect]
        else:
            assert kinds == []
    link = ready_link(dispatch_handled=True)
    link.events()
    link.server({"op": 9, "d": False})
    (event,) = link.events()
    assert isinstance(event, InvalidSession) and event.resumable is False


def test_handled_events_carry_their_payloads() -> None:
    link = ready_link(dispatch_handled=True)
    link.events()
    messages = [{"op": 1, "d": None}, {"op": 11}, {"op": 42, "d": 1}, {"op": 7, "d": None}]
    link.server(*messages)
    events = link.events()
    assert [e.payload for e in events] == messages
    unknown = events[2]
    assert isinstance(unknown, UnknownMessage) and unknown.op == 42
    link = ready_link(dispatch_handled=True)
    link.events()
    link.server({"op": 9, "d": True})
    (invalid,) = link.events()
    assert isinstance(invalid, InvalidSession)
    assert invalid.resumable and invalid.payload == {"op": 9, "d": True}


def test_unknown_opcode_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    link = ready_link()
    with caplog.at_level(logging.WARNING, logger="discord_gateway"):
        link.server({"op": 99, "d": {}})
    assert "unknown opcode 99" in caplog.text
    assert link.conn.state is State.READY


def test_frames_with_missing_keys_and_traces_are_accepted() -> None:
    # protocol 7: {"t":null,"op":11} and _trace fields.
    link = ready_link(dispatch_handled=True)
    link.events()
    link.server('{"t":null,"op":11}')
    assert [type(e) for e in link.events()] == [HeartbeatAck]


def test_an_out_of_order_dispatch_outside_a_replay_is_delivered_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 12 changed this: only a resume's replay is deduplicated. Elsewhere a
    # repeated or lower s is delivered, counted and logged, and the sequence
    # follows the latest s received (protocol 6), so it can never wedge the session.
    link = ready_link()
    link.events()
    link.dispatch(2)
    with caplog.at_level(logging.WARNING, "discord_gateway"):
        link.dispatch(2)
    link.dispatch(3)
    assert [e.seq for e in link.events() if isinstance(e, Dispatch)] == [2, 2, 3]
    assert link.conn.out_of_order_dispatches == 1
    assert "dispatch s=2 is not above the last one (2)" in caplog.text
    link.dispatch(1)
    assert link.conn.sequence == 1  # the last s received, as the docs say
    assert link.conn.out_of_order_dispatches == 2


def test_ping_is_answered() -> None:
    # RFC 6455: a pong with the ping's payload; what follows in the read still counts.
    link = ready_link()
    link.events()
    data = link.peer.ws.send(Ping(b"x")) + link.peer.send({"op": 0, "s": 2, "t": "A", "d": {}})
    link.peer.ws.receive_data(b"".join(link.conn.receive(data)))
    assert [(type(e), e.payload) for e in link.peer.ws.events()] == [(Pong, b"x")]
    assert [e.name for e in link.events()] == ["A"]


def test_an_unsolicited_pong_is_ignored() -> None:
    link = ready_link()
    link.events()
    data = link.peer.ws.send(Pong(b"y")) + link.peer.send({"op": 0, "s": 2, "t": "B", "d": {}})
    assert link.conn.receive(data) == []
    assert [e.name for e in link.events()] == ["B"]


def test_every_reply_of_one_read_is_written_before_the_close() -> None:
    # protocol 52: op 7 and the gateway's close frame in one read, after an op 1.
    link = ready_link()
    data = (
        link.peer.send({"op": 1, "d": None})
        + link.peer.send({"op": 7, "d": None})
        + link.peer.close(1001)
    )
    with pytest.raises(CloseDiscordConnection) as info:
        link.conn.receive(data)
    assert info.value.data is not None
    (text, heartbeat), (close, reason) = client_frames(info.value.data)  # and nothing else
    assert (text, json.loads(heartbeat)) == (0x1, {"op": 1, "d": 1})  # protocol 11: the last s
    assert (close, int.from_bytes(reason[:2], "big")) == (0x8, 4000)
    assert link.conn.should_resume


def test_sending_rules_by_state() -> None:
    link = Link()
    conn = link.conn
    with pytest.raises(LocalProtocolError, match="wait for HELLO"):
        conn.identify(token="t", intents=1)
    with pytest.raises(LocalProtocolError, match="wait for HELLO"):
        conn.heartbeat()
    with pytest.raises(LocalProtocolError, match="IDENTIFY or RESUME first"):
        conn.send_command(3, {})
    link.hello()
    link.identify()
    with pytest.raises(LocalProtocolError, match="already sent"):
        conn.identify(token="t", intents=1)
    link.client(
        conn.send_command(3, {"since": None, "activities": [], "status": "idle", "afk": False})
    )
    assert link.peer.received[-1]["op"] == 3
    with pytest.raises(InvalidCommand, match="sent by the gateway"):
        conn.send_command(11, None)
    with pytest.raises(InvalidCommand, match="4096"):
        conn.send_command(3, {"x": "y" * 5000})
    conn.close(4000)
    with pytest.raises(LocalProtocolError, match="the connection is closing"):
        conn.send_command(3, {})
    with pytest.raises(LocalProtocolError, match="the connection is closing"):
        conn.heartbeat()
    with pytest.raises(LocalProtocolError, match="already closing"):
        conn.close()


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000])
def test_invalid_close_codes_are_refused(code: int) -> None:
    # RFC 6455 7.4: 1016-2999 are reserved, and a peer fails the connection on
    # them (wsproto answers 1002); 1005, 1006 and 1015 never go on the wire.
    link = ready_link()
    with pytest.raises(InvalidCommand):
        link.conn.close(code)
    assert link.conn.state is State.READY


@pytest.mark.parametrize("code", [1000, 1011, 3000, 4999])
def test_close_codes_at_the_edges_are_sent(code: int) -> None:
    link = ready_link()
    link.client(link.conn.close(code))
    assert link.peer.received[-1] == ("close", code)


def test_resume_validates_the_token() -> None:
    link = Link(DiscordConnection("wss://g", session_id="s", sequence=1))
    link.hello()
    with pytest.raises(InvalidCommand, match="token"):
        link.conn.resume("")
    assert link.conn.state is State.HELLO


def test_identify_validates_arguments() -> None:
    link = Link()
    link.hello()
    for kwargs in (
        {"token": "", "intents": 1},
        {"token": "t", "intents": -1},
        {"token": "t", "intents": 1, "large_threshold": 10},
        {"token": "t", "intents": 1, "shard": (2, 2)},
    ):
        with pytest.raises(InvalidCommand):
            link.conn.identify(**kwargs)  # type: ignore[arg-type]
        assert link.conn.state is State.HELLO


def test_connect_twice_and_receive_before_connect() -> None:
    conn = DiscordConnection("wss://g")
    with pytest.raises(LocalProtocolError, match="connect"):
        conn.receive(b"x")
    conn.connect()
    with pytest.raises(LocalProtocolError, match="already called"):
        conn.connect()


@pytest.mark.parametrize(
    ("code", "resumable"),
    [(1000, False), (1001, False), (4000, True), (3000, True), (4004, True), (4009, True)],
)
def test_close_before_the_websocket_is_open(code: int, resumable: bool) -> None:
    # protocol 30: our own code decides, as when the gateway echoes it. 4004 or 4009
    # from *us* is not the gateway's verdict: it was fatal here (CLOSED for good).
    conn = DiscordConnection("wss://g", session_id="s", sequence=1)
    conn.connect()
    assert conn.close(code) == b""
    # Our 1000/1001 ends the connection too; reconnect() may still start afresh.
    assert conn.state is (State.RECONNECTING if resumable else State.CLOSED)
    assert conn.fatal_close_code is None
    assert conn.should_resume is resumable
    assert conn.reconnect() == 0


def test_connection_rejected() -> None:
    from discord_gateway import ConnectionRejected, RejectedConnectionData

    conn = DiscordConnection("wss://g")
    conn.connect()
    response = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 4\r\n\r\n"
    with pytest.raises(ConnectionRejected) as info:
        conn.receive(response)
    assert info.value.code == 429
    with pytest.raises(RejectedConnectionData) as body:
        conn.receive(b"slow")
    assert body.value.data == b"slow"


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (4004, "AuthenticationFailed"),
        (4010, "InvalidShard"),
        (4011, "ShardingRequired"),
        (4012, "InvalidApiVersion"),
        (4013, "InvalidIntents"),
        (4014, "DisallowedIntents"),
    ],
)
def test_fatal_codes_name_their_cause(code: int, name: str) -> None:
    import discord_gateway
    from discord_gateway.errors import fatal_close_error

    link = ready_link()
    link.deliver(link.peer.close(code, "nope"))
    assert link.conn.fatal_close_code == code
    error = fatal_close_error(code, "nope")
    assert type(error) is getattr(discord_gateway, name)
    assert isinstance(error, discord_gateway.GatewayClosed)
    assert str(code) in str(error) and "nope" in str(error)
