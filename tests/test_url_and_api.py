"""Connection URL, constructor validation and the 0.4.0-compatible surface."""

from __future__ import annotations

import logging
import random

import pytest

import discord_gateway
from discord_gateway import (
    ConfigurationError,
    DiscordConnection,
    Hello,
    LocalProtocolError,
    State,
    should_reconnect,
)

from peer import Link, Peer


def target_of(conn: DiscordConnection) -> str:
    peer = Peer()
    peer.accept(conn.connect())
    assert peer.request is not None
    return peer.request.target


def test_default_version_is_10_not_0_4_0s_hard_coded_9() -> None:
    conn = DiscordConnection("wss://gateway.discord.gg", encoding="json")
    assert target_of(conn) == "/?v=10&encoding=json"


def test_version_is_configurable_and_read_from_the_url() -> None:
    assert (
        target_of(DiscordConnection("wss://gateway.discord.gg", version=9)) == "/?v=9&encoding=json"
    )
    assert target_of(DiscordConnection("wss://gateway.discord.gg/?v=9")) == "/?v=9&encoding=json"


@pytest.mark.parametrize("version", [0, 5, 11, -1])
def test_unserved_versions_are_refused(version: int) -> None:
    with pytest.raises(ConfigurationError, match="version"):
        DiscordConnection("wss://gateway.discord.gg", version=version)


def test_existing_query_is_merged_not_glued() -> None:
    conn = DiscordConnection(
        "wss://gateway.discord.gg/?foo=bar&encoding=etf", compress="zlib-stream"
    )
    # 0.4.0 produced "/?foo=bar&encoding=etfv=9&encoding=json...".
    assert target_of(conn) == "/?foo=bar&v=10&encoding=json&compress=zlib-stream"


def test_our_parameters_replace_the_urls_and_the_rest_is_kept_verbatim() -> None:
    # A compress= in the URL would ask for compression we cannot inflate.
    conn = DiscordConnection("wss://gateway.discord.gg/?compress=zlib-stream&flag=&x=1")
    assert target_of(conn) == "/?flag=&x=1&v=10&encoding=json"


@pytest.mark.parametrize("compress", [None, False])
def test_no_compression(compress: bool | None) -> None:
    conn = DiscordConnection("wss://gateway.discord.gg", compress=compress)
    assert conn.transport_compression is None
    assert conn.payload_compression is False
    assert target_of(conn) == "/?v=10&encoding=json"


def test_transport_compression_is_not_payload_compression() -> None:
    conn = DiscordConnection("wss://gateway.discord.gg", compress="zlib-stream")
    assert conn.payload_compression is False
    assert conn.compress == "zlib-stream"


def test_the_host_header_leaves_credentials_out() -> None:
    peer = Peer()
    peer.accept(DiscordConnection("wss://user:secret@gateway.example:8443").connect())
    assert peer.request is not None and peer.request.host == "gateway.example:8443"


def test_versions_before_9_are_served_but_deprecated(caplog: pytest.LogCaptureFixture) -> None:
    # protocol 3: 10 and 9 are available, 6-8 deprecated.
    with caplog.at_level(logging.WARNING, logger="discord_gateway"):
        DiscordConnection("wss://gateway.discord.gg", version=10)
        DiscordConnection("wss://gateway.discord.gg", version=9)
        assert "deprecated" not in caplog.text
        DiscordConnection("wss://gateway.discord.gg", version=8)
    assert "version 8 is deprecated" in caplog.text


def test_constructor_attributes_and_an_injected_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.my_bot.gateway")
    conn = DiscordConnection("gateway.discord.gg", logger=logger)
    assert conn.uri == "gateway.discord.gg"
    assert conn.fatal_close_code is None
    assert conn.heartbeat_interval is None
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        Link(conn).hello()
    assert caplog.records
    assert {record.name for record in caplog.records} == {logger.name}


def test_bare_host_as_in_the_0_4_0_readme() -> None:
    conn = DiscordConnection("gateway.discord.gg", encoding="json")
    assert conn.destination == ("gateway.discord.gg", 443)
    assert conn.secure
    assert conn.url == "wss://gateway.discord.gg/?v=10&encoding=json"
    peer = Peer()
    peer.accept(conn.connect())
    assert peer.request is not None and peer.request.host == "gateway.discord.gg"


def test_local_ws_url_with_port() -> None:
    conn = DiscordConnection("ws://127.0.0.1:8765/gateway")
    assert conn.destination == ("127.0.0.1", 8765)
    assert not conn.secure
    peer = Peer()
    peer.accept(conn.connect())
    assert peer.request is not None
    assert peer.request.host == "127.0.0.1:8765"
    assert peer.request.target == "/gateway?v=10&encoding=json"


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("https://gateway.discord.gg", "wss://"),
        ("wss://", "host"),
        ("", "non-empty"),
        ("wss://gateway.discord.gg:99999", "parse"),
    ],
)
def test_bad_urls_get_a_clear_error(uri: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DiscordConnection(uri)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoding": "xml"}, "encoding"),
        ({"compress": "gzip"}, "compression"),
        ({"max_payload_size": 10}, "max_payload_size"),
        ({"session_id": "abc"}, "sequence"),
        ({"resume_gateway_url": "ftp://x"}, "resume_gateway_url"),
        ({"hello_timeout": 0}, "above 0"),
        ({"close_timeout": 0}, "above 0"),
        ({"close_timeout": -1.0}, "above 0"),
    ],
)
def test_bad_arguments_get_a_clear_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DiscordConnection("wss://gateway.discord.gg", **kwargs)  # type: ignore[arg-type]


def test_short_timeouts_are_fine() -> None:
    conn = DiscordConnection("wss://gateway.discord.gg", hello_timeout=0.5, close_timeout=0.5)
    conn.connect(now=10.0)
    assert conn.next_deadline() == 10.5


def test_configuration_error_is_a_value_error_like_0_4_0s() -> None:
    with pytest.raises(ValueError):
        DiscordConnection("wss://gateway.discord.gg", encoding="xml")


def test_session_given_to_the_constructor_resumes() -> None:
    conn = DiscordConnection(
        "wss://gateway.discord.gg",
        session_id="s1",
        sequence=42,
        resume_gateway_url="wss://gateway-us-east1-c.discord.gg",
    )
    assert conn.should_resume
    assert conn.destination == ("gateway-us-east1-c.discord.gg", 443)
    link = Link(conn)
    link.hello()
    link.client(conn.resume("tok"))
    assert link.peer.received[-1] == {"op": 6, "d": {"token": "tok", "session_id": "s1", "seq": 42}}


def test_the_0_4_0_names_are_all_there() -> None:
    conn = DiscordConnection("wss://gateway.discord.gg", encoding="json")
    for name in (
        "destination",
        "connect",
        "receive",
        "events",
        "heartbeat",
        "heartbeat_interval",
        "identify",
        "resume",
        "should_resume",
        "close",
        "closing",
        "reconnect",
        "should_reconnect",
        "query_params",
        "acknowledged",
        "latency",
        "sequence",
        "session_id",
    ):
        assert hasattr(conn, name), name
    for name in ("CloseDiscordConnection", "ConnectionRejected", "should_reconnect", "Opcode"):
        assert name in discord_gateway.__all__
    assert discord_gateway.CloseCode.GENERIC_ERROR == 4000  # 0.4.0 alias


def test_events_keep_the_payload_and_support_0_4_0_dict_access() -> None:
    link = Link()
    link.hello(45000)
    (hello,) = link.events()
    assert isinstance(hello, Hello)
    assert hello.heartbeat_interval == 45.0
    assert hello["op"] == 10
    assert hello["d"] == {"heartbeat_interval": 45000}
    assert hello.get("t") is None
    assert hello.payload == {"op": 10, "d": {"heartbeat_interval": 45000}}
    with pytest.raises(AttributeError):
        hello.heartbeat_interval = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (None, True),
        (1000, True),
        (4000, True),
        (4004, False),
        (4009, True),
        (4010, False),
        (4011, False),
        (4012, False),
        (4013, False),
        (4014, False),
        (4999, True),
        (3000, True),
    ],
)
def test_should_reconnect_function(code: int | None, expected: bool) -> None:
    # 0.4.0's range check `4000 > code > 5000` was always false; the table decides now.
    assert should_reconnect(code) is expected


def test_repr_never_shows_the_token() -> None:
    link = Link()
    link.hello()
    link.client(link.conn.identify(token="SECRET.TOKEN", intents=1))
    assert "SECRET" not in repr(link.conn)


def test_state_property_and_injected_rng_are_deterministic() -> None:
    a = DiscordConnection("wss://g", rng=random.Random(7))
    b = DiscordConnection("wss://g", rng=random.Random(7))
    la, lb = Link(a), Link(b)
    la.hello()
    lb.hello()
    assert a.state is State.HELLO
    assert a.next_deadline() == b.next_deadline()


def test_should_resume_setter() -> None:
    conn = DiscordConnection("wss://g", session_id="s", sequence=3)
    conn.should_resume = False
    assert conn.session_id is None and not conn.should_resume
    with pytest.raises(LocalProtocolError):
        conn.should_resume = True
