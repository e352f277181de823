"""The command methods of DiscordConnection (0.4.0 names), and ETF end to end."""

from __future__ import annotations

import pytest

from discord_gateway import DiscordConnection, Dispatch, InvalidCommand, Ready, _etf
from discord_gateway.codec import MAX_SEND_SIZE

from peer import Link, fixture_json, ready_link


def test_0_4_0_command_methods_send_the_documented_payloads() -> None:
    link = ready_link()
    conn = link.conn
    link.client(
        conn.update_presence(
            activities=[{"name": "Save the Oxford Comma", "type": 0}],
            status="online",
            since=91879201,
        )
    )
    assert link.peer.received[-1] == fixture_json("docs_examples/update_presence_op3.json")
    link.client(conn.update_voice_state(41771983423143937, 127121515262115840))
    assert link.peer.received[-1] == fixture_json("docs_examples/update_voice_state_op4.json")
    link.client(conn.request_guild_members(41771983444115456, query="", limit=0))
    assert link.peer.received[-1] == fixture_json("docs_examples/request_guild_members.json")
    link.client(conn.request_soundboard_sounds([613425648685547541, "81384788765712384"]))
    assert link.peer.received[-1] == fixture_json(
        "docs_examples/request_soundboard_sounds_op31.json"
    )
    link.client(conn.request_channel_info("613425648685547541"))
    assert link.peer.received[-1] == fixture_json("docs_examples/request_channel_info_op43.json")


def test_command_methods_pass_every_argument_on() -> None:
    link = ready_link()
    conn = link.conn
    link.client(conn.update_presence())
    assert link.peer.received[-1]["d"]["status"] == "online"
    link.client(conn.update_presence(status="idle", afk=True, since=5))
    assert link.peer.received[-1]["d"] == {
        "since": 5,
        "activities": [],
        "status": "idle",
        "afk": True,
    }
    link.client(conn.update_voice_state(1, None, mute=True, deafen=True))
    assert link.peer.received[-1]["d"] == {
        "guild_id": "1",
        "channel_id": None,
        "self_mute": True,
        "self_deaf": True,
    }
    link.client(conn.request_guild_members(1, presences=True, users=[2, "3"], nonce="n"))
    assert link.peer.received[-1]["d"] == {
        "guild_id": "1",
        "presences": True,
        "user_ids": ["2", "3"],
        "nonce": "n",
    }
    link.client(conn.request_channel_info(1, fields=["status"]))
    assert link.peer.received[-1]["d"] == {"guild_id": "1", "fields": ["status"]}


def test_identify_sends_the_initial_presence() -> None:
    link = Link()
    link.hello()
    presence = {"since": None, "activities": [], "status": "dnd", "afk": False}
    link.client(link.conn.identify(token="t", intents=1, presence=presence))
    assert link.peer.received[-1]["d"]["presence"] == presence


def test_a_command_of_exactly_the_size_limit_is_sent() -> None:
    # protocol 42: Discord closes with 4002 only *over* 4096 bytes.
    link = ready_link()
    largest = b""
    for n in range(MAX_SEND_SIZE - 64, MAX_SEND_SIZE):
        try:
            largest = link.conn.send_command(3, {"x": "y" * n})
        except InvalidCommand:
            break
    link.peer.ws.receive_data(largest)
    (message,) = list(link.peer.ws.events())
    assert len(message.data.encode()) == MAX_SEND_SIZE


def test_invalid_commands_are_refused_before_anything_is_sent() -> None:
    link = ready_link()
    sent = len(link.peer.received)
    with pytest.raises(InvalidCommand, match="status"):
        link.conn.update_presence(status="busy")
    with pytest.raises(InvalidCommand, match="32"):
        link.conn.request_guild_members(1, query="a", limit=1, nonce="x" * 33)
    with pytest.raises(InvalidCommand):
        link.conn.request_guild_members(1, users=list(range(1, 102)))
    assert len(link.peer.received) == sent


def test_deprecated_dollar_properties_are_translated() -> None:
    link = Link()
    link.hello()
    with pytest.warns(DeprecationWarning):
        data = link.conn.identify(
            token="t", intents=1, properties={"$os": "linux", "$browser": "x", "$device": "x"}
        )
    link.client(data)
    assert link.peer.received[-1]["d"]["properties"] == {
        "os": "linux",
        "browser": "x",
        "device": "x",
    }


@pytest.mark.parametrize("stringify", [None, False, True])
def test_etf_session(stringify: bool | None) -> None:
    if stringify is None:  # the default: Discord's integers, as sent
        conn = DiscordConnection("wss://g", encoding="etf")
    else:
        conn = DiscordConnection("wss://g", encoding="etf", etf_snowflakes_as_str=stringify)
    link = Link(conn)
    assert link.peer.request is not None and "encoding=etf" in link.peer.request.target
    link.deliver(link.peer.send(_etf.dumps({"op": 10, "d": {"heartbeat_interval": 41250}})))
    identify = conn.identify(token="t", intents=1)
    link.peer.ws.receive_data(identify)
    (frame,) = list(link.peer.ws.events())
    assert isinstance(frame.data, (bytes, bytearray))  # ETF goes as binary frames
    sent = _etf.loads(bytes(frame.data))
    assert sent["op"] == 2 and sent["d"]["token"] == "t"
    ready = {"op": 0, "s": 1, "t": "READY", "d": {"session_id": "abc", "v": 10}}
    link.deliver(link.peer.send(_etf.dumps(ready)))
    guild = {
        "op": 0,
        "s": 2,
        "t": "GUILD_DELETE",
        "d": {"id": 41771983444115456, "unavailable": True},
    }
    link.deliver(link.peer.send(_etf.dumps(guild)))
    events = link.events()
    assert isinstance(events[1], Ready)
    last = events[2]
    assert isinstance(last, Dispatch)
    expected_id: int | str = "41771983444115456" if stringify else 41771983444115456
    assert last.data == {"id": expected_id, "unavailable": True}
