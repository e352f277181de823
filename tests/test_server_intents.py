"""The local gateway sends each session only what its intents cover, as Discord does.

Discord's "List of Intents" and "Message Content Intent" (developers/events/
gateway.mdx): an event goes only to sessions that identified with its intent
(the guild or the DM one where Discord splits them), and without MESSAGE_CONTENT
a message's content fields are empty except in DMs, the bot's own messages and
messages that mention the bot. ``ServerConfig(filter_by_intents=False)`` sends
everything to everyone.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from discord_gateway import Dispatch, Intents
from discord_gateway.__main__ import main
from discord_gateway.adapters.threading import Shard
from discord_gateway.testing import ServerConfig, SessionStore, World
from discord_gateway.testing.intents import EVENT_INTENTS, receives, redact
from discord_gateway.testing.profiles import PRE_READY_EVENT
from discord_gateway.testing.pytest_plugin import GatewayFixture
from tests.gateway_client import FakeClient

GUILD = 961969618123483218
GUILD_ID = str(GUILD)
BOT_ID = "1896186316901649619"  # the default config's bot user


def store(**config: Any) -> SessionStore:
    return SessionStore(
        ServerConfig(
            **{"heartbeat_interval": 10.0, "enforce_identify_concurrency": False, **config}
        )
    )


def session(s: SessionStore, intents: int, **identify: Any) -> FakeClient:
    client = FakeClient(s)
    client.identify(intents=int(intents), **identify)
    return client


def received(client: FakeClient, name: str) -> list[dict[str, Any]]:
    client.pump()
    return [p["d"] for p in client.payloads if p.get("t") == name]


def message(content: str = "hello", **fields: Any) -> dict[str, Any]:
    return {
        "id": "10",
        "channel_id": "20",
        "author": {"id": "30", "username": "someone"},
        "content": content,
        "embeds": [{"title": "an embed"}],
        "attachments": [{"id": "40", "filename": "a.png"}],
        "components": [{"type": 1, "components": []}],
        "poll": {"question": {"text": "?"}},
        "mentions": [],
        **fields,
    }


# -- which sessions get an event ---------------------------------------------------


def test_a_session_with_guilds_only_gets_no_message_create() -> None:
    s = store(guild_ids=())
    guilds = session(s, Intents.GUILDS)
    messages = session(s, Intents.GUILDS | Intents.GUILD_MESSAGES)
    assert s.dispatch("MESSAGE_CREATE", message(guild_id=GUILD_ID)) == [2]  # one seq: one session
    assert received(guilds, "MESSAGE_CREATE") == []
    assert len(received(messages, "MESSAGE_CREATE")) == 1


def test_a_filtered_event_takes_no_seq_and_is_not_replayed() -> None:
    s = store(guild_ids=())
    client = session(s, Intents.GUILDS)
    s.dispatch("TYPING_START", {"channel_id": "20", "guild_id": GUILD_ID})
    s.dispatch("CHANNEL_CREATE", {"id": "21", "guild_id": GUILD_ID})
    client.pump()
    assert client.dispatches() == [(1, "READY"), (2, "CHANNEL_CREATE")]  # no gap in seqs
    client.close(4000)  # the session stays for a resume
    s.dispatch("TYPING_START", {"channel_id": "20", "guild_id": GUILD_ID})
    again = FakeClient(s)
    again.resume(client.ready()["session_id"], 1)
    assert again.dispatches() == [(2, "CHANNEL_CREATE"), (3, "RESUMED")]
    assert all(p["t"] != "TYPING_START" for p in s.sessions[client.ready()["session_id"]].log)


@pytest.mark.parametrize(
    ("name", "guild_intent", "dm_intent"),
    [
        ("MESSAGE_CREATE", Intents.GUILD_MESSAGES, Intents.DIRECT_MESSAGES),
        ("MESSAGE_DELETE", Intents.GUILD_MESSAGES, Intents.DIRECT_MESSAGES),
        ("TYPING_START", Intents.GUILD_MESSAGE_TYPING, Intents.DIRECT_MESSAGE_TYPING),
        ("MESSAGE_REACTION_ADD", Intents.GUILD_MESSAGE_REACTIONS, Intents.DIRECT_MESSAGE_REACTIONS),
        ("MESSAGE_POLL_VOTE_ADD", Intents.GUILD_MESSAGE_POLLS, Intents.DIRECT_MESSAGE_POLLS),
        ("CHANNEL_PINS_UPDATE", Intents.GUILDS, Intents.DIRECT_MESSAGES),
    ],
)
def test_guild_and_dm_events_need_their_own_intent(
    name: str, guild_intent: Intents, dm_intent: Intents
) -> None:
    s = store(guild_ids=())
    in_guilds, in_dms = session(s, guild_intent), session(s, dm_intent)
    s.dispatch(name, {"channel_id": "20", "guild_id": GUILD_ID, "where": "guild"})
    s.dispatch(name, {"channel_id": "50", "where": "dm"})  # no guild_id: a DM
    assert [d["where"] for d in received(in_guilds, name)] == ["guild"]
    assert [d["where"] for d in received(in_dms, name)] == ["dm"]


def test_events_without_an_intent_and_unknown_names_reach_every_session() -> None:
    s = store(guild_ids=())
    nothing = session(s, 0)
    for name in ("INTERACTION_CREATE", "USER_UPDATE", "VOICE_SERVER_UPDATE", "MADE_UP_EVENT"):
        s.dispatch(name, {"guild_id": GUILD_ID})
    nothing.pump()
    assert [t for _, t in nothing.dispatches()] == [
        "READY",
        "INTERACTION_CREATE",
        "USER_UPDATE",
        "VOICE_SERVER_UPDATE",
        "MADE_UP_EVENT",
    ]


def test_guild_creates_after_ready_need_guilds() -> None:
    s = store(guild_ids=(GUILD,))
    assert [t for _, t in session(s, Intents.GUILD_MESSAGES).dispatches()] == ["READY"]
    with_guilds = session(s, Intents.GUILDS).dispatches()
    assert with_guilds == [(1, "READY"), (2, "GUILD_CREATE")]


def test_a_dispatch_pushed_to_one_session_respects_its_intents() -> None:
    s = store(guild_ids=())
    client = session(s, Intents.GUILDS)
    assert client.server.dispatch("PRESENCE_UPDATE", {"guild_id": GUILD_ID}) is None
    assert client.server.dispatch("GUILD_UPDATE", {"id": GUILD_ID}) == 2
    session_id = client.ready()["session_id"]
    assert s.dispatch("PRESENCE_UPDATE", {"guild_id": GUILD_ID}, session_id=session_id) == []


def test_guild_member_update_about_the_bot_needs_no_guild_members() -> None:
    # Discord's caveat: sent for the current user whatever GUILD_MEMBERS says.
    s = store(guild_ids=())
    client = session(s, Intents.GUILDS)
    s.dispatch("GUILD_MEMBER_UPDATE", {"guild_id": GUILD_ID, "user": {"id": "30"}})
    s.dispatch("GUILD_MEMBER_UPDATE", {"guild_id": GUILD_ID, "user": {"id": BOT_ID}})
    assert [d["user"]["id"] for d in received(client, "GUILD_MEMBER_UPDATE")] == [BOT_ID]


def test_thread_members_update_without_guild_members_only_when_the_bot_came_or_went() -> None:
    s = store(guild_ids=())
    plain = session(s, Intents.GUILDS)
    members = session(s, Intents.GUILDS | Intents.GUILD_MEMBERS)
    base = {"id": "60", "guild_id": GUILD_ID, "member_count": 2}
    s.dispatch("THREAD_MEMBERS_UPDATE", {**base, "added_members": [{"user_id": "30"}]})
    s.dispatch("THREAD_MEMBERS_UPDATE", {**base, "added_members": [{"user_id": BOT_ID}]})
    s.dispatch("THREAD_MEMBERS_UPDATE", {**base, "removed_member_ids": [BOT_ID]})
    assert len(received(plain, "THREAD_MEMBERS_UPDATE")) == 2
    assert len(received(members, "THREAD_MEMBERS_UPDATE")) == 3


def test_the_option_off_delivers_everything_whole() -> None:
    s = store(guild_ids=(GUILD,), filter_by_intents=False)
    client = session(s, 0)
    s.dispatch("MESSAGE_CREATE", message(guild_id=GUILD_ID))
    s.dispatch("PRESENCE_UPDATE", {"guild_id": GUILD_ID})
    client.pump()
    assert [t for _, t in client.dispatches()] == [
        "READY",
        "GUILD_CREATE",
        "MESSAGE_CREATE",
        "PRESENCE_UPDATE",
    ]
    assert received(client, "MESSAGE_CREATE") == [message(guild_id=GUILD_ID)]


# -- MESSAGE_CONTENT ------------------------------------------------------------------

MESSAGES = Intents.GUILD_MESSAGES | Intents.DIRECT_MESSAGES


def test_guild_message_content_is_empty_without_message_content() -> None:
    s = store(guild_ids=())
    without = session(s, MESSAGES)
    with_content = session(s, MESSAGES | Intents.MESSAGE_CONTENT)
    sent = message(guild_id=GUILD_ID)
    s.dispatch("MESSAGE_CREATE", sent)
    s.dispatch("MESSAGE_UPDATE", {"id": "10", "guild_id": GUILD_ID, "content": "edited"})
    [seen] = received(without, "MESSAGE_CREATE")
    emptied = {"content": "", "embeds": [], "attachments": [], "components": []}
    assert seen == {**{k: v for k, v in sent.items() if k != "poll"}, **emptied}
    assert received(without, "MESSAGE_UPDATE") == [
        {"id": "10", "guild_id": GUILD_ID, "content": ""}
    ]
    assert received(with_content, "MESSAGE_CREATE") == [sent]
    assert received(with_content, "MESSAGE_UPDATE")[0]["content"] == "edited"
    assert sent["content"] == "hello" and sent["embeds"]  # the pushed data is not changed


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="in-a-dm"),
        pytest.param({"guild_id": GUILD_ID, "mentions": [{"id": BOT_ID}]}, id="mentions-the-bot"),
        pytest.param({"guild_id": GUILD_ID, "author": {"id": BOT_ID}}, id="the-bots-own"),
    ],
)
def test_content_is_kept_without_message_content_in_discords_exceptions(
    fields: dict[str, Any],
) -> None:
    s = store(guild_ids=())
    client = session(s, MESSAGES)
    sent = message(**fields)
    s.dispatch("MESSAGE_CREATE", sent)
    assert received(client, "MESSAGE_CREATE") == [sent]


def test_the_message_a_reply_answers_loses_its_content_too() -> None:
    s = store(guild_ids=())
    client = session(s, MESSAGES)
    s.dispatch("MESSAGE_CREATE", message(guild_id=GUILD_ID, referenced_message=message("old")))
    [seen] = received(client, "MESSAGE_CREATE")
    assert seen["referenced_message"]["content"] == ""


def test_auto_moderation_execution_loses_its_content_without_message_content() -> None:
    s = store(guild_ids=())
    without = session(s, Intents.AUTO_MODERATION_EXECUTION)
    with_content = session(s, Intents.AUTO_MODERATION_EXECUTION | Intents.MESSAGE_CONTENT)
    action = {"guild_id": GUILD_ID, "content": "bad word", "matched_content": "bad"}
    s.dispatch("AUTO_MODERATION_ACTION_EXECUTION", action)
    [seen] = received(without, "AUTO_MODERATION_ACTION_EXECUTION")
    assert (seen["content"], seen["matched_content"]) == ("", None)
    assert received(with_content, "AUTO_MODERATION_ACTION_EXECUTION") == [action]


def test_world_messages_keep_their_content_for_a_bot_with_message_content() -> None:
    world = World({"id": BOT_ID, "username": "LocalBot", "bot": True}, (GUILD,))
    s = SessionStore(ServerConfig(enforce_identify_concurrency=False), world=world)
    plain = session(s, Intents.GUILDS | Intents.GUILD_MESSAGES)
    content = session(s, Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT)
    s.dispatch(*world.message("hi there"))
    assert received(plain, "MESSAGE_CREATE")[0]["content"] == ""
    assert received(content, "MESSAGE_CREATE")[0]["content"] == "hi there"


# -- the table -----------------------------------------------------------------------


def test_every_intent_but_message_content_names_events() -> None:
    # Discord's list: MESSAGE_CONTENT is the one intent that is no event's.
    named = 0
    for required in EVENT_INTENTS.values():
        for intent in required if isinstance(required, tuple) else (required,):
            named |= intent
    assert named == Intents.ALL & ~Intents.MESSAGE_CONTENT


def test_receives_and_redact_on_odd_data() -> None:
    # A test may push any JSON as d: a list or null is "not in a guild".
    assert receives("MESSAGE_CREATE", None, Intents.DIRECT_MESSAGES, BOT_ID)
    assert not receives("MESSAGE_CREATE", [], Intents.GUILD_MESSAGES, BOT_ID)
    assert receives("GUILD_MEMBER_UPDATE", None, Intents.GUILD_MEMBERS, BOT_ID)
    assert not receives("GUILD_MEMBER_UPDATE", [1], Intents.GUILDS, BOT_ID)
    assert receives(PRE_READY_EVENT, [], 0, BOT_ID)
    assert redact("MESSAGE_CREATE", "text", 0, BOT_ID) == "text"
    assert redact("GUILD_UPDATE", {"content": "x"}, 0, BOT_ID) == {"content": "x"}


# -- the control API ------------------------------------------------------------------


def test_ctl_pushes_respect_intents(
    discord_gateway: GatewayFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = discord_gateway.url

    def ctl(*args: str) -> Any:
        assert main(["ctl", "--url", url, *args]) == 0
        return json.loads(capsys.readouterr().out)

    with Shard(discord_gateway.token, intents=Intents.GUILDS, url=url) as shard:
        assert main(["ctl", "--url", url, "wait-ready", "--timeout", "5"]) == 0
        capsys.readouterr()
        assert ctl("message", "nobody hears this")["seqs"] == []  # no GUILD_MESSAGES
        assert ctl("dispatch", "MESSAGE_CREATE", '{"guild_id": "1"}')["seqs"] == []
        assert len(ctl("dispatch", "GUILD_UPDATE", '{"id": "1"}')["seqs"]) == 1
        names = []
        for event in shard:
            if isinstance(event, Dispatch):
                names.append(event.name)
                if event.name == "GUILD_UPDATE":
                    break
        assert "MESSAGE_CREATE" not in names
