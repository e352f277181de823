"""What the byte-level fuzzer found, each as a minimal input in a plain test.

Each test states the error contract for its input, not a particular fix: nothing but
``GatewayError`` subclasses and ``CloseDiscordConnection`` leaves the core, deadlines
stay finite and move forward, memory stays bounded. A new finding comes in marked
``xfail(strict=True)`` with the branch that fixes it as the reason; merging that
branch turns the test into an XPASS, which strict xfail fails, and the mark goes.
All of the findings below fail on the core before issue 12 (main at 9be3dd5).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import random
import tracemalloc
import zlib
from typing import Any

import pytest

from discord_gateway import (
    CloseDiscordConnection,
    DiscordConnection,
    Hello,
    RemoteProtocolError,
    State,
)

from .corpus import ACCEPT_PLACEHOLDER, BINARY, CLOSE, PING, TEXT, answer, frame
from .driver import MAX_PAYLOAD_SIZE

URL = "wss://gateway.discord.gg"
HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT_PLACEHOLDER + b"\r\n\r\n"
)
HELLO = frame(TEXT, b'{"op":10,"d":{"heartbeat_interval":41250}}')
OP7 = frame(TEXT, b'{"op":7,"d":null}')


def upgraded(stream: bytes = b"", **kwargs: Any) -> DiscordConnection:
    """A client whose upgrade was accepted, fed ``stream`` after the 101 response."""
    conn = DiscordConnection(URL, rng=random.Random(0), max_payload_size=MAX_PAYLOAD_SIZE, **kwargs)
    request = conn.connect(now=0.0)
    conn.receive(answer(HEAD, request), now=0.0)
    if stream:
        conn.receive(stream, now=0.0)
    return conn


def greet(conn: DiscordConnection) -> None:
    for event in conn.events():
        if isinstance(event, Hello):
            conn.identify(token="t0ken", intents=513)


def assert_timer_sane(conn: DiscordConnection, now: float = 0.0) -> None:
    """The deadline is finite, less than a day ahead, and moves past ``now`` once handled."""
    for _ in range(5):
        deadline = conn.next_deadline()
        if deadline is None:
            return
        assert math.isfinite(deadline) and deadline < now + 86_400, deadline
        now = max(now, deadline)
        try:
            conn.handle_timer(now)
        except CloseDiscordConnection:
            return
        after = conn.next_deadline()
        assert after is None or after > now, (deadline, after)


# -- issue 12 item 10: control frames while closing, garbage upgrade responses ------------


def test_ping_after_our_close_frame() -> None:
    """op 7 makes us send a close frame; a Ping after it raised wsproto's LocalProtocolError."""
    conn = upgraded(HELLO)
    greet(conn)
    assert conn.receive(OP7, now=0.0)  # our close frame
    assert conn.state is State.CLOSING
    assert conn.receive(frame(PING, b"are you there"), now=0.0) == []  # no Pong after a close
    with pytest.raises(CloseDiscordConnection):
        conn.receive(frame(CLOSE, (4000).to_bytes(2, "big")), now=0.0)


@pytest.mark.parametrize(
    "header",
    [
        b"Connection: Upgrade, caf\xe9",
        b"Sec-WebSocket-Protocol: \xff",
        b"Sec-WebSocket-Extensions: permessage-deflate; x=\xe9",
    ],
)
def test_non_ascii_bytes_in_the_101_headers(header: bytes) -> None:
    """A non-ASCII byte in a header wsproto reads raised UnicodeDecodeError out of receive()."""
    name = header.split(b":")[0]
    lines = [line for line in HEAD.split(b"\r\n") if line and not line.startswith(name)]
    head = b"\r\n".join([*lines, header]) + b"\r\n\r\n"
    conn = DiscordConnection(URL, max_payload_size=MAX_PAYLOAD_SIZE)
    request = conn.connect(now=0.0)
    with pytest.raises(RemoteProtocolError):
        conn.receive(answer(head + HELLO, request), now=0.0)
    assert conn.state is State.RECONNECTING


# -- issue 12 item 12: HELLO's heartbeat_interval ------------------------------------------


@pytest.mark.parametrize("interval", [b"1e300", b"18446744073709551616e10", b"1e-300", b"5e-324"])
def test_hello_interval_out_of_range(interval: bytes) -> None:
    """1e300 gave a deadline of 1e297 s; 1e-300 a timer that never moves (now + i == now)."""
    conn = upgraded()
    with pytest.raises(RemoteProtocolError):
        conn.receive(frame(TEXT, b'{"op":10,"d":{"heartbeat_interval":%s}}' % interval), now=0.0)
    assert_timer_sane(conn)


def test_hello_interval_etf_bignum() -> None:
    """An ETF bignum over a float's range raised OverflowError in _on_hello."""
    big = 2**1100
    size = (big.bit_length() + 7) // 8
    etf = (
        b"\x83t\x00\x00\x00\x02w\x02opa\x0aw\x01dt\x00\x00\x00\x01w\x12heartbeat_interval"
        + bytes((110, size, 0))
        + big.to_bytes(size, "little")
    )
    conn = upgraded(encoding="etf")
    with pytest.raises(RemoteProtocolError):
        conn.receive(frame(BINARY, etf), now=0.0)
    assert_timer_sane(conn)


# -- fuzz finding F1: READY's resume_gateway_url ---------------------------------------


def test_resume_url_with_control_character_in_host() -> None:
    """A NUL host in resume_gateway_url made every later connect() raise h11's error."""
    conn = upgraded(HELLO)
    greet(conn)
    ready = {
        "op": 0,
        "s": 1,
        "t": "READY",
        "d": {"session_id": "abc", "resume_gateway_url": "\x00:/", "v": 10},
    }
    conn.receive(frame(TEXT, json.dumps(ready).encode()), now=0.0)
    with pytest.raises(CloseDiscordConnection):
        conn.receive(None, now=0.0)  # the transport is lost: resume
    assert conn.should_resume
    conn.reconnect()
    request = conn.connect(now=1.0)  # raised h11's LocalProtocolError: Illegal header value
    assert b"\r\nhost: gateway.discord.gg\r\n" in request.lower()


# -- memory ----------------------------------------------------------------------------------


def traced_peak(conn: DiscordConnection, chunks: list[bytes]) -> int:
    tracemalloc.start()
    try:
        for chunk in chunks:
            with contextlib.suppress(RemoteProtocolError):
                conn.receive(chunk, now=0.0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_etf_nil_amplification_is_bounded() -> None:
    """1 MiB of ETF NIL_EXT (one byte each) decoded to a million list objects: 64 MiB.

    Now refused past one term per 8 bytes of the cap: well under what the worst JSON
    of the same size costs (``[[],[],...]``: about 35x its size).
    """
    cap = 1024 * 1024
    terms = cap - 16
    nils = b"\x83l" + terms.to_bytes(4, "big") + b"j" * terms + b"j"
    deflate = zlib.compressobj()
    conn = DiscordConnection(URL, encoding="etf", compress="zlib-stream", max_payload_size=cap)
    request = conn.connect(now=0.0)
    conn.receive(answer(HEAD, request), now=0.0)
    data = deflate.compress(nils) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert traced_peak(conn, [frame(BINARY, data)]) < 12 * cap


def test_text_frame_over_the_cap_while_closing_is_not_buffered() -> None:
    """After our close frame, a text frame far over the cap was buffered whole.

    8 MiB arrive in 64 KiB reads after op 7; what the client holds must stay near
    the cap (the issue measured ~1 GiB RSS for a 1 GiB frame).
    """
    conn = upgraded(HELLO)
    greet(conn)
    conn.receive(OP7, now=0.0)
    size = 8 * 1024 * 1024
    header = frame(TEXT, b"", length=size)
    chunks = [header] + [b" " * 65536] * (size // 65536)
    assert traced_peak(conn, chunks) < 4 * MAX_PAYLOAD_SIZE + 1024 * 1024


# -- fuzz finding F2: the adapters' greeting after HELLO ---------------------------------


def test_adapter_survives_hello_and_op7_in_one_read() -> None:
    """HELLO then op 7 in one read: the adapter's IDENTIFY raised LocalProtocolError (closing)."""
    from discord_gateway.adapters import _base

    options = _base.ShardOptions(token="t0ken", intents=513, compress=None)
    data = HELLO + OP7
    try:
        # the adapters' sans-I/O driver, where it exists
        driver: Any = importlib.import_module("discord_gateway.adapters._driver").Driver(options)
        request = b"".join(driver.connect(0.0).out)
        step = driver.receive(answer(HEAD, request) + data, 0.0)
    except ImportError:  # before the driver: the adapters' shared step()
        conn = options.new_connection()
        request = conn.connect(now=0.0)
        step = _base.step(
            options, conn, lambda now: conn.receive(answer(HEAD, request) + data, now), 0.0
        )
        assert conn.state is State.CLOSING
    assert step.out  # our close frame goes out; the shard lives on


# -- fuzz finding F3: an ETF session_id that is not UTF-8 ---------------------------------


def test_etf_session_id_not_utf8() -> None:
    """ETF READY with a session_id that is not UTF-8: every resume() raised InvalidCommand.

    The decoder keeps the bytes as lone surrogates (surrogateescape); RESUME cannot
    encode them, and an adapter takes InvalidCommand from its own greeting for a bug.
    """
    hello = (
        b"\x83t\x00\x00\x00\x02w\x02opa\x0aw\x01dt\x00\x00\x00\x01"
        b"w\x12heartbeat_intervalb\x00\x00\xa1\x22"
    )
    session_id = b"abc\xe6def"
    ready = (
        b"\x83t\x00\x00\x00\x04w\x02opa\x00w\x01sa\x01w\x01tm\x00\x00\x00\x05READY"
        b"w\x01dt\x00\x00\x00\x01w\nsession_idm" + len(session_id).to_bytes(4, "big") + session_id
    )
    conn = upgraded(frame(BINARY, hello), encoding="etf")
    greet(conn)
    with contextlib.suppress(RemoteProtocolError):  # refusing that READY is fine too
        conn.receive(frame(BINARY, ready), now=0.0)
    with pytest.raises(CloseDiscordConnection):
        conn.receive(None, now=0.0)
    conn.reconnect()
    request = conn.connect(now=1.0)
    conn.receive(answer(HEAD, request) + frame(BINARY, hello), now=1.0)
    assert [type(e).__name__ for e in conn.events()][-1] == "Hello"
    if conn.should_resume:
        assert conn.resume("t0ken", now=1.0)  # raised InvalidCommand (surrogates not allowed)
    else:
        assert conn.identify(token="t0ken", intents=513, now=1.0)


# -- fuzz finding F4: the send limit's window edge in floating point -----------------------


def test_queued_commands_release_at_the_deadline_they_announce() -> None:
    """next_free() said t0 + 60, but try_acquire(t0 + 60) kept t0 in the window because
    (t0 + 60) - 60 < t0 in floating point: handle_timer released nothing and
    next_deadline() stayed at now (a timer loop spins)."""
    t0 = 9.85012104914478
    assert (t0 + 60.0) - 60.0 < t0  # the float edge this needs
    conn = upgraded(HELLO)
    greet(conn)
    ready = b'{"op":0,"s":1,"t":"READY","d":{"session_id":"abc","v":10}}'
    conn.receive(frame(TEXT, ready), now=t0)
    for _ in range(130):  # over the send limit: the rest waits in the queue
        conn.update_presence(status="idle", now=t0)
    deadline = conn.next_deadline()
    assert deadline is not None
    while deadline < t0 + 61:
        conn.receive(frame(TEXT, b'{"op":11}'), now=deadline)  # keep heartbeats acknowledged
        conn.handle_timer(deadline)
        after = conn.next_deadline()
        assert after is not None and after > deadline, (deadline, after)
        deadline = after
