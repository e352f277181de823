"""What the local gateway's bot can see: guilds, channels, members, messages.

Theory of operation
-------------------
A :class:`World` is the state behind READY, GUILD_CREATE, GUILD_MEMBERS_CHUNK
and the REST answers (:mod:`.rest`). Every guild has an ``@everyone`` role
(its id is the guild's), an owner, the bot as a member, a category and a text
channel ``#general``; member counts always equal the members kept.

Two kinds of method, so nothing is counted twice:

* **factories** (:meth:`World.message`, :meth:`World.member_join`,
  :meth:`World.guild_create`, ...) only *build* a complete, Discord-shaped
  dispatch (ids and snowflakes as strings, every field Discord sends) and
  return it as a :class:`Dispatch` ``(name, data)``; push it with
  ``gateway.dispatch(*world.message("hi"))``.
* :meth:`World.apply` *changes* the world from a dispatch. The session store
  calls it for every pushed dispatch, factory-made or raw, so what was pushed
  stays: a later READY or GUILD_CREATE reflects it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

__all__ = (
    "DISCORD_EPOCH_MS",
    "MAX_MESSAGES",
    "AnyToken",
    "Dispatch",
    "Guild",
    "World",
    "bot_token",
    "snowflake",
)

#: 2015-01-01T00:00:00Z in milliseconds: snowflakes count from here.
DISCORD_EPOCH_MS = 1_420_070_400_000

#: Every permission but administrator, as Discord sends it: a decimal string.
_EVERYONE_PERMISSIONS = str((1 << 50) - 1 & ~(1 << 3))
#: How many messages a world keeps (for replies' ``referenced_message``).
MAX_MESSAGES = 1000
#: GUILD_TEXT and GUILD_CATEGORY channel types.
_TEXT, _CATEGORY = 0, 4


def snowflake(unix_ms: int, increment: int = 0) -> str:
    """A snowflake (as Discord sends it: a string) for ``unix_ms``."""
    return str(((unix_ms - DISCORD_EPOCH_MS) << 22) | (increment & 0xFFF))


def bot_token(user_id: int | str, secret: str = "discord-gateway-local") -> str:
    """A token shaped like Discord's: ``base64(user id) . timestamp . hmac``.

    Libraries read the bot's id from the first part (hikari does in its
    constructor), so it must decode to the bot user's id.
    """
    head = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    tail = base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")
    return f"{head}.GLocal.{tail}"


class Dispatch(NamedTuple):
    """A dispatch a factory built: ``gateway.dispatch(*dispatch)`` pushes it."""

    name: str
    data: dict[str, Any]


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=timezone.utc).isoformat()


@dataclass(eq=False, slots=True)
class Guild:
    """One guild: its own fields plus roles, channels and members (by user id)."""

    data: dict[str, Any]
    roles: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def text_channel(self) -> dict[str, Any]:
        """The first text channel (``#general`` unless it was deleted)."""
        return next(c for c in self.channels if c["type"] == _TEXT)


class World:
    """Guilds, channels, users and members the local gateway serves.

    ``user`` is the bot's user object (READY's ``user``); ``guild_ids`` the
    guilds it is in at first. ``clock`` (Unix seconds) stamps new snowflakes,
    ``joined_at`` and message timestamps.
    """

    def __init__(
        self,
        user: Mapping[str, Any],
        guild_ids: Iterable[int | str] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self._counter = itertools.count(1)
        self.bot = self._user(dict(user))
        self.owner = self._user({"id": self._snowflake(), "username": "local-owner", "bot": False})
        self.users: dict[str, dict[str, Any]] = {
            self.bot["id"]: self.bot,
            self.owner["id"]: self.owner,
        }
        self.guilds: dict[str, Guild] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # by message id
        for guild_id in guild_ids:
            self.apply(*self.guild_create(guild_id=guild_id))

    # -- ids and objects --------------------------------------------------------------

    def _snowflake(self) -> str:
        return snowflake(int(self.clock() * 1000), next(self._counter))

    def _user(self, user: dict[str, Any]) -> dict[str, Any]:
        user.setdefault("id", self._snowflake())
        user["id"] = str(user["id"])
        defaults: dict[str, Any] = {
            "username": f"user-{user['id'][-6:]}",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": False,
            "system": False,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "avatar_decoration_data": None,
        }
        return {**defaults, **user}

    def user(self, username: str, **fields: Any) -> dict[str, Any]:
        """A new (human) user, kept in the world: use it as a message author."""
        user = self._user({"username": username, **fields})
        self.users[user["id"]] = user
        return user

    def _member(self, user: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        return {
            "user": dict(user),
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [],
            "joined_at": _iso(self.clock()),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
            **fields,
        }

    def guild(self, guild_id: int | str | None = None) -> Guild:
        """The guild ``guild_id`` (default: the first one)."""
        if guild_id is None:
            return next(iter(self.guilds.values()))
        return self.guilds[str(guild_id)]

    def channel(self, channel_id: int | str | None = None) -> dict[str, Any]:
        """A guild channel by id (default: the first guild's text channel)."""
        if channel_id is None:
            return self.guild().text_channel
        for guild in self.guilds.values():
            for channel in guild.channels:
                if channel["id"] == str(channel_id):
                    return channel
        raise KeyError(f"no channel {channel_id}")

    def guild_of(self, channel_id: int | str) -> Guild | None:
        for guild in self.guilds.values():
            if any(c["id"] == str(channel_id) for c in guild.channels):
                return guild
        return None

    # -- payloads the server sends --------------------------------------------------------

    def guild_ids(self) -> list[int]:
        return [int(g) for g in self.guilds]

    def guild_payload(self, guild_id: int | str) -> dict[str, Any]:
        """GUILD_CREATE's ``d`` for a guild: everything Discord sends."""
        guild = self.guilds[str(guild_id)]
        return {
            **copy.deepcopy(guild.data),
            "roles": copy.deepcopy(guild.roles),
            "channels": copy.deepcopy(guild.channels),
            "members": copy.deepcopy(list(guild.members.values())),
            "member_count": len(guild.members),
        }

    def members_chunk(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """GUILD_MEMBERS_CHUNK's ``d`` for an op 8 request (one chunk)."""
        guild = self.guilds.get(str(request.get("guild_id")))
        members = list(guild.members.values()) if guild is not None else []
        query, user_ids = request.get("query"), request.get("user_ids")
        if user_ids is not None:
            wanted = {str(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
            members = [m for m in members if m["user"]["id"] in wanted]
        elif isinstance(query, str) and query:
            members = [m for m in members if m["user"]["username"].startswith(query)]
        limit = request.get("limit")
        if isinstance(limit, int) and limit > 0:
            members = members[:limit]
        chunk: dict[str, Any] = {
            # Discord sends ids as strings, whatever type the request used.
            "guild_id": str(request.get("guild_id")),
            "members": copy.deepcopy(members),
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if request.get("presences"):
            chunk["presences"] = []
        if "nonce" in request:
            chunk["nonce"] = request["nonce"]
        return chunk

    def application(self) -> dict[str, Any]:
        """``GET /oauth2/applications/@me``: the bot's application."""
        return {
            "id": self.bot["id"],
            "name": self.bot["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": dict(self.owner),
            "team": None,
            "rpc_origins": [],
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.guilds),
            "bot": dict(self.bot),
        }

    # -- factories: build a dispatch, change nothing ---------------------------------------

    def guild_create(
        self, name: str | None = None, *, guild_id: int | str | None = None
    ) -> Dispatch:
        """GUILD_CREATE for a new guild with @everyone, an owner, the bot, #general."""
        gid = str(guild_id) if guild_id is not None else self._snowflake()
        category, general = self._snowflake(), self._snowflake()
        data: dict[str, Any] = {
            "id": gid,
            "name": name or f"Local guild {gid}",
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.owner["id"],
            "application_id": None,
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "features": [],
            "mfa_level": 0,
            "system_channel_id": general,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "nsfw": False,
            "nsfw_level": 0,
            "hub_type": None,
            "incidents_data": None,
            "emojis": [],
            "stickers": [],
            # GUILD_CREATE only:
            "joined_at": _iso(self.clock()),
            "large": False,
            "unavailable": False,
            "lazy": True,
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "roles": [
                {
                    "id": gid,  # @everyone's id is the guild's
                    "name": "@everyone",
                    "color": 0,
                    "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                    "hoist": False,
                    "icon": None,
                    "unicode_emoji": None,
                    "position": 0,
                    "permissions": _EVERYONE_PERMISSIONS,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "channels": [
                self._channel(category, "Text Channels", _CATEGORY, None),
                self._channel(general, "general", _TEXT, category),
            ],
            "members": [self._member(self.owner), self._member(self.bot)],
        }
        data["member_count"] = len(data["members"])
        return Dispatch("GUILD_CREATE", data)

    def _channel(
        self, channel_id: str, name: str, kind: int, parent_id: str | None
    ) -> dict[str, Any]:
        channel: dict[str, Any] = {
            "id": channel_id,
            "type": kind,
            "name": name,
            "position": 0,
            "permission_overwrites": [],
            "parent_id": parent_id,
            "nsfw": False,
            "flags": 0,
        }
        if kind == _TEXT:
            channel.update(
                topic=None, last_message_id=None, rate_limit_per_user=0, last_pin_timestamp=None
            )
        return channel

    def channel_create(self, name: str, guild_id: int | str | None = None) -> Dispatch:
        """CHANNEL_CREATE for a new text channel."""
        guild = self.guild(guild_id)
        channel = self._channel(self._snowflake(), name, _TEXT, None)
        return Dispatch("CHANNEL_CREATE", {**channel, "guild_id": guild.id})

    def guild_update(self, guild_id: int | str | None = None, **changes: Any) -> Dispatch:
        """GUILD_UPDATE: the guild's fields with ``changes`` (e.g. ``name=...``)."""
        guild = self.guild(guild_id)
        data = {**copy.deepcopy(guild.data), "roles": copy.deepcopy(guild.roles), **changes}
        for key in ("joined_at", "large", "unavailable", "lazy", "member_count"):
            data.pop(key, None)  # GUILD_CREATE-only fields
        for key in ("voice_states", "presences", "threads", "stage_instances"):
            data.pop(key, None)
        for key in ("guild_scheduled_events", "soundboard_sounds", "embedded_activities"):
            data.pop(key, None)
        return Dispatch("GUILD_UPDATE", data)

    def guild_delete(
        self, guild_id: int | str | None = None, *, unavailable: bool = False
    ) -> Dispatch:
        """GUILD_DELETE: the bot left (or, with ``unavailable``, an outage)."""
        data: dict[str, Any] = {"id": self.guild(guild_id).id}
        if unavailable:
            data["unavailable"] = True
        return Dispatch("GUILD_DELETE", data)

    def member_join(
        self, user: Mapping[str, Any] | str = "new-member", guild_id: int | str | None = None
    ) -> Dispatch:
        """GUILD_MEMBER_ADD for ``user`` (a user object, or a name for a new user)."""
        guild = self.guild(guild_id)
        if isinstance(user, str):
            user = self.user(user)
        return Dispatch("GUILD_MEMBER_ADD", {**self._member(user), "guild_id": guild.id})

    def member_leave(self, user: Mapping[str, Any], guild_id: int | str | None = None) -> Dispatch:
        """GUILD_MEMBER_REMOVE."""
        return Dispatch(
            "GUILD_MEMBER_REMOVE", {"guild_id": self.guild(guild_id).id, "user": dict(user)}
        )

    def message(
        self,
        content: str = "hi",
        *,
        channel: Mapping[str, Any] | int | str | None = None,
        author: Mapping[str, Any] | None = None,
    ) -> Dispatch:
        """MESSAGE_CREATE by ``author`` (default: the guild's owner) in ``channel``."""
        if isinstance(channel, Mapping):
            channel_id = str(channel["id"])
        else:
            channel_id = self.channel(channel)["id"]
        author = dict(author) if author is not None else dict(self.owner)
        guild = self.guild_of(channel_id)
        message_id = self._snowflake()
        data: dict[str, Any] = {
            "id": message_id,
            "type": 0,
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": _iso(self.clock()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": 0,
            "nonce": None,
        }
        if guild is not None:
            data["guild_id"] = guild.id
            member = guild.members.get(author["id"])
            if member is not None:  # guild messages carry the author's member, without user
                data["member"] = {k: v for k, v in member.items() if k != "user"}
        return Dispatch("MESSAGE_CREATE", data)

    def reaction_add(
        self,
        message: Mapping[str, Any],
        emoji: str = "\N{THUMBS UP SIGN}",
        *,
        user: Mapping[str, Any] | None = None,
    ) -> Dispatch:
        """MESSAGE_REACTION_ADD of a unicode ``emoji`` on ``message``."""
        user = user or self.owner
        data: dict[str, Any] = {
            "user_id": user["id"],
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
            member = self.guilds[message["guild_id"]].members.get(user["id"])
            if member is not None:
                data["member"] = copy.deepcopy(member)
        return Dispatch("MESSAGE_REACTION_ADD", data)

    def typing(
        self, channel: int | str | None = None, *, user: Mapping[str, Any] | None = None
    ) -> Dispatch:
        """TYPING_START in ``channel`` by ``user`` (default: the owner)."""
        channel_id = self.channel(channel)["id"]
        user = user or self.owner
        data: dict[str, Any] = {
            "channel_id": channel_id,
            "user_id": user["id"],
            "timestamp": int(self.clock()),
        }
        guild = self.guild_of(channel_id)
        if guild is not None:
            data["guild_id"] = guild.id
            member = guild.members.get(user["id"])
            if member is not None:
                data["member"] = copy.deepcopy(member)
        return Dispatch("TYPING_START", data)

    def presence(
        self,
        user: Mapping[str, Any] | None = None,
        status: str = "online",
        guild_id: int | str | None = None,
    ) -> Dispatch:
        """PRESENCE_UPDATE: ``user`` (default: the owner) is ``status``."""
        user = user or self.owner
        return Dispatch(
            "PRESENCE_UPDATE",
            {
                "user": {"id": user["id"]},
                "guild_id": self.guild(guild_id).id,
                "status": status,
                "activities": [],
                "client_status": {"desktop": status} if status != "offline" else {},
            },
        )

    # -- apply: what a pushed dispatch changes ----------------------------------------------

    def apply(self, name: str, data: Any) -> None:
        """Remember what dispatch ``name`` says (ignored if it changes nothing we keep)."""
        if not isinstance(data, Mapping):
            return
        handler = getattr(self, f"_apply_{name.lower()}", None)
        if handler is not None:
            # A raw payload missing what we keep is still sent; we remember nothing.
            with contextlib.suppress(KeyError, TypeError, AttributeError, ValueError):
                handler(data)

    def _apply_guild_create(self, data: Mapping[str, Any]) -> None:
        gid = str(data["id"])
        if data.get("unavailable"):
            return
        fields = {
            k: copy.deepcopy(v)
            for k, v in data.items()
            if k not in ("roles", "channels", "members", "member_count")
        }
        members = {str(m["user"]["id"]): copy.deepcopy(m) for m in data.get("members", [])}
        for member in members.values():
            self.users.setdefault(str(member["user"]["id"]), member["user"])
        self.guilds[gid] = Guild(
            fields,
            copy.deepcopy(list(data.get("roles", []))),
            copy.deepcopy(list(data.get("channels", []))),
            members,
        )

    def _apply_guild_update(self, data: Mapping[str, Any]) -> None:
        guild = self.guilds[str(data["id"])]
        guild.data.update({k: copy.deepcopy(v) for k, v in data.items() if k != "roles"})
        if "roles" in data:
            guild.roles = copy.deepcopy(list(data["roles"]))

    def _apply_guild_delete(self, data: Mapping[str, Any]) -> None:
        if not data.get("unavailable"):
            self.guilds.pop(str(data["id"]), None)

    def _apply_channel_create(self, data: Mapping[str, Any]) -> None:
        channel = {k: copy.deepcopy(v) for k, v in data.items() if k != "guild_id"}
        self.guilds[str(data["guild_id"])].channels.append(channel)

    def _apply_channel_delete(self, data: Mapping[str, Any]) -> None:
        guild = self.guilds[str(data["guild_id"])]
        guild.channels = [c for c in guild.channels if c["id"] != str(data["id"])]

    def _apply_guild_member_add(self, data: Mapping[str, Any]) -> None:
        member = {k: copy.deepcopy(v) for k, v in data.items() if k != "guild_id"}
        user_id = str(member["user"]["id"])
        self.users.setdefault(user_id, member["user"])
        self.guilds[str(data["guild_id"])].members[user_id] = member

    def _apply_guild_member_remove(self, data: Mapping[str, Any]) -> None:
        self.guilds[str(data["guild_id"])].members.pop(str(data["user"]["id"]), None)

    def _apply_message_create(self, data: Mapping[str, Any]) -> None:
        # Only messages in the world's channels are kept, the newest MAX_MESSAGES of
        # them (a benchmark pushes 100,000s into channels we do not know).
        guild = self.guild_of(data["channel_id"])
        if guild is None:
            return
        self.messages[str(data["id"])] = dict(data)
        while len(self.messages) > MAX_MESSAGES:
            del self.messages[next(iter(self.messages))]
        for channel in guild.channels:
            if channel["id"] == str(data["channel_id"]):
                channel["last_message_id"] = str(data["id"])


class AnyToken(frozenset[str]):
    """``ServerConfig(tokens=AnyToken())``: every non-empty token is accepted.

    It still holds one token (Discord-shaped, the default) for whoever asks the
    server which token to use (``LocalGateway.token``).
    """

    def __new__(cls, token: str | None = None) -> AnyToken:
        if token is None:
            from ._config import DEFAULT_TOKEN

            token = DEFAULT_TOKEN
        return super().__new__(cls, {token})

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and bool(token)
