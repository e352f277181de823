"""Bad input gets a precise exception, never a crash deep in a dependency.

After a RemoteProtocolError the connection is closing with a resumable code.
"""

from __future__ import annotations

import zlib

import pytest

from discord_gateway import (
    CloseDiscordConnection,
    HeartbeatAck,
    PayloadTooLarge,
    Ready,
    RemoteProtocolError,
    State,
)

from peer import Link, client_frames


def ready_link(**kwargs: object) -> Link:
    link = Link(**kwargs)  # type: ignore[arg-type]
    link.hello()
    link.identify()
    link.ready()
    link.dispatch(2)
    link.events()
    return link


def assert_closing_resumably(link: Link, err: RemoteProtocolError) -> None:
    assert link.conn.state is State.CLOSING
    reply = link.peer.feed(err.data)
    assert link.peer.received[-1] == ("close", 4000)
    with pytest.raises(CloseDiscordConnection):
        link.conn.receive(reply)
    assert link.conn.state is State.RECONNECTING
    assert link.conn.should_resume
    assert link.conn.sequence == 2  # nothing was skipped


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ('{"op": 0, "s": 3', "malformed JSON"),
        ("[1, 2]", "not an object"),
        ('{"op": 0, "s": "3", "t": "X", "d": {}}', "sequence is not an integer"),
        ('{"op": 0, "s": 3, "d": {}}', "without an event name"),
        ('{"op": 10, "d": {"heartbeat_interval": -5}}', "heartbeat_interval"),
        ('{"op": 10, "d": {"heartbeat_interval": 0}}', "heartbeat_interval"),
        ('{"op": 10, "d": null}', "heartbeat_interval"),
        ('{"op": 10, "d": [41250]}', "heartbeat_interval"),
        ('{"op": 0, "s": 3, "t": "READY", "d": null}', "session_id"),
        ('{"op": 0, "s": 3, "t": "READY", "d": {"session_id": 1}}', "session_id"),
    ],
)
def test_bad_json_payloads(frame: str, match: str) -> None:
    link = ready_link()
    with pytest.raises(RemoteProtocolError, match=match) as info:
        link.conn.receive(link.peer.send(frame))
    assert_closing_resumably(link, info.value)


def test_replies_before_a_bad_payload_are_still_written() -> None:
    link = ready_link()
    data = link.peer.send({"op": 1, "d": None}) + link.peer.send('{"broken')
    with pytest.raises(RemoteProtocolError) as info:
        link.conn.receive(data)
    assert info.value.data is not None
    (text, _), (close, reason) = client_frames(info.value.data)  # and nothing else
    assert (text, close, int.from_bytes(reason[:2], "big")) == (0x1, 0x8, 4000)


@pytest.mark.parametrize("url", ["https://gateway.example", "wss://", "", 42])
def test_a_bad_resume_gateway_url_in_ready_is_ignored(url: object) -> None:
    # protocol 22: the session is fine; resuming will use the main URL.
    link = Link()
    link.hello()
    link.identify()
    link.server(
        {"op": 0, "s": 1, "t": "READY", "d": {"session_id": "abc", "resume_gateway_url": url}}
    )
    (ready,) = [e for e in link.events() if isinstance(e, Ready)]
    assert ready.resume_gateway_url is None
    assert link.conn.state is State.READY
    assert link.conn.resume_gateway_url is None
    assert link.conn.url == "wss://gateway.discord.gg/?v=10&encoding=json"


def test_an_ack_before_hello_is_harmless() -> None:
    link = Link(dispatch_handled=True)
    link.server({"op": 11})
    (ack,) = link.events()
    assert isinstance(ack, HeartbeatAck) and ack.latency is None
    assert link.conn.state is State.CONNECTING
    assert link.conn.latency is None


def test_bad_zlib_data() -> None:
    link = ready_link(compress="zlib-stream")
    with pytest.raises(RemoteProtocolError, match="corrupt zlib-stream") as info:
        link.conn.receive(link.peer.send(b"\x00garbage\x00\x00\xff\xff"))
    assert_closing_resumably(link, info.value)


def test_zlib_message_without_suffix_is_buffered_until_it_comes() -> None:
    # protocol 34, 58: a message may span frames; only the suffix ends it.
    link = ready_link(compress="zlib-stream")
    deflate = link.peer._deflate
    raw = b'{"op":0,"s":3,"t":"X","d":{}}'
    body = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert link.conn.receive(link.peer.send(body[:-4])) == []
    assert link.events() == []
    link.conn.receive(link.peer.send(body[-4:]))
    assert [e.seq for e in link.events()] == [3]


def test_compressed_message_without_suffix_cannot_grow_forever() -> None:
    link = ready_link(compress="zlib-stream", max_payload_size=4096)
    deflate = link.peer._deflate
    big = deflate.compress(b"x" * 10_000) + deflate.flush(zlib.Z_FULL_FLUSH)[:-4]
    with pytest.raises(PayloadTooLarge) as info:
        link.conn.receive(link.peer.send(big))
    assert link.conn.state is State.CLOSING
    assert info.value.data


@pytest.mark.parametrize("compress", [None, "zlib-stream"])
def test_payload_over_the_cap(compress: str | None) -> None:
    link = ready_link(compress=compress, max_payload_size=4096)
    with pytest.raises(PayloadTooLarge):
        link.server({"op": 0, "s": 3, "t": "X", "d": "y" * 5000})
    assert link.conn.state is State.CLOSING


def test_payload_compressed_binary_frame_over_the_cap() -> None:
    link = ready_link(max_payload_size=4096)
    with pytest.raises(PayloadTooLarge):
        link.conn.receive(link.peer.send(zlib.compress(b"[" + b"1," * 5000 + b"1]")))


def test_truncated_payload_compression() -> None:
    link = ready_link()
    with pytest.raises(RemoteProtocolError, match="truncated"):
        link.conn.receive(link.peer.send(zlib.compress(b'{"op":11}')[:-3]))


def test_binary_json_frame_that_is_not_zlib() -> None:
    link = ready_link()
    with pytest.raises(RemoteProtocolError, match="malformed JSON"):
        link.conn.receive(link.peer.send(b"\x83\x01\x02"))


def test_invalid_websocket_framing() -> None:
    link = ready_link()
    # A reserved opcode (0x3): wsproto reports a protocol error.
    with pytest.raises(RemoteProtocolError, match="invalid WebSocket frame") as info:
        link.conn.receive(b"\x83\x00")
    assert link.conn.state is State.CLOSING
    assert info.value.data


def test_garbage_while_closing_is_logged_not_raised() -> None:
    link = ready_link()
    link.conn.close(4000)
    assert link.conn.receive(link.peer.send('{"broken')) == []
    assert link.conn.state is State.CLOSING


def test_bad_http_upgrade_response() -> None:
    from discord_gateway import DiscordConnection

    conn = DiscordConnection("wss://g")
    conn.connect()
    with pytest.raises(RemoteProtocolError, match="upgrade"):
        conn.receive(b"NOT HTTP AT ALL\r\n\r\n")
    assert conn.state is State.RECONNECTING
