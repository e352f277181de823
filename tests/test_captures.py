"""Real gateway captures (tests/fixtures/, see SOURCES.md), fed whole and byte by byte."""

from __future__ import annotations

import json

import pytest

from discord_gateway import (
    DiscordConnection,
    Dispatch,
    Hello,
    Ready,
    RemoteProtocolError,
    Resumed,
    State,
)

from peer import Link, fixture_bytes, fixture_json

SPLITS = [None, 1]


@pytest.mark.parametrize("split", SPLITS)
def test_zlib_stream_hello_capture(split: int | None) -> None:
    link = Link(compress="zlib-stream", split=split)
    link.deliver(link.peer.send(fixture_bytes("hello.zlib-stream.bin")))
    (hello,) = link.events()
    assert isinstance(hello, Hello)
    assert hello.payload == fixture_json("hello.zlib-stream.expected.json")
    assert hello.heartbeat_interval == 41.25


@pytest.mark.parametrize("split", SPLITS)
def test_zlib_stream_shared_context_and_a_message_split_across_frames(split: int | None) -> None:
    # HELLO, READY, GUILD_CREATE through ONE deflate context; GUILD_CREATE is
    # split across two WebSocket messages (protocol 34, 58).
    link = Link(compress="zlib-stream", split=split)
    link.deliver(link.peer.send(fixture_bytes("constructed/zlib_stream_seq_0.bin")))
    link.identify()
    link.deliver(link.peer.send(fixture_bytes("constructed/zlib_stream_seq_1.bin")))
    link.deliver(link.peer.send(fixture_bytes("constructed/zlib_stream_seq_2_part_a.bin")))
    assert [type(e) for e in link.events()] == [Hello, Ready]
    link.deliver(link.peer.send(fixture_bytes("constructed/zlib_stream_seq_2_part_b.bin")))
    (guild,) = link.events()
    assert isinstance(guild, Dispatch)
    assert guild.payload == fixture_json("guild_create.violentcat.v9.json")
    assert link.conn.sequence == 2
    whole = fixture_bytes("constructed/zlib_stream_seq_2.bin")
    parts = fixture_bytes("constructed/zlib_stream_seq_2_part_a.bin") + fixture_bytes(
        "constructed/zlib_stream_seq_2_part_b.bin"
    )
    assert whole == parts


def test_each_connection_gets_a_fresh_zlib_context() -> None:
    # protocol 33, 58: frame 1 of a stream can't be inflated by a new context.
    link = Link(compress="zlib-stream")
    with pytest.raises(RemoteProtocolError, match="zlib"):
        link.conn.receive(link.peer.send(fixture_bytes("constructed/zlib_stream_seq_1.bin")))


def test_payload_compression_inflates_whole_zlib_payloads() -> None:
    # 0.4.0 only inflated when the payload ended with the zlib-stream suffix,
    # which per-packet zlib.compress never does (protocol 36).
    link = Link(compress=True)
    link.hello()
    link.client(link.conn.identify(token="t", intents=1))
    assert link.peer.received[-1]["d"]["compress"] is True
    link.deliver(link.peer.send(fixture_bytes("constructed/payload_compression_ready.zlib.bin")))
    link.dispatch(2)  # text frames stay plain JSON
    events = link.events()
    assert [type(e) for e in events] == [Hello, Ready, Dispatch]
    assert events[1].payload == fixture_json("ready_sharded.freya022.v10.json")


def test_identify_compress_false_keeps_transport_decompression() -> None:
    # 0.4.0's identify(compress=False) overwrote self.compress and stopped
    # inflating zlib-stream frames.
    link = Link(compress="zlib-stream")
    link.hello()
    link.client(link.conn.identify(token="t", intents=1, compress=False))
    assert "compress" not in link.peer.received[-1]["d"]
    link.ready()
    assert [type(e) for e in link.events()][-1] is Ready
    assert link.conn.compress == "zlib-stream"


def test_payload_and_transport_compression_cannot_be_combined() -> None:
    from discord_gateway import InvalidCommand

    link = Link(compress="zlib-stream")
    link.hello()
    with pytest.raises(InvalidCommand, match="be combined with transport compression"):
        link.conn.identify(token="t", intents=1, compress=True)


@pytest.mark.parametrize("split", SPLITS)
def test_json_captures_through_a_session(split: int | None) -> None:
    link = Link(split=split, dispatch_handled=True)
    link.server(json.dumps(fixture_json("hello.twilight.json")))
    link.identify()
    link.server(json.dumps(fixture_json("ready_sharded.freya022.v10.json")))
    ready = link.events()[-1]
    assert isinstance(ready, Ready)
    assert ready.resume_gateway_url == "wss://gateway-us-east1-c.discord.gg"
    assert ready.data["shard"] == [0, 1]
    for name in (
        "heartbeat_ack_minimal.twilight.json",
        "heartbeat_ack.freya022.v10.json",
        "heartbeat_request_op1.twilight.json",
        "constructed/guild_members_chunk_not_found_int_quirk.json",
        "docs_examples/message_create_CONSTRUCTED_from_docs_example_message.json",
        "constructed/rate_limited.json",
    ):
        link.server(json.dumps(fixture_json(name)))
    names = [e.name for e in link.events() if isinstance(e, Dispatch)]
    assert names == ["GUILD_MEMBERS_CHUNK", "MESSAGE_CREATE", "RATE_LIMITED"]
    assert link.conn.sequence == 7
    link.server(json.dumps(fixture_json("reconnect_op7.twilight.json")))
    assert link.conn.state is State.CLOSING


def test_resumed_capture() -> None:
    conn = DiscordConnection("wss://g", session_id="s", sequence=37000)
    link = Link(conn)
    link.server(json.dumps(fixture_json("hello.freya022.v10.json")))
    link.client(conn.resume("t"))
    link.server(json.dumps(fixture_json("resumed.twilight.json")))
    assert isinstance(link.events()[-1], Resumed)
    assert conn.sequence == 37448
    assert conn.state is State.READY


def test_invalid_session_capture() -> None:
    link = Link()
    link.hello()
    link.identify()
    link.ready()
    link.server(json.dumps(fixture_json("invalid_session_true.twilight.json")))
    assert link.conn.state is State.CLOSING
    assert link.conn.should_resume
