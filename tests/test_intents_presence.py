"""``Intents`` flags and typed presence pieces, accepted wherever ints and dicts are.

The intents are Discord's list (developers/events/gateway.mdx, "List of
Intents"); PRIVILEGED and DEFAULT partition them. ``Status``, ``Activity`` and
``ActivityType`` go on the wire exactly as Discord's strings, dicts and ints.
"""

from __future__ import annotations

import json

import pytest

from discord_gateway import (
    Activity,
    ActivityType,
    ConfigurationError,
    Intents,
    InvalidCommand,
    Status,
)
from discord_gateway.adapters import ShardOptions
from discord_gateway.commands import identify_data, presence_data
from discord_gateway.intents import intent_names

from peer import client_frames, ready_link

# (name, bit) as Discord documents them.
DOCUMENTED = [
    ("GUILDS", 0),
    ("GUILD_MEMBERS", 1),
    ("GUILD_MODERATION", 2),
    ("GUILD_EXPRESSIONS", 3),
    ("GUILD_INTEGRATIONS", 4),
    ("GUILD_WEBHOOKS", 5),
    ("GUILD_INVITES", 6),
    ("GUILD_VOICE_STATES", 7),
    ("GUILD_PRESENCES", 8),
    ("GUILD_MESSAGES", 9),
    ("GUILD_MESSAGE_REACTIONS", 10),
    ("GUILD_MESSAGE_TYPING", 11),
    ("DIRECT_MESSAGES", 12),
    ("DIRECT_MESSAGE_REACTIONS", 13),
    ("DIRECT_MESSAGE_TYPING", 14),
    ("MESSAGE_CONTENT", 15),
    ("GUILD_SCHEDULED_EVENTS", 16),
    ("AUTO_MODERATION_CONFIGURATION", 20),
    ("AUTO_MODERATION_EXECUTION", 21),
    ("GUILD_MESSAGE_POLLS", 24),
    ("DIRECT_MESSAGE_POLLS", 25),
]


@pytest.mark.parametrize(("name", "bit"), DOCUMENTED)
def test_every_documented_intent_has_its_bit(name: str, bit: int) -> None:
    assert Intents[name] == 1 << bit


def test_privileged_and_default_partition_the_documented_intents() -> None:
    every = sum(1 << bit for _, bit in DOCUMENTED)
    privileged = Intents.GUILD_MEMBERS | Intents.GUILD_PRESENCES | Intents.MESSAGE_CONTENT
    assert privileged == Intents.PRIVILEGED
    assert Intents.DEFAULT & Intents.PRIVILEGED == 0
    assert Intents.DEFAULT | Intents.PRIVILEGED == every == Intents.ALL
    assert Intents.GUILDS | Intents.GUILD_MESSAGES == 513  # an int, as before


def test_intent_names_name_known_and_unknown_bits() -> None:
    assert intent_names(513) == ["GUILDS", "GUILD_MESSAGES"]
    assert intent_names(Intents.PRIVILEGED) == [
        "GUILD_MEMBERS",
        "GUILD_PRESENCES",
        "MESSAGE_CONTENT",
    ]
    assert intent_names(1 << 17 | 1) == ["GUILDS", "1 << 17"]


def test_intents_go_on_the_wire_as_a_plain_int() -> None:
    data = identify_data(token="t", intents=Intents.DEFAULT)
    assert type(data["intents"]) is int and data["intents"] == int(Intents.DEFAULT)
    assert json.loads(json.dumps(data))["intents"] == int(Intents.DEFAULT)


def test_a_bad_intents_message_names_the_bits() -> None:
    with pytest.raises(InvalidCommand) as info:
        identify_data(token="t", intents=Intents.GUILDS | 1 << 30 | 1 << 26)
    text = str(info.value)
    assert "(1 << 26, 1 << 30)" in text and "4013" in text and "Intents" in text
    with pytest.raises(ConfigurationError, match=r"1 << 26"):
        ShardOptions(token="t", intents=1 << 26)


def test_typed_presence_pieces_build_discords_payload() -> None:
    typed = presence_data(
        status=Status.DND,
        activities=[
            Activity("tests", ActivityType.COMPETING),
            Activity("live", ActivityType.STREAMING, url="https://twitch.tv/x"),
            Activity("Custom Status", ActivityType.CUSTOM, state="busy"),
        ],
    )
    raw = presence_data(
        status="dnd",
        activities=[
            {"name": "tests", "type": 5},
            {"name": "live", "type": 1, "url": "https://twitch.tv/x"},
            {"name": "Custom Status", "type": 4, "state": "busy"},
        ],
    )
    assert typed == raw
    assert json.dumps(typed) == json.dumps(raw)  # str "dnd" and int 5 on the wire
    assert type(typed["status"]) is str
    assert all(type(a["type"]) is int for a in typed["activities"])


def test_a_typed_activity_is_validated_like_a_dict() -> None:
    with pytest.raises(InvalidCommand, match="Twitch or YouTube"):
        presence_data(activities=[Activity("x", ActivityType.STREAMING, url="https://x.org")])


def test_the_core_and_identify_accept_typed_presence() -> None:
    link = ready_link()
    out = link.conn.update_presence(
        status=Status.IDLE, activities=[Activity("a", ActivityType.PLAYING)], now=0.0
    )
    ((_, payload),) = client_frames(out)
    assert json.loads(payload) == {
        "op": 3,
        "d": {
            "since": None,
            "activities": [{"name": "a", "type": 0}],
            "status": "idle",
            "afk": False,
        },
    }
    data = identify_data(
        token="t", intents=1, presence={"status": Status.INVISIBLE, "activities": [Activity("b")]}
    )
    assert data["presence"]["status"] == "invisible"
    assert data["presence"]["activities"] == [{"name": "b", "type": 0}]
