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
from discord_gateway.testing import Close, GatewayServer, SendInvalidSession, SendReconnect

from harness import MAIN_URL, TOKEN, new_store


def _ready_pair() -> tuple[DiscordConnection, GatewayServer]:
    store = new_store()
    client = DiscordConnection(MAIN_URL, rng=random.Random(0))
    server = GatewayServer(store, now=0.0)
    server.receive_data(client.connect(now=0.0), 0.0)
    for chunk in server.data_to_send():
        assert client.receive(chunk, now=0.0) == []
    server.receive_data(client.identify(token=TOKEN, intents=513), 0.0)
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
    """Invariant "the gateway's close frame is answered" (RFC 6455 5.5.1, spec 52).

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
    assert client.state is State.RECONNECTING and client.should_resume  # spec 52: resumable


def test_op9_then_close_in_one_read_answers_with_a_close_frame() -> None:
    """The same race with op 9 d:false followed by 4003 (spec 56)."""
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
    assert not client.should_resume  # op 9 d:false: a new session (spec 28)


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
    """Invariant "sequence is the model's last seq" (spec 6, 22, 30).

    The client identified, then closed with 4000 before READY arrived. READY
    was rejected as "READY in state closing" but its s=1 was kept: a sequence
    with no session_id, and a session the gateway keeps for us was forgotten.
    """
    client, server = _hello_pair()
    server.receive_data(client.identify(token=TOKEN, intents=513), 0.0)
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
    assert client.should_resume  # 4000 keeps the session (spec 30)


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


def test_a_rejected_resumed_does_not_move_the_sequence() -> None:
    """Invariant "sequence is the model's last seq" (spec 6, 26).

    A second RESUMED (here: the local gateway replaying an earlier RESUMED, then
    sending its own) is rejected as an invalid payload, but its s had already
    become ``sequence``: the next RESUME claimed a dispatch never delivered.
    """
    client, server = _ready_pair()
    assert client.sequence == 1
    bogus = b'{"op":0,"t":"RESUMED","s":5,"d":{}}'
    frame = server._ws.send(TextMessage(bogus.decode()))
    with pytest.raises(RemoteProtocolError, match="RESUMED in state 'ready'"):
        client.receive(frame, now=1.0)  # the client is now closing with 4000
    assert client.sequence == 1
