"""The world behind the local gateway: complete, Discord-shaped guilds, members and messages."""

from __future__ import annotations

import base64
from typing import Any

from discord_gateway.testing import DEFAULT_TOKEN, ServerConfig, SessionStore
from discord_gateway.testing.world import World, bot_token, snowflake
from tests.gateway_client import FakeClient

REQUEST_GUILD_MEMBERS = 8
BOT = {"id": "1896186316901649619", "username": "LocalBot", "bot": True}

#: What hikari reads from every GUILD_CREATE (a KeyError without any of them).
HIKARI_GUILD_KEYS = {
    "afk_channel_id",
    "default_message_notifications",
    "application_id",
    "system_channel_id",
    "rules_channel_id",
    "public_updates_channel_id",
    "icon",
    "features",
    "splash",
    "owner_id",
    "afk_timeout",
    "verification_level",
    "explicit_content_filter",
    "mfa_level",
    "system_channel_flags",
    "vanity_url_code",
    "description",
    "banner",
    "premium_tier",
    "preferred_locale",
    "nsfw_level",
    "presences",
    "stickers",
    "voice_states",
}


def identified(store: SessionStore, **changes: Any) -> FakeClient:
    client = FakeClient(store)
    client.identify(**changes)
    return client


def guild_creates(client: FakeClient) -> list[dict[str, Any]]:
    return [p["d"] for p in client.payloads if p.get("t") == "GUILD_CREATE"]


def test_a_guild_has_everyone_an_owner_the_bot_and_a_text_channel() -> None:
    client = identified(SessionStore(ServerConfig(guild_ids=(961969618123483218,))))
    [guild] = guild_creates(client)
    assert guild.keys() >= HIKARI_GUILD_KEYS
    assert "guild_id" not in guild  # Discord's GUILD_CREATE has none
    everyone = [r for r in guild["roles"] if r["name"] == "@everyone"]
    assert [r["id"] for r in everyone] == [guild["id"]]  # @everyone's id is the guild's
    members = {m["user"]["id"]: m for m in guild["members"]}
    assert BOT["id"] in members and guild["owner_id"] in members
    assert guild["member_count"] == len(guild["members"]) == 2
    [text] = [c for c in guild["channels"] if c["type"] == 0]
    assert guild["system_channel_id"] == text["id"]
    ids = [guild["id"], guild["owner_id"], text["id"], *(r["id"] for r in guild["roles"])]
    assert all(isinstance(i, str) and i.isdigit() for i in ids)  # snowflakes are strings


def test_member_chunk_has_the_members_and_a_string_guild_id() -> None:
    client = identified(SessionStore(ServerConfig(guild_ids=(5,))))
    client.op(REQUEST_GUILD_MEMBERS, {"guild_id": 5, "query": "", "limit": 0, "nonce": "n"})
    chunk = client.payloads[-1]["d"]
    assert client.payloads[-1]["t"] == "GUILD_MEMBERS_CHUNK"
    assert chunk["guild_id"] == "5"  # a string, though the client sent an int
    assert len(chunk["members"]) == 2 and chunk["nonce"] == "n"
    client.op(REQUEST_GUILD_MEMBERS, {"guild_id": "5", "user_ids": [BOT["id"]], "limit": 0})
    assert [m["user"]["id"] for m in client.payloads[-1]["d"]["members"]] == [BOT["id"]]


def test_what_is_pushed_stays_in_the_world() -> None:
    # identifies twice at the same instant: the identify concurrency limit is opted out of
    store = SessionStore(ServerConfig(guild_ids=(5,), enforce_identify_concurrency=False))
    world = store.world
    store.dispatch(*world.guild_create("pushed"))
    store.dispatch(*world.member_join("alice", guild_id=5))
    store.dispatch(*world.channel_create("news", guild_id=5))
    later = identified(store)
    assert [g["id"] for g in later.ready()["guilds"]] == ["5", str(world.guild_ids()[1])]
    first, second = guild_creates(later)
    assert first["member_count"] == 3
    assert "alice" in {m["user"]["username"] for m in first["members"]}
    assert "news" in {c["name"] for c in first["channels"]}
    assert second["name"] == "pushed"
    store.dispatch(*world.guild_delete(5))
    assert [g["id"] for g in identified(store).ready()["guilds"]] == [second["id"]]


def test_raw_pushes_are_remembered_and_broken_ones_ignored() -> None:
    store = SessionStore(ServerConfig(guild_ids=(5,)))
    store.dispatch("GUILD_MEMBER_ADD", {"guild_id": "5", "user": {"id": "77", "username": "x"}})
    assert "77" in store.world.guild(5).members
    store.dispatch("GUILD_MEMBER_ADD", {"guild_id": "5"})  # no user: sent, not remembered
    store.dispatch("GUILD_MEMBER_REMOVE", {"guild_id": "5", "user": {"id": "77"}})
    assert "77" not in store.world.guild(5).members


def test_message_factory_builds_what_discord_sends() -> None:
    world = World(BOT, (5,), clock=lambda: 1_700_000_000.0)
    name, message = world.message("hi")
    assert name == "MESSAGE_CREATE"
    assert message["guild_id"] == "5" and message["channel_id"] == world.channel()["id"]
    assert message["author"]["id"] == world.owner["id"] and "user" not in message["member"]
    for key in ("id", "timestamp", "edited_timestamp", "tts", "mentions", "attachments", "embeds"):
        assert key in message
    assert message["timestamp"].startswith("2023-11-14T22:13:20")
    world.apply(name, message)
    assert world.channel()["last_message_id"] == message["id"]
    _, reaction = world.reaction_add(message)
    assert reaction["message_id"] == message["id"] and reaction["member"]["user"]["id"]
    _, typing = world.typing()
    assert typing["guild_id"] == "5" and typing["timestamp"] == 1_700_000_000
    _, presence = world.presence(status="idle")
    assert presence["status"] == "idle" and presence["guild_id"] == "5"
    _, update = world.guild_update(5, name="renamed")
    assert update["name"] == "renamed" and "members" not in update
    world.apply("GUILD_UPDATE", update)
    assert world.guild_payload(5)["name"] == "renamed"


def test_snowflakes_encode_their_time() -> None:
    assert int(snowflake(1_420_070_400_000 + 1000, 3)) == (1000 << 22) | 3


def test_default_token_is_discord_shaped_and_names_the_bot() -> None:
    head, middle, tail = DEFAULT_TOKEN.split(".")
    assert middle and tail
    user_id = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()
    assert user_id == ServerConfig().user["id"]
    assert bot_token(user_id) == DEFAULT_TOKEN


def test_member_chunk_filters_by_query_and_limit() -> None:
    world = World(BOT, (5,))
    world.apply(*world.member_join("alice", guild_id=5))
    world.apply(*world.member_join("alan", guild_id=5))
    names = [
        m["user"]["username"]
        for m in world.members_chunk({"guild_id": 5, "query": "al"})["members"]
    ]
    assert sorted(names) == ["alan", "alice"]
    assert len(world.members_chunk({"guild_id": 5, "query": "", "limit": 1})["members"]) == 1
    assert world.members_chunk({"guild_id": 6, "query": ""})["members"] == []  # unknown guild


def test_an_outage_keeps_the_guild_and_leaving_drops_it() -> None:
    world = World(BOT, (5,))
    world.apply(*world.guild_delete(5, unavailable=True))
    assert world.guild_ids() == [5]
    world.apply(*world.guild_delete(5))
    assert world.guild_ids() == []


def test_the_world_keeps_only_the_newest_messages_of_its_own_channels() -> None:
    from discord_gateway.testing.world import MAX_MESSAGES

    world = World(BOT, (5,))
    world.apply("MESSAGE_CREATE", {"id": "1", "channel_id": "999", "content": "elsewhere"})
    assert world.messages == {}
    for _ in range(MAX_MESSAGES + 1):
        name, message = world.message("x")
        world.apply(name, message)
    assert len(world.messages) == MAX_MESSAGES and message["id"] in world.messages
