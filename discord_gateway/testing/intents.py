"""Which sessions get a dispatch, and what of it: Discord's gateway intents.

Theory of operation
-------------------
A session gets only the events its IDENTIFY ``intents`` cover (protocol 19 lists
the privileged ones). :data:`EVENT_INTENTS` is Discord's "List of Intents"
(``developers/events/gateway.mdx``) as data: each event names the intent it
needs, or a ``(in a guild, in a DM)`` pair where Discord lists it under two
intents (MESSAGE_CREATE needs GUILD_MESSAGES in a guild, DIRECT_MESSAGES in a
DM). A dispatch is in a guild when its ``d`` has a ``guild_id``. An event that
is not in the table (READY, RESUMED, INTERACTION_CREATE, USER_UPDATE,
VOICE_SERVER_UPDATE, GUILD_MEMBERS_CHUNK, or any name a test makes up) needs no
intent and always goes out.

Two documented caveats bend the table: GUILD_MEMBER_UPDATE
about the bot itself is sent without GUILD_MEMBERS, and THREAD_MEMBERS_UPDATE
without GUILD_MEMBERS is sent only when the bot was added or removed.

MESSAGE_CONTENT is not an event but a filter on data (:func:`redact`): without
it, a message's ``content``, ``embeds``, ``attachments``, ``components`` and
``poll`` are empty, except in DMs, in the bot's own messages and in messages
that mention the bot; AUTO_MODERATION_ACTION_EXECUTION loses ``content`` and
``matched_content``.

:meth:`.sessions.SessionStore._append`, the one path every dispatch takes,
applies both when ``ServerConfig.filter_by_intents`` is on (the default): a
session that does not get an event gets no seq for it and keeps nothing of it
for a RESUME replay.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..intents import Intents

__all__ = ("CONTENT_EVENTS", "EVENT_INTENTS", "MESSAGE_CONTENT_FIELDS", "receives", "redact")

_I = Intents

#: Event name -> the intent a session needs to get it: one intent, or ``(in a
#: guild, in a DM)`` where Discord lists the event under two intents. Discord's
#: "List of Intents", in its order; events not listed need no intent.
EVENT_INTENTS: Final[Mapping[str, Intents | tuple[Intents, Intents]]] = {
    # GUILDS
    "GUILD_CREATE": _I.GUILDS,
    "GUILD_UPDATE": _I.GUILDS,
    "GUILD_DELETE": _I.GUILDS,
    "GUILD_ROLE_CREATE": _I.GUILDS,
    "GUILD_ROLE_UPDATE": _I.GUILDS,
    "GUILD_ROLE_DELETE": _I.GUILDS,
    "CHANNEL_CREATE": _I.GUILDS,
    "CHANNEL_UPDATE": _I.GUILDS,
    "CHANNEL_DELETE": _I.GUILDS,
    "CHANNEL_PINS_UPDATE": (_I.GUILDS, _I.DIRECT_MESSAGES),
    "THREAD_CREATE": _I.GUILDS,
    "THREAD_UPDATE": _I.GUILDS,
    "THREAD_DELETE": _I.GUILDS,
    "THREAD_LIST_SYNC": _I.GUILDS,
    "THREAD_MEMBER_UPDATE": _I.GUILDS,
    "THREAD_MEMBERS_UPDATE": _I.GUILDS,  # and GUILD_MEMBERS for others: _CAVEATS
    "STAGE_INSTANCE_CREATE": _I.GUILDS,
    "STAGE_INSTANCE_UPDATE": _I.GUILDS,
    "STAGE_INSTANCE_DELETE": _I.GUILDS,
    "VOICE_CHANNEL_STATUS_UPDATE": _I.GUILDS,
    "VOICE_CHANNEL_START_TIME_UPDATE": _I.GUILDS,
    # GUILD_MEMBERS (privileged)
    "GUILD_MEMBER_ADD": _I.GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": _I.GUILD_MEMBERS,  # not about the bot itself: _CAVEATS
    "GUILD_MEMBER_REMOVE": _I.GUILD_MEMBERS,
    # GUILD_MODERATION
    "GUILD_AUDIT_LOG_ENTRY_CREATE": _I.GUILD_MODERATION,
    "GUILD_BAN_ADD": _I.GUILD_MODERATION,
    "GUILD_BAN_REMOVE": _I.GUILD_MODERATION,
    # GUILD_EXPRESSIONS
    "GUILD_EMOJIS_UPDATE": _I.GUILD_EXPRESSIONS,
    "GUILD_STICKERS_UPDATE": _I.GUILD_EXPRESSIONS,
    "GUILD_SOUNDBOARD_SOUND_CREATE": _I.GUILD_EXPRESSIONS,
    "GUILD_SOUNDBOARD_SOUND_UPDATE": _I.GUILD_EXPRESSIONS,
    "GUILD_SOUNDBOARD_SOUND_DELETE": _I.GUILD_EXPRESSIONS,
    "GUILD_SOUNDBOARD_SOUNDS_UPDATE": _I.GUILD_EXPRESSIONS,
    # GUILD_INTEGRATIONS
    "GUILD_INTEGRATIONS_UPDATE": _I.GUILD_INTEGRATIONS,
    "INTEGRATION_CREATE": _I.GUILD_INTEGRATIONS,
    "INTEGRATION_UPDATE": _I.GUILD_INTEGRATIONS,
    "INTEGRATION_DELETE": _I.GUILD_INTEGRATIONS,
    # GUILD_WEBHOOKS
    "WEBHOOKS_UPDATE": _I.GUILD_WEBHOOKS,
    # GUILD_INVITES
    "INVITE_CREATE": _I.GUILD_INVITES,
    "INVITE_DELETE": _I.GUILD_INVITES,
    # GUILD_VOICE_STATES
    "VOICE_CHANNEL_EFFECT_SEND": _I.GUILD_VOICE_STATES,
    "VOICE_STATE_UPDATE": _I.GUILD_VOICE_STATES,
    # GUILD_PRESENCES (privileged)
    "PRESENCE_UPDATE": _I.GUILD_PRESENCES,
    # GUILD_MESSAGES / DIRECT_MESSAGES
    "MESSAGE_CREATE": (_I.GUILD_MESSAGES, _I.DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (_I.GUILD_MESSAGES, _I.DIRECT_MESSAGES),
    "MESSAGE_DELETE": (_I.GUILD_MESSAGES, _I.DIRECT_MESSAGES),
    "MESSAGE_DELETE_BULK": _I.GUILD_MESSAGES,
    # GUILD_MESSAGE_REACTIONS / DIRECT_MESSAGE_REACTIONS
    "MESSAGE_REACTION_ADD": (_I.GUILD_MESSAGE_REACTIONS, _I.DIRECT_MESSAGE_REACTIONS),
    "MESSAGE_REACTION_REMOVE": (_I.GUILD_MESSAGE_REACTIONS, _I.DIRECT_MESSAGE_REACTIONS),
    "MESSAGE_REACTION_REMOVE_ALL": (_I.GUILD_MESSAGE_REACTIONS, _I.DIRECT_MESSAGE_REACTIONS),
    "MESSAGE_REACTION_REMOVE_EMOJI": (_I.GUILD_MESSAGE_REACTIONS, _I.DIRECT_MESSAGE_REACTIONS),
    # GUILD_MESSAGE_TYPING / DIRECT_MESSAGE_TYPING
    "TYPING_START": (_I.GUILD_MESSAGE_TYPING, _I.DIRECT_MESSAGE_TYPING),
    # GUILD_SCHEDULED_EVENTS
    "GUILD_SCHEDULED_EVENT_CREATE": _I.GUILD_SCHEDULED_EVENTS,
    "GUILD_SCHEDULED_EVENT_UPDATE": _I.GUILD_SCHEDULED_EVENTS,
    "GUILD_SCHEDULED_EVENT_DELETE": _I.GUILD_SCHEDULED_EVENTS,
    "GUILD_SCHEDULED_EVENT_USER_ADD": _I.GUILD_SCHEDULED_EVENTS,
    "GUILD_SCHEDULED_EVENT_USER_REMOVE": _I.GUILD_SCHEDULED_EVENTS,
    # AUTO_MODERATION_CONFIGURATION / AUTO_MODERATION_EXECUTION
    "AUTO_MODERATION_RULE_CREATE": _I.AUTO_MODERATION_CONFIGURATION,
    "AUTO_MODERATION_RULE_UPDATE": _I.AUTO_MODERATION_CONFIGURATION,
    "AUTO_MODERATION_RULE_DELETE": _I.AUTO_MODERATION_CONFIGURATION,
    "AUTO_MODERATION_ACTION_EXECUTION": _I.AUTO_MODERATION_EXECUTION,
    # GUILD_MESSAGE_POLLS / DIRECT_MESSAGE_POLLS
    "MESSAGE_POLL_VOTE_ADD": (_I.GUILD_MESSAGE_POLLS, _I.DIRECT_MESSAGE_POLLS),
    "MESSAGE_POLL_VOTE_REMOVE": (_I.GUILD_MESSAGE_POLLS, _I.DIRECT_MESSAGE_POLLS),
}

#: What a message without MESSAGE_CONTENT shows instead of each content field
#: (``None``: the field is left out).
MESSAGE_CONTENT_FIELDS: Final[Mapping[str, Any]] = {
    "content": "",
    "embeds": [],
    "attachments": [],
    "components": [],
    "poll": None,
}

#: Events whose ``d`` is a message object (the ones MESSAGE_CONTENT empties).
CONTENT_EVENTS: Final = frozenset({"MESSAGE_CREATE", "MESSAGE_UPDATE"})


def _about_bot_member(data: Mapping[str, Any], bot_id: str) -> bool:
    """GUILD_MEMBER_UPDATE about the bot itself: sent without GUILD_MEMBERS."""
    user = data.get("user")
    return isinstance(user, Mapping) and str(user.get("id")) == bot_id


def _bot_added_or_removed(data: Mapping[str, Any], bot_id: str) -> bool:
    """THREAD_MEMBERS_UPDATE without GUILD_MEMBERS: only when the bot came or went."""
    added = data.get("added_members") or []
    removed = data.get("removed_member_ids") or []
    return any(
        isinstance(member, Mapping) and str(member.get("user_id")) == bot_id for member in added
    ) or bot_id in map(str, removed)


#: Discord's caveats, by event: sent even without its intent when this holds ...
_SENT_ANYWAY: Final[Mapping[str, Callable[[Mapping[str, Any], str], bool]]] = {
    "GUILD_MEMBER_UPDATE": _about_bot_member,
}
#: ... and, without GUILD_MEMBERS, sent only when this holds.
_WITHOUT_MEMBERS_ONLY: Final[Mapping[str, Callable[[Mapping[str, Any], str], bool]]] = {
    "THREAD_MEMBERS_UPDATE": _bot_added_or_removed,
}


def _in_guild(data: Any) -> bool:
    return isinstance(data, Mapping) and data.get("guild_id") is not None


def receives(name: str, data: Any, intents: int, bot_id: str) -> bool:
    """Whether a session identified with ``intents`` gets dispatch ``name``.

    ``bot_id`` is the bot user's id (for the caveats about the bot itself).
    """
    required = EVENT_INTENTS.get(name)
    if required is None:
        return True  # no intent: READY, RESUMED, INTERACTION_CREATE, unknown names...
    if isinstance(required, tuple):
        required = required[0] if _in_guild(data) else required[1]
    about = data if isinstance(data, Mapping) else {}
    if not intents & required:
        anyway = _SENT_ANYWAY.get(name)
        return anyway is not None and anyway(about, bot_id)
    only = _WITHOUT_MEMBERS_ONLY.get(name)
    return only is None or bool(intents & _I.GUILD_MEMBERS) or only(about, bot_id)


def _mentions(message: Mapping[str, Any], bot_id: str) -> bool:
    mentions = message.get("mentions")
    return isinstance(mentions, list) and any(
        isinstance(user, Mapping) and str(user.get("id")) == bot_id for user in mentions
    )


def _message_without_content(message: Any, bot_id: str, in_dm: bool) -> Any:
    """``message`` as a session without MESSAGE_CONTENT sees it (a copy if it changes)."""
    if not isinstance(message, Mapping) or in_dm:
        return message
    author = message.get("author")
    if (isinstance(author, Mapping) and str(author.get("id")) == bot_id) or _mentions(
        message, bot_id
    ):
        return message  # the bot's own message, or one that mentions it
    redacted = dict(message)
    for key, empty in MESSAGE_CONTENT_FIELDS.items():
        if key in redacted:
            if empty is None:
                del redacted[key]
            else:
                redacted[key] = copy.copy(empty)  # a fresh [] per payload
    if "referenced_message" in redacted:  # a reply carries the message it answers
        redacted["referenced_message"] = _message_without_content(
            redacted["referenced_message"], bot_id, in_dm
        )
    return redacted


def redact(name: str, data: Any, intents: int, bot_id: str) -> Any:
    """``data`` of dispatch ``name`` as a session with ``intents`` sees it.

    Without MESSAGE_CONTENT a message's content fields are emptied (except in
    DMs, the bot's own messages and messages mentioning the bot) and an auto
    moderation action loses ``content`` and ``matched_content``. The same
    object is returned when nothing changes; ``data`` itself is never modified.
    """
    if intents & _I.MESSAGE_CONTENT or not isinstance(data, Mapping):
        return data
    if name in CONTENT_EVENTS:
        return _message_without_content(data, bot_id, in_dm=not _in_guild(data))
    if name == "AUTO_MODERATION_ACTION_EXECUTION":
        redacted = dict(data)
        if "content" in redacted:
            redacted["content"] = ""
        if "matched_content" in redacted:
            redacted["matched_content"] = None
        return redacted
    return data
