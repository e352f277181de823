"""The sans-I/O local gateway enforces Discord's rules (checklist D, F, H, K) in virtual time."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from discord_gateway.testing import (
    PRIVILEGED_INTENTS,
    ConnectionState,
    ServerConfig,
    SessionStore,
)
from tests.gateway_client import IDENTIFY, FakeClient

HELLO, DISPATCH, HEARTBEAT, INVALID_SESSION, ACK = 10, 0, 1, 9, 11


def store(**config: Any) -> SessionStore:
    # Sessions start back to back here: the identify concurrency limit is
    # opted out of (tests that check it opt back in).
    config = {
        "heartbeat_interval": 10.0,
        "heartbeat_grace": 2.0,
        "enforce_identify_concurrency": False,
        **config,
    }
    return SessionStore(ServerConfig(**config))


def identified(s: SessionStore, **identify_changes: Any) -> FakeClient:
    client = FakeClient(s)
    client.identify(**identify_changes)
    return client


# -- handshake, HELLO, IDENTIFY, READY --------------------------------------------


def test_hello_is_first_and_carries_the_interval_in_ms() -> None:
    client = FakeClient(store())
    assert client.accepted
    assert client.payloads == [{"op": HELLO, "d": client.payloads[0]["d"], "s": None, "t": None}]
    assert client.payloads[0]["d"]["heartbeat_interval"] == 10_000


def test_identify_gets_ready_as_seq_1_then_guild_creates() -> None:
    s = store(guild_ids=(1, 2))
    client = identified(s)
    assert client.dispatches() == [(1, "READY"), (2, "GUILD_CREATE"), (3, "GUILD_CREATE")]
    ready = client.ready()
    assert ready["session_id"] in s.sessions
    assert ready["resume_gateway_url"] == s.config.url
    assert ready["v"] == 10
    assert "shard" not in ready  # protocol 22: only when sent in IDENTIFY
    assert ready["guilds"] == [{"id": "1", "unavailable": True}, {"id": "2", "unavailable": True}]
    assert client.server.state is ConnectionState.CONNECTED


def test_ready_echoes_shard_and_holds_only_that_shards_guilds() -> None:
    guild_on_shard_1 = 1 << 22
    s = store(guild_ids=(0, guild_on_shard_1))
    client = identified(s, shard=[1, 2])
    assert client.ready()["shard"] == [1, 2]
    assert client.ready()["guilds"] == [{"id": str(guild_on_shard_1), "unavailable": True}]


def test_heartbeats_are_acked_even_before_identify() -> None:
    client = FakeClient(store())
    client.op(HEARTBEAT, None)  # protocol 18: heartbeating may start before identify
    assert client.ops() == [HELLO, ACK]
    assert client.close_code is None


def test_delayed_acks_leave_in_order_when_the_delay_shrinks() -> None:
    """Shrunk from the gateway machine: one ACK held 12 s, the next one 1 s.

    The second ACK was due first, but handle_timer only released from the head
    of the queue, so next_deadline() stayed in the past and every caller's
    timer loop spun (the machine's "timers never stop firing").
    """
    from discord_gateway.testing import ConnectionFaults

    client = FakeClient(store(), faults=ConnectionFaults(heartbeat_ack_delay=12.0))
    client.op(HEARTBEAT, None)
    client.server.faults = ConnectionFaults(heartbeat_ack_delay=1.0)
    client.op(HEARTBEAT, None, now=0.5)
    assert client.server.next_deadline() == 12.0  # not 1.5: the first ACK is ahead of it
    client.timer(1.5)
    assert client.ops() == [HELLO]
    client.timer(12.0)
    assert client.ops() == [HELLO, ACK, ACK]
    assert client.server.next_deadline() != 12.0


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"op": 3, "d": {"status": "online"}}, 4003),  # protocol 18: payload before identify
        ({"op": 99, "d": None}, 4001),  # unknown opcode
        ({"op": 11, "d": None}, 4001),  # a server-only opcode (protocol 12)
        ({"op": 2, "d": "x"}, 4002),
        ({"op": 2, "d": {**IDENTIFY, "token": "nope"}}, 4004),  # protocol H
        ({"op": 2, "d": {**IDENTIFY, "intents": 1 << 30}}, 4013),  # protocol 19
        ({"op": 2, "d": {**IDENTIFY, "intents": -1}}, 4013),
        ({"op": 2, "d": {k: v for k, v in IDENTIFY.items() if k != "intents"}}, 4013),
        ({"op": 2, "d": {**IDENTIFY, "shard": [2, 2]}}, 4010),  # protocol 45
        ({"op": 2, "d": {**IDENTIFY, "shard": [-1, 2]}}, 4010),
        ({"op": 2, "d": {**IDENTIFY, "shard": [0]}}, 4010),
        ({"op": 2, "d": {**IDENTIFY, "shard": "0,1"}}, 4010),
        ({"op": 2, "d": {**IDENTIFY, "large_threshold": 251}}, 4002),  # protocol 17
        ({"op": 2, "d": {**IDENTIFY, "large_threshold": 49}}, 4002),
        ({"op": 2, "d": {**IDENTIFY, "properties": {"os": "linux"}}}, 4002),
        ({"op": 6, "d": {"token": "nope", "session_id": "x", "seq": 1}}, 4004),
    ],
)
def test_rule_breaks_close_with_discords_code(payload: dict[str, Any], code: int) -> None:
    client = FakeClient(store())
    client.send(payload)
    assert client.close_code == code
    assert client.server.state is ConnectionState.CLOSED  # the client answered the close
    assert client.server.close_code == code and client.server.closed_by == "server"


def test_identify_accepts_maximal_valid_fields() -> None:
    client = FakeClient(store())
    client.identify(shard=[0, 1], large_threshold=250, compress=False, presence={"status": "idle"})
    assert client.dispatches()[0][1] == "READY"


def test_disallowed_privileged_intents_close_4014() -> None:
    client = FakeClient(store(allowed_intents=0))
    client.identify(intents=1 << 15)  # MESSAGE_CONTENT (protocol 19)
    assert client.close_code == 4014


def test_allowed_privileged_intents_are_accepted() -> None:
    client = FakeClient(store(allowed_intents=PRIVILEGED_INTENTS))
    client.identify(intents=PRIVILEGED_INTENTS)
    assert client.close_code is None and client.dispatches()[0][1] == "READY"


def test_too_many_guilds_for_one_shard_closes_4011() -> None:
    client = FakeClient(store(guild_ids=(1, 2, 3), max_guilds_per_shard=2))
    client.identify()
    assert client.close_code == 4011


def test_second_identify_closes_4005() -> None:
    client = identified(store())
    client.identify()
    assert client.close_code == 4005


def test_resume_after_identify_closes_4005() -> None:
    client = identified(store())
    client.resume(client.ready()["session_id"], 1)
    assert client.close_code == 4005


@pytest.mark.parametrize("query", ["v=8&encoding=json", "v=11", "v=abc"])
def test_unsupported_version_closes_4012(query: str) -> None:
    client = FakeClient(store(), query=query)
    assert client.accepted and client.close_code == 4012  # protocol 3
    assert HELLO not in client.ops()


def test_missing_version_defaults_to_10() -> None:
    client = FakeClient(store(), query="encoding=json")
    client.identify()
    assert client.ready()["v"] == 10


@pytest.mark.parametrize("query", ["v=10&encoding=xml", "v=10&compress=gzip"])
def test_unknown_encoding_or_compression_rejects_the_upgrade(query: str) -> None:
    client = FakeClient(store(), query=query)
    assert client.rejected is not None and client.rejected.status_code == 400
    assert client.server.state is ConnectionState.CLOSED


# -- payload limits -----------------------------------------------------------------


def test_undecodable_payload_closes_4002() -> None:
    client = FakeClient(store())
    client.send_raw('{"op": 1, "d": ')
    assert client.close_code == 4002


def test_payload_over_4096_bytes_closes_4002_and_4096_is_fine() -> None:
    client = FakeClient(store())
    base = len('{"op":1,"d":null,"x":""}')
    client.send_raw('{"op":1,"d":null,"x":"' + "é" * ((4096 - base) // 2) + '"}')
    assert client.close_code is None  # 4096 encoded bytes exactly: allowed (protocol 42)
    client = FakeClient(store())
    client.send_raw('{"op":1,"d":null,"x":"' + "é" * ((4096 - base) // 2 + 1) + '"}')
    assert client.close_code == 4002  # counted in bytes, not characters


def test_etf_atom_keys_close_4002() -> None:
    import erlpack

    client = FakeClient(store(), query="v=10&encoding=etf", encoding="etf")
    client.send_raw(erlpack.pack({erlpack.Atom("op"): 1, erlpack.Atom("d"): None}))
    assert client.close_code == 4002  # protocol 39


def test_etf_with_string_keys_is_understood_and_answered_with_atom_keys() -> None:
    import erlpack

    client = FakeClient(store(), query="v=10&encoding=etf", encoding="etf")
    client.send_raw(erlpack.pack({"op": 1, "d": None}))
    assert client.ops() == [HELLO, ACK]
    assert client.binary_messages == 2
    client.send({"op": 2, "d": IDENTIFY})
    assert client.dispatches()[0] == (1, "READY")


def test_121st_command_in_60_seconds_closes_4008() -> None:
    client = FakeClient(store(heartbeat_interval=1000.0))
    for i in range(120):
        client.op(HEARTBEAT, None, now=i * 0.4)
    assert client.close_code is None
    client.op(HEARTBEAT, None, now=59.0)
    assert client.close_code == 4008  # protocol 41


def test_rate_limit_window_slides() -> None:
    client = FakeClient(store(heartbeat_interval=1000.0))
    for i in range(120):
        client.op(HEARTBEAT, None, now=i * 0.4)
    client.op(HEARTBEAT, None, now=60.5)  # the first command left the window
    assert client.close_code is None


# -- heartbeat timeout -------------------------------------------------------------------


def test_no_heartbeat_within_interval_plus_grace_closes_the_session() -> None:
    s = store()
    client = identified(s)
    client.op(HEARTBEAT, 1, now=5.0)
    assert client.server.next_deadline() == 5.0 + 10.0 + 2.0
    client.timer(16.9)
    assert client.close_code is None
    client.timer(17.0)
    assert client.close_code == 4009
    assert s.sessions == {}  # 4009 means "start a new session" (protocol H)


# -- sessions, resume, replay ----------------------------------------------------------------


def test_resume_replays_every_dispatch_after_seq_in_order_then_resumed() -> None:
    s = store(guild_ids=())
    first = identified(s)
    session_id = first.ready()["session_id"]
    s.dispatch("MESSAGE_CREATE", {"n": 1})  # seq 2, delivered
    first.pump()
    assert first.dispatches()[-1] == (2, "MESSAGE_CREATE")
    first.close(4000)  # keeps the session (protocol 30)
    s.dispatch("MESSAGE_CREATE", {"n": 2})  # seq 3, missed
    s.dispatch("MESSAGE_CREATE", {"n": 3})  # seq 4, missed
    second = FakeClient(s, now=1.0)
    second.resume(session_id, 2)
    assert second.dispatches() == [(3, "MESSAGE_CREATE"), (4, "MESSAGE_CREATE"), (5, "RESUMED")]
    assert [p["d"].get("n") for p in second.payloads[1:3]] == [2, 3]
    s.dispatch("MESSAGE_CREATE", {"n": 4})
    second.pump()
    assert second.dispatches()[-1] == (6, "MESSAGE_CREATE")


@pytest.mark.parametrize("seq", [5, -1])
def test_resume_with_an_impossible_seq_gets_op9_false(seq: int) -> None:
    s = store(guild_ids=())
    first = identified(s)
    first.close(4000)
    second = FakeClient(s)
    second.resume(first.ready()["session_id"], seq)
    assert second.payloads[-1] == {"op": INVALID_SESSION, "d": False, "s": None, "t": None}
    assert second.close_code is None
    second.identify()  # allowed on the same connection after op 9 (protocol 56)
    assert second.dispatches()[-1] == (1, "READY")


def test_resume_of_a_trimmed_log_fails() -> None:
    s = store(guild_ids=(), replay_limit=2)
    first = identified(s)
    for n in range(3):
        s.dispatch("X", {"n": n})  # seqs 2..4; only 3 and 4 are kept
    first.drop()
    second = FakeClient(s)
    second.resume(first.ready()["session_id"], 1)
    assert second.last(INVALID_SESSION)["d"] is False
    third = FakeClient(s)
    third.resume(first.ready()["session_id"], 2)
    assert third.last(INVALID_SESSION)["d"] is False  # the failed resume destroyed it


def test_resume_of_an_unknown_session_gets_op9_false() -> None:
    client = FakeClient(store())
    client.resume("nope", 1)
    assert client.last(INVALID_SESSION)["d"] is False


@pytest.mark.parametrize("code", [1000, 1001])
def test_client_close_1000_or_1001_destroys_the_session(code: int) -> None:
    s = store()
    first = identified(s)
    first.close(code)
    assert first.close_code == code  # the server echoed the close
    assert s.sessions == {}
    second = FakeClient(s)
    second.resume(first.ready()["session_id"], 1)
    assert second.last(INVALID_SESSION)["d"] is False


@pytest.mark.parametrize("how", ["close 4000", "close 3000", "transport lost"])
def test_other_disconnects_keep_the_session_for_session_ttl(how: str) -> None:
    s = store(guild_ids=(), session_ttl=30.0)
    first = identified(s)
    if how == "transport lost":
        first.drop()
    else:
        first.close(int(how.split()[1]))
    session = s.sessions[first.ready()["session_id"]]
    assert session.connection is None and session.expires_at == 30.0
    second = FakeClient(s, now=29.0)
    second.resume(session.session_id, 1)
    assert second.dispatches() == [(2, "RESUMED")]


def test_a_detached_session_expires_after_session_ttl() -> None:
    s = store(guild_ids=(), session_ttl=30.0)
    first = identified(s)
    first.drop()
    second = FakeClient(s, now=30.0)
    second.resume(first.ready()["session_id"], 1)
    assert second.last(INVALID_SESSION)["d"] is False


def test_resuming_a_session_still_attached_elsewhere_resets_the_old_socket() -> None:
    s = store(guild_ids=())
    first = identified(s)
    second = FakeClient(s)
    second.resume(first.ready()["session_id"], 1)
    assert second.dispatches() == [(2, "RESUMED")]
    assert first.server.aborted and first.server.session is None
    s.dispatch("X", {})
    second.pump()
    assert second.dispatches()[-1] == (3, "X")


def test_dispatches_are_routed_by_shard() -> None:
    s = store(guild_ids=())
    shard0 = identified(s, shard=[0, 2])
    shard1 = identified(s, shard=[1, 2])
    s.dispatch("MESSAGE_CREATE", {"guild_id": str(1 << 22)})  # shard 1
    s.dispatch("DM", {"channel_id": "1"})  # no guild_id: shard 0 only (protocol 44)
    for client in (shard0, shard1):
        client.pump()
    assert shard0.dispatches()[1:] == [(2, "DM")]
    assert shard1.dispatches()[1:] == [(2, "MESSAGE_CREATE")]


def test_dispatch_to_one_session_by_id() -> None:
    s = store(guild_ids=())
    a, b = identified(s), identified(s)
    assert s.dispatch("X", {}, session_id=b.ready()["session_id"]) == [2]
    a.pump()
    b.pump()
    assert a.dispatches() == [(1, "READY")] and b.dispatches()[-1] == (2, "X")


def test_request_guild_members_gets_an_empty_chunk_with_the_nonce() -> None:
    client = identified(store(guild_ids=()))
    client.op(8, {"guild_id": "5", "query": "", "limit": 0, "nonce": "abc"})
    chunk = client.payloads[-1]
    assert chunk["t"] == "GUILD_MEMBERS_CHUNK" and chunk["d"]["nonce"] == "abc"
    assert client.server.received[-1].op == 8


def test_received_log_records_every_payload_with_its_time() -> None:
    client = FakeClient(store())
    client.op(HEARTBEAT, None, now=1.5)
    client.identify(now=2.0)
    assert [(r.op, r.at) for r in client.server.received] == [(1, 1.5), (2, 2.0)]


# -- compression ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 3])
def test_zlib_stream_uses_one_context_and_may_split_messages(split: int) -> None:
    from discord_gateway.testing import ConnectionFaults

    client = FakeClient(
        store(),
        query="v=10&encoding=json&compress=zlib-stream",
        compress="zlib-stream",
        faults=ConnectionFaults(split_messages=split),
    )
    client.identify()
    assert client.dispatches()[:1] == [(1, "READY")]
    if split == 1:
        assert client.binary_messages == len(client.payloads)
    else:  # protocol 34, 58: a message may need several WebSocket messages
        assert client.binary_messages > len(client.payloads)


def test_zstd_stream_round_trips() -> None:
    client = FakeClient(
        store(), query="v=10&encoding=json&compress=zstd-stream", compress="zstd-stream"
    )
    client.identify()
    assert client.ops()[0] == HELLO and client.dispatches()[0] == (1, "READY")
    assert client.binary_messages == len(client.payloads)


def test_payload_compression_sends_large_payloads_as_zlib_binary() -> None:
    client = FakeClient(store(guild_ids=()))
    client.identify(compress=True)
    assert client.dispatches() == [(1, "READY")]
    assert client.binary_messages == 1  # READY, large enough to be compressed (protocol 36)
    client.op(HEARTBEAT, 1)
    assert client.binary_messages == 1  # a small ACK stays text


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        ServerConfig(heartbeat_interval=0)
    with pytest.raises(ValueError):
        ServerConfig(tokens=frozenset())
    assert dataclasses.replace(ServerConfig(), session_ttl=1.0).session_ttl == 1.0


# -- input chopping and determinism --------------------------------------------------------


def test_client_bytes_fed_one_at_a_time_give_the_same_result() -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import Request, TextMessage

    from discord_gateway.codec import json_dumps
    from discord_gateway.testing import GatewayServer

    whole, chopped = store(guild_ids=()), store(guild_ids=())
    ws = WSConnection(ConnectionType.CLIENT)
    a, b = GatewayServer(whole, now=0.0), GatewayServer(chopped, now=0.0)
    data = ws.send(Request(host="x", target="/?v=10&encoding=json"))
    a.receive_data(data, 0.0)
    accept = a.data_to_send()
    ws.receive_data(b"".join(accept))
    list(ws.events())
    messages = ws.send(TextMessage(json_dumps({"op": 1, "d": None}).decode()))
    messages += ws.send(TextMessage(json_dumps({"op": 2, "d": IDENTIFY}).decode()))
    a.receive_data(messages, 0.0)
    data += messages
    for i in range(len(data)):
        b.receive_data(data[i : i + 1], 0.0)
    assert [r.op for r in b.received] == [1, 2]
    assert b"".join(accept + a.data_to_send()) == b"".join(b.data_to_send())


def test_same_seed_same_session_ids_and_splits() -> None:
    from discord_gateway.testing import ConnectionFaults

    def run(seed: int) -> tuple[str, list[int]]:
        s = SessionStore(ServerConfig(guild_ids=()), seed=seed)
        client = FakeClient(s, faults=ConnectionFaults(split_writes=True))
        client.identify()
        s.dispatch("X", {"payload": "y" * 50})
        return client.ready()["session_id"], [len(c) for c in client.server.data_to_send()]

    assert run(3) == run(3)
    assert run(3)[0] != run(4)[0]


def test_an_upgrade_without_its_headers_gets_http_400_not_a_reset() -> None:
    from discord_gateway.testing import GatewayServer

    server = GatewayServer(store(), now=0.0)
    server.receive_data(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 0.0)
    assert not server.aborted and server.state is ConnectionState.CLOSED
    assert b"".join(server.data_to_send()).startswith(b"HTTP/1.1 400 ")


# -- smaller paths ------------------------------------------------------------------------------


def test_an_unanswered_close_frame_is_followed_by_a_reset() -> None:
    server = FakeClient(store()).server  # never pumped again: a client that is gone
    server.close(4000, "bye")
    assert server.state is ConnectionState.CLOSING and server.next_deadline() == 5.0
    server.handle_timer(4.9)
    assert not server.aborted
    server.handle_timer(5.0)
    assert server.aborted and server.closed_by == "server" and server.close_code == 4000


def test_handle_timer_expires_detached_sessions() -> None:
    s = store(session_ttl=1.0)
    first = identified(s)
    first.drop()
    other = FakeClient(s)
    other.timer(0.5)
    assert len(s.sessions) == 1
    other.timer(1.0)
    assert s.sessions == {}


def test_store_invalidate_makes_the_next_resume_fail() -> None:
    s = store()
    first = identified(s)
    first.drop()
    s.invalidate(first.ready()["session_id"])
    s.invalidate("unknown")  # harmless
    second = FakeClient(s)
    second.resume(first.ready()["session_id"], 1)
    assert second.last(INVALID_SESSION)["d"] is False


def test_tokens_may_carry_the_bot_prefix() -> None:
    from tests.gateway_client import DEFAULT_TOKEN

    s = store(guild_ids=())
    first = identified(s, token="Bot " + DEFAULT_TOKEN)
    first.drop()
    second = FakeClient(s)
    second.op(
        6, {"token": "Bot " + DEFAULT_TOKEN, "session_id": first.ready()["session_id"], "seq": 1}
    )
    assert second.dispatches() == [(2, "RESUMED")]


@pytest.mark.parametrize(
    "d", [{"token": "x", "session_id": 1, "seq": 1}, {"session_id": "s", "seq": "1"}]
)
def test_malformed_resume(d: dict[str, Any]) -> None:
    from tests.gateway_client import DEFAULT_TOKEN

    client = FakeClient(store())
    client.op(6, {**d, "token": DEFAULT_TOKEN})
    assert client.close_code == 4002


def test_identify_with_a_non_bool_compress_closes_4002() -> None:
    client = FakeClient(store())
    client.identify(compress="yes")
    assert client.close_code == 4002


def test_server_dispatch_without_a_session_is_refused() -> None:
    client = FakeClient(store())
    assert client.server.dispatch("X", {}) is None
    assert repr(client.server) == "<GatewayServer #1 awaiting_identify>"


def test_http_oddities() -> None:
    from discord_gateway.testing import GatewayServer

    s = store()
    post = GatewayServer(s, now=0.0)
    post.receive_data(b"POST /api/v10/gateway HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert b"".join(post.data_to_send()).startswith(b"HTTP/1.1 405 ")
    huge = GatewayServer(s, now=0.0)
    huge.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000, 0.0)
    assert b"".join(huge.data_to_send()).startswith(b"HTTP/1.1 431 ")
    split = GatewayServer(s, now=0.0)
    split.receive_data(b"GET /api/v9/gateway HTTP/1.1\r\n", 0.0)
    assert split.data_to_send() == []
    split.receive_data(b"Host: x\r\n\r\n", 0.0)
    assert b'{"url":"ws://127.0.0.1/"}' in b"".join(split.data_to_send())


def test_ping_is_answered_and_a_bad_frame_closes_1002() -> None:
    from wsproto.events import Ping

    client = FakeClient(store())
    client.server.receive_data(client.ws.send(Ping(b"hi")), 0.0)
    assert client.server.data_to_send()  # the pong
    client.server.receive_data(b"\x8f\x80\x00\x00\x00\x00", 0.0)  # reserved opcode 0xF
    assert client.server.close_code == 1002  # RFC 6455 7.4.1, not a Discord code


def test_corrupt_zstd_breaks_the_clients_decompressor() -> None:
    from discord_gateway.errors import RemoteProtocolError
    from discord_gateway.testing import CorruptCompressed

    client = FakeClient(
        store(), query="v=10&encoding=json&compress=zstd-stream", compress="zstd-stream"
    )
    client.server.inject(CorruptCompressed())
    with pytest.raises(RemoteProtocolError):
        client.pump()


def test_faults_are_validated() -> None:
    from discord_gateway.testing import ConnectionFaults

    for bad in ({"drop_heartbeat_acks": 2.0}, {"heartbeat_ack_delay": -1.0}, {"split_messages": 0}):
        with pytest.raises(ValueError):
            ConnectionFaults(**bad)  # type: ignore[arg-type]


def test_fragmented_frames_are_reassembled_by_the_client() -> None:
    from discord_gateway.testing import ConnectionFaults

    for query, compress in (("v=10", None), ("v=10&compress=zlib-stream", "zlib-stream")):
        client = FakeClient(
            store(), query=query, compress=compress, faults=ConnectionFaults(fragment_frames=4)
        )
        client.identify()
        assert client.dispatches()[0] == (1, "READY")
        assert client.unfinished_frames >= 3 * len(client.payloads) > 0


def test_identify_concurrency_is_enforced_when_asked() -> None:
    s = store(enforce_identify_concurrency=True, max_concurrency=2, guild_ids=())
    first = identified(s, shard=[0, 4])
    second = identified(s, shard=[1, 4])  # another bucket: fine
    third = identified(s, shard=[2, 4])  # bucket 0 again within 5 s
    assert first.dispatches() == second.dispatches() == [(1, "READY")]
    assert third.last(INVALID_SESSION)["d"] is False and third.dispatches() == []
    fourth = FakeClient(s, now=5.0)
    fourth.identify(shard=[2, 4])
    assert fourth.dispatches() == [(1, "READY")]


def test_at_time_faults_fire_from_the_timer() -> None:
    from discord_gateway.testing import AtTime, ConnectionFaults, SendReconnect

    client = FakeClient(
        store(), now=100.0, faults=ConnectionFaults(script=((AtTime(3.0), SendReconnect()),))
    )
    assert client.server.next_deadline() == 103.0
    client.timer(102.9)
    assert 7 not in client.ops()
    client.timer(103.0)
    assert client.ops()[-1] == 7
    assert client.server.next_deadline() == 100.0 + 10.0 + 2.0  # only the heartbeat timeout


def test_payloads_in_flight_after_our_close_frame_are_ignored() -> None:
    from wsproto.events import TextMessage

    from discord_gateway.codec import json_dumps
    from discord_gateway.testing import Close

    s = store()
    client = FakeClient(s)
    client.server.inject(Close(4000))
    # The client identifies before it has read our close frame:
    identify = json_dumps({"op": 2, "d": IDENTIFY}).decode()
    client.server.receive_data(client.ws.send(TextMessage(data=identify)), 0.0)
    assert client.server.session is None and s.sessions == {}


# -- deviant-server profiles (discord_gateway.testing.profiles) -------------------------------


def deviant(*names: str, **config: Any) -> SessionStore:
    from discord_gateway.testing import deviations_profile

    config = {
        "heartbeat_interval": 10.0,
        "heartbeat_grace": 2.0,
        "guild_ids": (),
        "enforce_identify_concurrency": False,
        **config,
    }
    return SessionStore(ServerConfig(**config), deviations=deviations_profile(names))


def resume_after(s: SessionStore, first: FakeClient, seq: int | None) -> FakeClient:
    first.drop()
    second = FakeClient(s, now=1.0)
    second.resume(first.ready()["session_id"], seq)
    return second


def test_profiles_name_one_preset_per_deviation_and_combine() -> None:
    from discord_gateway.testing import PROFILES, Deviations, deviations_profile

    flags = [f.name for f in dataclasses.fields(Deviations)]
    assert PROFILES["discord"] == Deviations() and Deviations().names == ()
    for flag in flags:
        assert PROFILES[flag.replace("_", "-")].names == (flag,)
    assert PROFILES["all"].names == tuple(flags)
    both = deviations_profile(["seq-from-zero", "inclusive-replay"])
    assert both.names == ("seq_from_zero", "inclusive_replay")
    assert both == PROFILES["seq-from-zero"] | PROFILES["inclusive-replay"]
    with pytest.raises(ValueError, match="unknown server profile 'nope'; choose from all, "):
        deviations_profile("nope")
    # A connection may be given its own; by default it takes the store's.
    s = deviant("seq-from-zero")
    assert FakeClient(s).server.deviations == PROFILES["seq-from-zero"]
    assert FakeClient(s, deviations=Deviations()).server.deviations == Deviations()


def test_seq_from_zero_sends_a_dispatch_before_ready_both_numbered_0() -> None:
    s = deviant("seq-from-zero", guild_ids=(1,))
    client = identified(s)
    assert client.dispatches() == [(0, "SESSIONS_REPLACE"), (0, "READY"), (1, "GUILD_CREATE")]
    assert s.dispatch("MESSAGE_CREATE", {"n": 1}) == [2]
    client.pump()
    second = resume_after(s, client, 0)  # the client only had READY: everything after it
    assert second.dispatches() == [(1, "GUILD_CREATE"), (2, "MESSAGE_CREATE"), (3, "RESUMED")]


def test_resumed_reuses_seq_carries_the_last_seq_and_is_never_replayed() -> None:
    s = deviant("resumed-reuses-seq")
    first = identified(s)
    second = resume_after(s, first, 1)  # a quick resume: nothing missed
    assert second.dispatches() == [(1, "RESUMED")]  # the client's own last s
    s.dispatch("MESSAGE_CREATE", {"n": 1})  # 2
    second.pump()
    second.drop()
    s.dispatch("MESSAGE_CREATE", {"n": 2})  # 3, missed
    third = FakeClient(s, now=2.0)
    third.resume(first.ready()["session_id"], 1)
    # The replay holds no RESUMED; this one is numbered like the last event.
    assert third.dispatches() == [(2, "MESSAGE_CREATE"), (3, "MESSAGE_CREATE"), (3, "RESUMED")]
    assert [p["t"] for p in s.sessions[first.ready()["session_id"]].log] == ["READY"] + [
        "MESSAGE_CREATE"
    ] * 2


def test_refuse_resume_answers_every_resume_with_op9_false_and_stays_open() -> None:
    s = deviant("refuse-resume")
    first = identified(s)
    session_id = first.ready()["session_id"]
    second = resume_after(s, first, 1)  # a perfectly good resume
    assert second.payloads[-1] == {"op": INVALID_SESSION, "d": False, "s": None, "t": None}
    assert second.close_code is None and second.server.state is ConnectionState.AWAITING_IDENTIFY
    assert session_id not in s.sessions  # the session is gone
    second.identify()  # the same connection takes IDENTIFY
    assert second.dispatches()[-1] == (1, "READY")


def test_zstd_frame_per_message_makes_each_message_a_whole_frame() -> None:
    import zstandard

    query = "v=10&encoding=json&compress=zstd-stream"
    for name, whole_frames in (("zstd-frame-per-message", True), ("discord", False)):
        client = FakeClient(deviant(name), query=query, decode=False)
        client.identify()
        client.op(HEARTBEAT, 1)
        assert len(client.messages) == 3  # HELLO, READY, ACK
        messages = [raw for raw in client.messages if isinstance(raw, bytes)]
        starts = [raw.startswith(b"\x28\xb5\x2f\xfd") for raw in messages]  # a frame header
        if whole_frames:  # a fresh one-shot decoder reads each message alone
            assert starts == [True] * 3
            ops = [json.loads(zstandard.ZstdDecompressor().decompress(m))["op"] for m in messages]
        else:  # protocol 35: one frame for the connection, flushed per message
            assert starts == [True, False, False]
            stream = zstandard.ZstdDecompressor().decompressobj()
            ops = [json.loads(stream.decompress(m))["op"] for m in messages]
        assert ops == [HELLO, DISPATCH, ACK]


@pytest.mark.parametrize("op", [2, 6])
def test_bad_token_closes_4000_instead_of_4004(op: int) -> None:
    for name, code in (("bad-token-closes-4000", 4000), ("discord", 4004)):
        client = FakeClient(deviant(name))
        if op == 2:
            client.identify(token="wrong")
        else:
            client.op(6, {"token": "wrong", "session_id": "x", "seq": 1})
        assert (client.close_code, client.close_reason) == (code, "Authentication failed.")


def test_require_user_agent_closes_4002_right_after_the_upgrade() -> None:
    s = deviant("require-user-agent")
    bare = FakeClient(s)
    assert bare.accepted and bare.payloads == []  # no HELLO
    assert (bare.close_code, bare.close_reason) == (4002, "A User-Agent header is required.")
    agent = "DiscordBot (https://pypi.org/project/discord-gateway/, 1.0)"
    polite = FakeClient(s, headers=[("User-Agent", agent)])
    assert polite.ops() == [HELLO] and polite.close_code is None
    assert polite.server.headers["user-agent"] == agent
    assert FakeClient(deviant("discord")).ops() == [HELLO]  # Discord does not insist


def test_bare_control_payloads_omit_s_and_t_but_dispatches_keep_them() -> None:
    from discord_gateway.testing import SendHeartbeatRequest, SendReconnect

    client = FakeClient(deviant("bare-control-payloads"))
    client.op(HEARTBEAT, None)
    client.identify()
    client.server.inject(SendHeartbeatRequest())
    client.server.inject(SendReconnect())
    client.pump()
    assert [p for p in client.payloads if p["op"] != DISPATCH] == [
        {"op": HELLO, "d": client.payloads[0]["d"]},
        {"op": ACK, "d": None},
        {"op": HEARTBEAT, "d": None},
        {"op": 7, "d": None},
    ]
    assert set(client.payloads[2]) == {"op", "d", "s", "t"} and client.dispatches() == [
        (1, "READY")
    ]
    # op 9 too
    other = FakeClient(deviant("bare-control-payloads"))
    other.resume("unknown", 1)
    assert other.payloads[-1] == {"op": INVALID_SESSION, "d": False}


def test_no_resume_gateway_url_leaves_it_out_of_ready() -> None:
    assert "resume_gateway_url" not in identified(deviant("no-resume-gateway-url")).ready()
    assert "resume_gateway_url" in identified(deviant("discord")).ready()


def test_inclusive_replay_sends_the_clients_last_event_again_first() -> None:
    s = deviant("inclusive-replay")
    first = identified(s)
    session_id = first.ready()["session_id"]
    s.dispatch("MESSAGE_CREATE", {"n": 1})  # 2
    s.dispatch("MESSAGE_CREATE", {"n": 2})  # 3
    first.pump()
    second = resume_after(s, first, 2)  # had 2, missed 3
    assert second.dispatches() == [(2, "MESSAGE_CREATE"), (3, "MESSAGE_CREATE"), (4, "RESUMED")]
    assert second.payloads[1]["d"] == {"n": 1}  # really the event it had
    # READY and RESUMED are never sent again as the overlap.
    second.drop()
    third = FakeClient(s, now=2.0)
    third.resume(session_id, 4)  # its last event was RESUMED
    assert third.dispatches() == [(5, "RESUMED")]
    fresh = identified(s)
    fourth = resume_after(s, fresh, 1)  # its last event was READY
    assert fourth.dispatches() == [(2, "RESUMED")]


# -- the package's modules --------------------------------------------------------

_TESTING_MODULES = sorted(
    path.stem
    for path in (Path(__file__).resolve().parent.parent / "discord_gateway" / "testing").glob(
        "*.py"
    )
    if path.stem != "__init__"
)


@pytest.mark.parametrize("module", _TESTING_MODULES)
def test_every_module_of_the_local_gateway_can_be_imported_first(module: str) -> None:
    # Invariant: no import cycle inside discord_gateway.testing. The package's
    # __init__ imports its modules in one order, which hides a cycle (sessions ->
    # server -> sessions worked only because server came first), so the fresh
    # interpreter stands in an empty package and imports ``module`` first.
    code = (
        "import importlib, sys, types, discord_gateway\n"
        "package = types.ModuleType('discord_gateway.testing')\n"
        "package.__path__ = [discord_gateway.__path__[0] + '/testing']\n"
        "sys.modules[package.__name__] = package\n"
        f"importlib.import_module('discord_gateway.testing.{module}')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    plain = [sys.executable, "-c", f"import discord_gateway.testing.{module}"]
    assert subprocess.run(plain, capture_output=True).returncode == 0


def test_the_configuration_keeps_its_import_paths() -> None:
    from discord_gateway import testing
    from discord_gateway.testing import _config, server, sessions

    for name in ("ServerConfig", "ConnectionState", "DEFAULT_TOKEN", "PRIVILEGED_INTENTS"):
        assert getattr(server, name) is getattr(_config, name) is getattr(testing, name), name
    for name in ("Session", "SessionStore"):
        assert getattr(server, name) is getattr(sessions, name) is getattr(testing, name), name
