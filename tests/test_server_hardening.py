"""The local gateway under buggy bots: bounded memory, deadlines, no traceback, Discord's rules.

Sans-I/O, in virtual time. Every test here failed on the server before it was hardened.
"""

from __future__ import annotations

import logging
import struct
import tracemalloc
from typing import Any

import pytest
from wsproto.events import CloseConnection, Ping, TextMessage

from discord_gateway.testing import (
    DEFAULT_TOKEN,
    ConnectionState,
    GatewayServer,
    ServerConfig,
    SessionStore,
)
from tests.gateway_client import FakeClient

HELLO, HEARTBEAT, PRESENCE, VOICE, RESUME, MEMBERS, INVALID_SESSION = 10, 1, 3, 4, 6, 8, 9
OTHER_TOKEN = "another-bots-token"


def store(**config: Any) -> SessionStore:
    config = {
        "heartbeat_interval": 10.0,
        "heartbeat_grace": 2.0,
        "guild_ids": (),
        "enforce_identify_concurrency": False,  # sessions start back to back here
        **config,
    }
    return SessionStore(ServerConfig(**config))


def identified(s: SessionStore, now: float = 0.0, **changes: Any) -> FakeClient:
    client = FakeClient(s, now=now)
    client.identify(**changes)
    return client


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="discord_gateway.testing")
    return caplog


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def raw_head(server: GatewayServer, head: bytes) -> bytes:
    server.receive_data(head, 0.0)
    return b"".join(server.data_to_send())


UPGRADE = (
    b"GET /?v=10&encoding=json HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


# -- 1. bounded memory ------------------------------------------------------------------------


def test_after_a_protocol_error_nothing_is_buffered_and_the_clients_close_is_heard() -> None:
    client = FakeClient(store())
    server = client.server
    server.receive_data(b"\x81\x05hello", 0.0)  # an unmasked client frame: RFC 6455 5.1
    assert server.close_code == 1002 and server.state is ConnectionState.CLOSING
    frame = b"\x82\xff" + struct.pack(">Q", 1 << 20) + b"mask"  # 1 MiB binary frames
    tracemalloc.start()
    try:
        for _ in range(64):  # 64 MiB the server must not keep
            server.receive_data(frame + b"\0" * (1 << 20), 0.0)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 256 * 1024
    server.receive_data(
        b"\x88\x82mask" + bytes(a ^ b for a, b in zip(b"\x03\xea", b"ma", strict=True)), 0.1
    )
    assert server.state is ConnectionState.CLOSED and not server.aborted  # no 5 s wait


def test_invalid_utf8_text_closes_1007() -> None:
    client = FakeClient(store())
    client.server.receive_data(b"\x81\x82\0\0\0\0\xc3\x28", 0.0)
    assert client.server.close_code == 1007


def test_closed_connections_release_their_compressor_and_only_a_few_are_kept() -> None:
    s = store(keep_closed_connections=10)
    for n in range(200):
        client = FakeClient(
            s, query="v=10&encoding=json&compress=zlib-stream", compress="zlib-stream"
        )
        assert client.server._compressor is not None
        client.close(1000)
        assert client.server._compressor is None  # released at close
        assert n < 10 or len(s.connections) <= 10 + 16 + 1
    assert s.connection_count == 200
    assert s.connections[-1] is client.server  # the newest record is kept


def test_a_long_lived_connections_record_is_bounded() -> None:
    s = store(record_limit=100, rate_limit=10_000)
    client = identified(s)
    for n in range(1000):
        s.dispatch("MESSAGE_CREATE", {"n": n})
        client.op(HEARTBEAT, None)
    assert 100 <= len(client.server.sent) <= 200
    assert 100 <= len(client.server.received) <= 200
    assert client.server.sent[-1]["op"] == 11 and client.server.received[-1].op == HEARTBEAT


def test_detached_sessions_expire_on_their_own_timer() -> None:
    s = store(session_ttl=30.0)
    for _ in range(50):
        identified(s).drop()
    assert len(s.sessions) == 50 and s.next_deadline() == 30.0
    s.handle_timer(29.0)
    assert len(s.sessions) == 50
    s.handle_timer(30.0)  # no connection had to act for this
    assert s.sessions == {} and s.next_deadline() is None


def test_a_reattached_session_does_not_expire_on_its_old_deadline() -> None:
    s = store(session_ttl=30.0)
    first = identified(s)
    session_id = first.ready()["session_id"]
    first.drop()
    second = FakeClient(s, now=10.0)
    second.resume(session_id, 1)
    s.handle_timer(31.0)
    assert session_id in s.sessions and second.server.state is ConnectionState.CONNECTED


# -- 2. a failed RESUME never harms another client's session -----------------------------------


def test_resuming_another_bots_session_is_refused_and_leaves_it_alone() -> None:
    s = store(tokens=frozenset({DEFAULT_TOKEN, OTHER_TOKEN}))
    owner = identified(s)
    session_id = owner.ready()["session_id"]
    intruder = FakeClient(s)
    intruder.op(RESUME, {"token": OTHER_TOKEN, "session_id": session_id, "seq": 1})
    assert intruder.payloads[-1]["op"] == INVALID_SESSION
    assert session_id in s.sessions and s.sessions[session_id].valid
    assert s.dispatch("MESSAGE_CREATE", {}) == [2]
    owner.pump()
    assert owner.dispatches()[-1] == (2, "MESSAGE_CREATE")  # still gets events


@pytest.mark.parametrize("seq", [10**9, -1])
def test_a_bad_seq_invalidates_the_session_and_tells_its_live_connection(seq: int) -> None:
    s = store()
    owner = identified(s)
    session_id = owner.ready()["session_id"]
    other = FakeClient(s)
    other.resume(session_id, seq)
    assert other.payloads[-1]["op"] == INVALID_SESSION
    owner.pump()
    assert owner.payloads[-1] == {"op": INVALID_SESSION, "d": False, "s": None, "t": None}
    assert owner.server.state is ConnectionState.AWAITING_IDENTIFY  # not a silent zombie
    owner.identify()
    assert owner.dispatches()[-1] == (1, "READY")


def test_resume_from_seq_0_does_not_replay_ready() -> None:
    s = store()
    first = identified(s)
    session_id = first.ready()["session_id"]
    first.drop()
    second = FakeClient(s)
    second.resume(session_id, 0)
    assert second.dispatches() == [(2, "RESUMED")]


# -- 3. deadlines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"])
def test_a_request_head_that_never_completes_gets_408_at_the_deadline(head: bytes) -> None:
    server = GatewayServer(store(handshake_timeout=10.0), now=0.0)
    if head:
        server.receive_data(head, 1.0)
    assert server.next_deadline() == 10.0
    server.handle_timer(9.9)
    assert server.state is ConnectionState.HANDSHAKE
    server.handle_timer(10.0)
    assert server.state is ConnectionState.CLOSED
    assert b"".join(server.data_to_send()).startswith(b"HTTP/1.1 408 ")


# -- 4. no traceback from any client input --------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (UPGRADE.replace(b"/?v=10", b"http://[/?v=10"), b"400"),
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"), b"400"),  # RFC 6455 4.1: HTTP/1.1 or later
        (UPGRADE.replace(b"Connection: Upgrade", b"Connection: keep-alive"), b"400"),
        (UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""), b"400"),
        (UPGRADE.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), b"426"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 6000 + b"\r\n", b"431"),  # complete, still too big
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"431"),  # too many headers
        # fuzz findings: wsproto decodes these and raised UnicodeDecodeError
        (UPGRADE.replace(b"Host: 127.0.0.1", b"Host: \x15\xdf\x03"), b"400"),
        (UPGRADE.replace(b"Connection: Upgrade", b"Connection: \xa0 Upgrade"), b"400"),
    ],
)
def test_bad_requests_get_an_http_status_not_a_reset(
    head: bytes, status: bytes, no_errors: pytest.LogCaptureFixture
) -> None:
    server = GatewayServer(store(), now=0.0)
    reply = raw_head(server, head)
    assert reply.startswith(b"HTTP/1.1 " + status + b" "), reply[:40]
    assert not server.aborted and server.state is ConnectionState.CLOSED
    if status == b"426":
        assert b"Sec-WebSocket-Version: 13\r\n" in reply
    assert errors(no_errors) == []


@pytest.mark.parametrize("version", ["%C2%B2", "%EF%BC%91%EF%BC%90", "9" * 5000, "-10", "1e1"])
def test_odd_versions_close_4012(version: str, no_errors: pytest.LogCaptureFixture) -> None:
    client = FakeClient(store(), query=f"v={version}&encoding=json")
    assert client.close_code == 4012
    assert errors(no_errors) == []


def test_a_ping_after_our_close_frame_raises_nothing(no_errors: pytest.LogCaptureFixture) -> None:
    client = FakeClient(store())
    client.server.close(4000, "bye")  # our close frame; the client has not seen it yet
    client.server.receive_data(client.ws.send(Ping(b"late")), 0.0)
    assert client.server.state is ConnectionState.CLOSING and not client.server.aborted
    client.pump()
    assert client.close_code == 4000  # the close code still gets through
    assert errors(no_errors) == []


def _etf_members(nonce: bytes) -> bytes:
    def binary(text: bytes) -> bytes:
        return b"m" + struct.pack(">I", len(text)) + text

    d = b"t" + struct.pack(">I", 4)
    d += binary(b"guild_id") + binary(b"1") + binary(b"query") + binary(b"")
    d += binary(b"limit") + b"a\x00" + binary(b"nonce") + nonce
    return b"\x83t" + struct.pack(">I", 2) + binary(b"op") + b"a\x08" + binary(b"d") + d


@pytest.mark.parametrize(
    "nonce",
    [
        b"m\x00\x00\x00\x02\xff\xfe",  # a binary that is not UTF-8
        b"o" + struct.pack(">I", 300) + b"\x00" + b"\x01" * 300,  # a 300-byte bignum
    ],
)
def test_etf_op8_with_a_nonce_discord_refuses_closes_4002_and_is_not_stored(
    nonce: bytes, no_errors: pytest.LogCaptureFixture
) -> None:
    s = store()
    client = FakeClient(s, query="v=10&encoding=etf", encoding="etf")
    client.identify()
    session_id = client.ready()["session_id"]
    client.send_raw(_etf_members(nonce))
    assert client.close_code == 4002
    assert [p["t"] for p in s.sessions[session_id].log] == ["READY"]  # nothing echoed
    again = FakeClient(s, query="v=10&encoding=etf", encoding="etf")
    again.resume(session_id, 0)  # the replay does not crash
    assert again.dispatches()[-1][1] == "RESUMED"
    assert errors(no_errors) == []


@pytest.mark.parametrize("json_library", ["orjson", "stdlib"])
def test_json_op8_with_a_lone_surrogate_nonce_closes_4002(
    json_library: str, no_errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if json_library == "stdlib":  # what the server does where orjson is not installed
        import json

        from discord_gateway.testing import server

        monkeypatch.setattr(server, "json_loads", json.loads)
        monkeypatch.setattr(
            server, "json_dumps", lambda o: json.dumps(o, ensure_ascii=False).encode()
        )
    client = identified(store())
    client.send_raw('{"op":8,"d":{"guild_id":"1","query":"","limit":0,"nonce":"\\ud800"}}')
    assert client.close_code == 4002
    assert errors(no_errors) == []


def test_deeply_nested_and_huge_numbers_close_4002(no_errors: pytest.LogCaptureFixture) -> None:
    for raw in ["[" * 3000 + "]" * 3000, '{"op":' + "9" * 5000 + "}"]:
        client = FakeClient(store(max_payload_size=16_000))
        client.send_raw(raw)
        assert client.close_code == 4002
    assert errors(no_errors) == []


# -- 5. fidelity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "d"),
    [
        (PRESENCE, "online"),
        (PRESENCE, {"since": None, "activities": [], "status": "sleepy", "afk": False}),
        (PRESENCE, {"since": None, "activities": None, "status": "online", "afk": False}),
        (PRESENCE, {"since": "now", "activities": [], "status": "online", "afk": False}),
        (VOICE, None),
        (VOICE, {"guild_id": "1", "channel_id": None, "self_mute": "no", "self_deaf": False}),
        (VOICE, {"guild_id": [1], "channel_id": None, "self_mute": False, "self_deaf": False}),
        (MEMBERS, {"guild_id": {"id": 1}, "query": "", "limit": 0}),
        (MEMBERS, {"guild_id": "1", "query": "", "limit": 1000}),
        (MEMBERS, {"guild_id": "1"}),  # neither query nor user_ids
        (MEMBERS, {"guild_id": "1", "user_ids": ["x"]}),
        (MEMBERS, {"guild_id": "1", "query": "", "limit": 0, "nonce": "n" * 33}),
        (MEMBERS, {"guild_id": str(1 << 64), "query": "", "limit": 0}),
    ],
)
def test_commands_with_a_bad_d_close_4002(op: int, d: Any) -> None:
    client = identified(store())
    client.op(op, d)
    assert client.close_code == 4002


@pytest.mark.parametrize(
    ("op", "d"),
    [
        (
            PRESENCE,
            {"since": 91879201, "activities": [{"name": "x"}], "status": "idle", "afk": 0 == 1},
        ),
        (VOICE, {"guild_id": "1", "channel_id": "2", "self_mute": False, "self_deaf": True}),
        (MEMBERS, {"guild_id": 1, "user_ids": "2", "nonce": "n" * 32}),
    ],
)
def test_good_commands_pass(op: int, d: Any) -> None:
    client = identified(store())
    client.op(op, d)
    assert client.close_code is None


def test_op8_echoes_the_guild_id_as_a_string() -> None:
    client = identified(store())
    client.op(MEMBERS, {"guild_id": 5, "query": "", "limit": 0, "nonce": "x"})
    assert client.payloads[-1]["d"]["guild_id"] == "5"
    assert client.payloads[-1]["d"]["nonce"] == "x"


def test_identify_concurrency_is_enforced_by_default() -> None:
    s = SessionStore(ServerConfig(guild_ids=()))
    identified(s, now=0.0)
    second = identified(s, now=1.0)
    assert second.payloads[-1] == {"op": INVALID_SESSION, "d": False, "s": None, "t": None}
    third = identified(s, now=6.0)  # protocol 21: 5 s later the bucket is free again
    assert third.dispatches() == [(1, "READY")]


def test_session_start_limit_is_enforced_by_default_and_can_be_turned_off() -> None:
    s = store(session_start_limit=3)
    for _ in range(3):
        assert identified(s).dispatches() == [(1, "READY")]
    fourth = identified(s)
    assert fourth.close_code == 4004 and fourth.dispatches() == []
    relaxed = store(session_start_limit=3, enforce_session_start_limit=False)
    for _ in range(5):
        assert identified(relaxed).dispatches() == [(1, "READY")]


def test_gateway_bot_remaining_matches_what_identify_allows() -> None:
    s = store(session_start_limit=1)
    identified(s)
    server = GatewayServer(s, now=0.0)
    reply = raw_head(
        server,
        f"GET /api/v10/gateway/bot HTTP/1.1\r\nAuthorization: Bot {DEFAULT_TOKEN}\r\n\r\n".encode(),
    )
    assert b'"remaining":0' in reply
    assert identified(s).close_code == 4004


def test_a_client_close_after_a_text_message_split_mid_frame_is_still_heard() -> None:
    client = FakeClient(store())
    data = client.ws.send(TextMessage(data='{"op": 1, "d": null}'))
    for i in range(len(data)):  # one byte at a time
        client.server.receive_data(data[i : i + 1], 0.0)
    client.pump()
    assert client.payloads[-1]["op"] == 11
    client.server.receive_data(client.ws.send(CloseConnection(4000)), 0.0)
    assert client.server.state is ConnectionState.CLOSED and client.server.closed_by == "client"
