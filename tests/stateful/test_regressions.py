"""Shrunk examples the gateway machines found, kept as plain regression tests.

Each one names the invariant that caught it and the core commit that fixed it.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from discord_gateway import CloseDiscordConnection, DiscordConnection, RemoteProtocolError, State
from discord_gateway.events import Dispatch
from discord_gateway.testing import (
    Close,
    GatewayServer,
    SendInvalidSession,
    SendReconnect,
    SessionStore,
)

from harness import INTENTS, MAIN_URL, TOKEN, new_store


def _ready_pair() -> tuple[DiscordConnection, GatewayServer]:
    store = new_store()
    client = DiscordConnection(MAIN_URL, rng=random.Random(0))
    server = GatewayServer(store, now=0.0)
    server.receive_data(client.connect(now=0.0), 0.0)
    for chunk in server.data_to_send():
        assert client.receive(chunk, now=0.0) == []
    server.receive_data(client.identify(token=TOKEN, intents=INTENTS), 0.0)
    for chunk in server.data_to_send():
        client.receive(chunk, now=0.0)
    assert client.state is State.READY
    return client, server


def _client_frames(data: bytes) -> list[object]:
    """Decode what a client wrote after its upgrade (server-side wsproto)."""
    tap = WSConnection(ConnectionType.SERVER)
    tap.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert isinstance(next(tap.events()), Request)
    tap.send(AcceptConnection())
    tap.receive_data(data)
    return list(tap.events())


def test_close_frame_in_the_same_read_as_op7_still_gets_our_close_frame() -> None:
    """Invariant "the gateway's close frame is answered" (RFC 6455 5.5.1, protocol 52).

    op 7 makes the client write a 4000 close frame; when the gateway's 1001
    arrived in the same read, receive() raised and dropped that frame, so the
    gateway never saw a close frame from the client at all.
    """
    client, server = _ready_pair()
    server.inject(SendReconnect(), 1.0)
    server.inject(Close(1001, "Discord WebSocket requesting client reconnect."), 1.0)
    (read,) = [b"".join(server.data_to_send())]
    try:
        client.receive(read, now=1.0)
    except CloseDiscordConnection as closed:
        assert closed.code == 1001
        assert closed.data
        frames = [f for f in _client_frames(closed.data) if isinstance(f, CloseConnection)]
        assert [f.code for f in frames] == [4000]
        server.receive_data(closed.data, 1.0)
        assert server.state.value == "closed"  # the handshake completed
    else:
        raise AssertionError("the close frame was not seen")
    assert client.state is State.RECONNECTING and client.should_resume  # protocol 52: resumable


def test_op9_then_close_in_one_read_answers_with_a_close_frame() -> None:
    """The same race with op 9 d:false followed by 4003 (protocol 56)."""
    client, server = _ready_pair()
    server.inject(SendInvalidSession(resumable=False), 1.0)
    server.inject(Close(4003), 1.0)
    read = b"".join(server.data_to_send())
    try:
        client.receive(read, now=1.0)
    except CloseDiscordConnection as closed:
        assert closed.data
        assert any(isinstance(f, CloseConnection) for f in _client_frames(closed.data))
    else:
        raise AssertionError("the close frame was not seen")
    assert not client.should_resume  # op 9 d:false: a new session (protocol 28)


def _hello_pair() -> tuple[DiscordConnection, GatewayServer]:
    store = new_store()
    client = DiscordConnection(MAIN_URL, rng=random.Random(0))
    server = GatewayServer(store, now=0.0)
    server.receive_data(client.connect(now=0.0), 0.0)
    for chunk in server.data_to_send():
        client.receive(chunk, now=0.0)
    assert client.state is State.HELLO
    return client, server


def test_ready_after_our_close_frame_still_names_the_session() -> None:
    """Invariant "sequence is the model's last seq" (protocol 6, 22, 30).

    The client identified, then closed with 4000 before READY arrived. READY
    was rejected as "READY in state closing" but its s=1 was kept: a sequence
    with no session_id, and a session the gateway keeps for us was forgotten.
    """
    client, server = _hello_pair()
    server.receive_data(client.identify(token=TOKEN, intents=INTENTS), 0.0)
    in_flight = b"".join(server.data_to_send())  # READY, not read yet
    server.receive_data(client.close(4000, now=0.0), 0.0)
    try:
        client.receive(in_flight + b"".join(server.data_to_send()), now=0.0)
    except CloseDiscordConnection as closed:
        assert closed.code == 4000
    events = list(client.events())
    assert [type(e).__name__ for e in events] == ["Hello", "Ready"]
    assert client.state is State.RECONNECTING
    assert client.session_id is not None and client.sequence == 1
    assert client.should_resume  # 4000 keeps the session (protocol 30)


def test_resumed_after_our_close_frame_is_delivered_once() -> None:
    """RESUMED read while our close frame is out: delivered, not an "invalid payload"."""
    client, server = _ready_pair()
    server.receive_data(None, 1.0)  # the TCP connection drops
    with contextlib.suppress(CloseDiscordConnection):
        client.receive(None, now=1.0)
    client.reconnect()
    server = GatewayServer(server.store, now=1.0)
    server.receive_data(client.connect(now=1.0), 1.0)
    for chunk in server.data_to_send():
        client.receive(chunk, now=1.0)
    server.receive_data(client.resume(TOKEN), 1.0)
    in_flight = b"".join(server.data_to_send())  # RESUMED, not read yet
    client.close(4000, now=1.0)
    client.receive(in_flight, now=1.0)
    resumed = [e for e in client.events() if type(e).__name__ == "Resumed"]
    assert len(resumed) == 1 and client.sequence == resumed[0].seq
    assert client.state is State.CLOSING


def test_a_rejected_ready_does_not_move_the_sequence() -> None:
    """Invariant "sequence is the model's last seq" (protocol 6, 26).

    A payload the client rejects as invalid must not leave its s behind in
    ``sequence``: the next RESUME would claim a dispatch never delivered.
    """
    client, server = _ready_pair()
    assert client.sequence == 1
    bogus = b'{"op":0,"t":"READY","s":5,"d":{"session_id":"other"}}'
    frame = server._ws.send(TextMessage(bogus.decode()))
    with pytest.raises(RemoteProtocolError, match="READY in state 'ready'"):
        client.receive(frame, now=1.0)  # the client is now closing with 4000
    assert client.sequence == 1


def _reconnect(client: DiscordConnection, store: SessionStore, now: float) -> GatewayServer:
    """The transport dropped: reconnect to a new gateway connection, up to HELLO."""
    with contextlib.suppress(CloseDiscordConnection):
        client.receive(None, now=now)
    client.reconnect()
    server = GatewayServer(store, now=now)
    server.receive_data(client.connect(now=now), now)
    for chunk in server.data_to_send():
        client.receive(chunk, now=now)
    assert client.should_resume
    return server


def _resume(client: DiscordConnection, store: SessionStore, now: float) -> GatewayServer:
    """The transport dropped: reconnect, and RESUME on a new gateway connection."""
    server = _reconnect(client, store, now)
    server.receive_data(client.resume(TOKEN), now)
    return server


def test_a_replayed_resumed_does_not_livelock_the_session() -> None:
    """Teardown invariant "the world settles back to READY" (protocol 24): the
    "OPEN: did not settle" finding, 1,505 connections in the shrunk run.

    The local gateway logs RESUMED in the session like any dispatch. A resume
    whose RESUMED the client never read (the transport dropped first) leaves it
    in the replay of the next resume, ahead of that resume's own RESUMED. The
    client took the old one as the end of its resume, rejected the real one as
    "RESUMED in state 'ready'", closed with 4000, resumed, got the same replay,
    and so on forever: every RESUMED also reset the backoff to 0 s.
    """
    client, server = _ready_pair()
    list(client.events())  # HELLO, READY
    store = server.store
    server.receive_data(None, 1.0)
    server = _resume(client, store, 1.0)
    assert [p["t"] for p in server.store.sessions[client.session_id].log][-1] == "RESUMED"
    server.receive_data(None, 2.0)  # dropped before the client read RESUMED (s=2)
    server = _resume(client, store, 2.0)  # resumes from s=1: the replay holds s=2
    for chunk in server.data_to_send():
        assert client.receive(chunk, now=2.0) == []  # no close frame
    events = list(client.events())
    assert [(type(e).__name__, e.seq) for e in events if isinstance(e, Dispatch)] == [
        ("Resumed", 2),
        ("Dispatch", 3),  # the real RESUMED, passed on: nothing lost, nothing rejected
    ]
    passed_on = events[-1]
    assert type(passed_on) is Dispatch and passed_on.name == "RESUMED"
    assert passed_on.payload["t"] == "RESUMED" and passed_on.data == passed_on.payload["d"]
    assert client.state is State.READY and client.sequence == 3


def test_an_invalid_dispatch_in_the_replay_costs_a_reconnect_not_a_loop() -> None:
    """Garbage in the session's replay must not come back on every resume.

    A rejected payload never moves ``sequence`` (so a resume replays it), but
    what follows it in the same replay - at least RESUMED - is still read while
    our close frame is out and moves ``sequence`` past it: the second resume
    no longer replays it.
    """
    client, server = _ready_pair()
    store = server.store
    session = store.sessions[client.session_id]
    store._append(session, None, {})  # type: ignore[arg-type]  # s=2, a dispatch without "t"
    connections = 1
    while True:
        read = b"".join(server.data_to_send())
        try:
            client.receive(read, now=1.0)
        except RemoteProtocolError as err:
            assert "without an event name" in str(err)
            server.receive_data(err.data, 1.0)
            with contextlib.suppress(CloseDiscordConnection):
                client.receive(b"".join(server.data_to_send()), now=1.0)
            server = _resume(client, store, 1.0)
            connections += 1
            continue
        break
    assert client.state is State.READY and client.should_resume
    assert connections == 3  # the live garbage, its replay (then RESUMED s=3), done
    assert client.sequence == session.seq


def test_what_crosses_an_op9_false_is_not_delivered() -> None:
    """Invariant "every dispatch belongs to the model's session" (protocol 28).

    The gateway sent op 9 false while our RESUME was in flight, then answered
    the RESUME with its replay and RESUMED. The client had dropped the session
    and was closing, yet took the RESUMED as the late end of its resume: a
    ``Resumed`` (and the replay) delivered after ``InvalidSession(False)``,
    for a session it no longer had.
    """
    client, server = _ready_pair()
    list(client.events())
    store = server.store
    store.dispatch("MESSAGE_CREATE", {"n": 1})  # s=2, in the replay
    server = _reconnect(client, store, 1.0)
    server.inject(SendInvalidSession(False), 1.0)  # the gateway gives up...
    server.receive_data(client.resume(TOKEN), 1.0)  # ...as our RESUME arrives
    assert [p.get("t") for p in server.sent][-2:] == ["MESSAGE_CREATE", "RESUMED"]
    for chunk in server.data_to_send():
        client.receive(chunk, now=1.0)
    assert [e for e in client.events() if isinstance(e, Dispatch)] == []
    assert client.state is State.CLOSING
    assert not client.should_resume and client.sequence is None
