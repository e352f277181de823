"""The exact words users read: every misuse message, and the reasons we give.

Other tests check that the right exception type is raised in the right state.
These pin the text, because an error message is part of the API a user meets
first: each one names what was wrong and what to do instead (the style guide's
"errors are precise"). Changing a message is fine; change it here on purpose.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from discord_gateway import (
    CloseDiscordConnection,
    CommandQueueFull,
    ConfigurationError,
    DiscordConnection,
    GatewayError,
    InvalidCommand,
    LocalProtocolError,
    RemoteProtocolError,
)

from peer import Link, client_frames, hello_link, ready_link


def conn(**kwargs: Any) -> DiscordConnection:
    return DiscordConnection("wss://gateway.discord.gg", rng=random.Random(0), **kwargs)


def closing_link() -> Link:
    link = ready_link()
    link.conn.close(4000)
    return link


def queue_full() -> None:
    link = ready_link(max_queued_commands=1)
    for _ in range(200):
        link.conn.update_presence(status="online", now=0.0)


MISUSE: dict[str, tuple[Callable[[], object], type[GatewayError], str]] = {
    "empty uri": (
        lambda: DiscordConnection(""),
        ConfigurationError,
        "uri must be a non-empty string such as 'wss://gateway.discord.gg'",
    ),
    "bad scheme": (
        lambda: DiscordConnection("https://gateway.discord.gg"),
        ConfigurationError,
        "uri 'https://gateway.discord.gg' must use wss:// (or ws:// for a local gateway)",
    ),
    "bad resume url": (
        lambda: conn(resume_gateway_url="http://x", session_id="s", sequence=1),
        ConfigurationError,
        "resume_gateway_url 'http://x' must use wss:// (or ws:// for a local gateway)",
    ),
    "half a session": (
        lambda: conn(session_id="s"),
        ConfigurationError,
        "resuming a session needs both session_id and sequence",
    ),
    "timeouts": (
        lambda: conn(close_timeout=0),
        ConfigurationError,
        "close_timeout must be a number of seconds above 0 and at most 86400 (a day), not 0",
    ),
    "receive before connect": (
        lambda: conn().receive(b"x"),
        LocalProtocolError,
        "call connect() and send its bytes before receiving",
    ),
    "connect twice": (
        lambda: Link().conn.connect(),
        LocalProtocolError,
        "can't connect in state 'connecting' (connect() was already called): "
        "call reconnect() first",
    ),
    "connect while closing": (
        lambda: closing_link().conn.connect(),
        LocalProtocolError,
        "can't connect in state 'closing': call reconnect() first",
    ),
    "heartbeat before HELLO": (
        lambda: Link().conn.heartbeat(),
        LocalProtocolError,
        "can't send a heartbeat in state 'connecting': wait for HELLO",
    ),
    "heartbeat while closing": (
        lambda: closing_link().conn.heartbeat(),
        LocalProtocolError,
        "can't send a heartbeat in state 'closing': the connection is closing",
    ),
    "identify before HELLO": (
        lambda: Link().conn.identify(token="t", intents=0),
        LocalProtocolError,
        "can't identify in state 'connecting': wait for HELLO (the first event of every "
        "connection)",
    ),
    "identify twice": (
        lambda: ready_link().conn.identify(token="t", intents=0),
        LocalProtocolError,
        "can't identify in state 'ready': IDENTIFY or RESUME was already sent on this "
        "connection (once only)",
    ),
    "resume while closing": (
        lambda: closing_link().conn.resume("t"),
        LocalProtocolError,
        "can't resume in state 'closing': the connection is closing or closed; reconnect() first",
    ),
    "resume without a session": (
        lambda: hello_link().conn.resume("t"),
        LocalProtocolError,
        "there is no session to resume: identify() instead (should_resume is False)",
    ),
    "resume with an empty token": (
        lambda: hello_link(session_id="s", sequence=1).conn.resume(""),
        InvalidCommand,
        "token must be a non-empty string",
    ),
    "payload and transport compression": (
        lambda: hello_link(compress="zlib-stream").conn.identify(
            token="t", intents=0, compress=True
        ),
        InvalidCommand,
        "payload compression can't be combined with transport compression 'zlib-stream': "
        "choose one or the other",
    ),
    "payload compression with ETF": (
        lambda: hello_link(encoding="etf").conn.identify(token="t", intents=0, compress=True),
        InvalidCommand,
        "payload compression works with JSON only: use encoding='json'",
    ),
    "command before IDENTIFY": (
        lambda: hello_link().conn.send_command(3, {}),
        LocalProtocolError,
        "can't send commands in state 'hello': send IDENTIFY or RESUME first "
        "(Discord closes with 4003 otherwise)",
    ),
    "command while closing": (
        lambda: closing_link().conn.send_command(3, {}),
        LocalProtocolError,
        "can't send commands in state 'closing': the connection is closing",
    ),
    "unknown opcode": (
        lambda: ready_link().conn.send_command(99, {}),
        InvalidCommand,
        "unknown opcode 99",
    ),
    "heartbeat as a command": (
        lambda: ready_link().conn.send_command(1, None),
        InvalidCommand,
        "use heartbeat()/identify()/resume() to send HEARTBEAT",
    ),
    "a gateway opcode": (
        lambda: ready_link().conn.send_command(10, {}),
        InvalidCommand,
        "HELLO is sent by the gateway, never by a client",
    ),
    "queue full": (
        queue_full,
        CommandQueueFull,
        "1 commands already wait for the send limit (120 per 60 s); "
        "slow down or raise max_queued_commands",
    ),
    "reserved close code": (
        lambda: ready_link().conn.close(2000),
        InvalidCommand,
        "2000 is not a close code a client may send",
    ),
    "close twice": (
        lambda: closing_link().conn.close(),
        LocalProtocolError,
        "can't close in state 'closing': already closing or closed",
    ),
}


def fatally_closed() -> None:
    link = ready_link()
    link.deliver(link.peer.close(4004))
    assert link.closed is not None
    link.conn.reconnect()


MISUSE["reconnect after a fatal close"] = (
    fatally_closed,
    LocalProtocolError,
    "the gateway closed with fatal code 4004 (authentication failed (bad token)); "
    "reconnecting cannot succeed: fix the cause and start again",
)


@pytest.mark.parametrize("case", MISUSE)
def test_misuse_messages(case: str) -> None:
    call, kind, message = MISUSE[case]
    with pytest.raises(kind) as info:
        call()
    assert str(info.value) == message


def test_a_bad_resume_gateway_url_is_named_when_used() -> None:
    # (A READY whose resume_gateway_url cannot be used is logged and ignored.)
    link = ready_link()
    link.conn.resume_gateway_url = "ftp://x"
    link.deliver(link.peer.close(4000))
    link.conn.reconnect()
    with pytest.raises(ConfigurationError) as info:
        link.conn.connect()
    assert str(info.value) == (
        "resume_gateway_url 'ftp://x' must use wss:// (or ws:// for a local gateway)"
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"op": 0, "s": 3, "t": "READY", "d": {}}', "READY without a valid session_id: None"),
        ('{"op": 0, "s": 3, "t": "RESUMED", "d": {}}', "RESUMED in state 'identifying'"),
    ],
)
def test_gateway_garbage_messages(frame: str, message: str) -> None:
    link = hello_link()
    link.identify()
    with pytest.raises(RemoteProtocolError) as info:
        link.conn.receive(link.peer.send(frame))
    assert str(info.value) == message


def close_frame(data: bytes) -> tuple[int, str]:
    """The code and reason of the close frame that ends ``data``."""
    opcode, payload = client_frames(data)[-1]
    assert opcode == 0x8
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def test_our_close_frames_say_why() -> None:
    """The reason goes to the gateway (and to our local server's log): say why."""
    link = ready_link()
    link.conn.heartbeat(now=1.0)
    assert close_frame(link.conn.heartbeat(now=2.0)) == (4000, "heartbeat ACK missed")

    link = ready_link()
    deadline = link.conn.next_deadline()
    assert deadline is not None
    link.conn.handle_timer(deadline)  # the first heartbeat; its ACK never comes
    deadline = link.conn.next_deadline()
    assert deadline is not None
    assert close_frame(b"".join(link.conn.handle_timer(deadline))) == (
        4000,
        "heartbeat ACK missed",
    )

    link = ready_link()
    out = link.conn.receive(link.peer.send({"op": 7, "d": None}))
    assert close_frame(b"".join(out)) == (4000, "reconnect requested")

    link = ready_link()
    out = link.conn.receive(link.peer.send({"op": 9, "d": True}))
    assert close_frame(b"".join(out)) == (4000, "invalid session")

    link = ready_link()
    with pytest.raises(RemoteProtocolError) as info:
        link.conn.receive(link.peer.send("{not json"))
    assert close_frame(info.value.data) == (4000, "invalid payload")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("no hello", "no HELLO in time"),
        ("no close reply", "close handshake timed out"),
        ("lost upgrade", "connection lost during the WebSocket upgrade"),
    ],
)
def test_why_a_connection_ended_on_our_side(how: str, reason: str) -> None:
    """``CloseDiscordConnection.reason`` when no close frame came from the gateway."""
    if how == "lost upgrade":
        client = conn()
        client.connect(now=0.0)
        with pytest.raises(CloseDiscordConnection) as info:
            client.receive(b"")
    else:
        link = Link() if how == "no hello" else closing_link()
        deadline = link.conn.next_deadline()
        assert deadline is not None
        with pytest.raises(CloseDiscordConnection) as info:
            link.conn.handle_timer(deadline)
    assert (info.value.data, info.value.code, info.value.reason) == (None, 1006, reason)
