"""Gateway intents by name: which events Discord sends you.

``Intents`` is an :class:`enum.IntFlag`, so it is an ``int`` everywhere an
``int`` is expected (plain ints keep working) and combines with ``|``::

    Intents.GUILDS | Intents.GUILD_MESSAGES        # == 513
    Intents.DEFAULT                                # every unprivileged intent
    Intents.DEFAULT | Intents.MESSAGE_CONTENT      # one privileged intent more

The members are Discord's list of intents (developers/events/gateway.mdx,
"List of Intents"). Three are *privileged* (:attr:`Intents.PRIVILEGED`): a
bot must enable them in the Developer Portal (your app > Bot > Privileged
Gateway Intents) before asking for them, or the gateway closes with 4014
(:class:`~discord_gateway.DisallowedIntents`).
"""

from __future__ import annotations

import enum

__all__ = ("PORTAL_HINT", "Intents", "intent_names")

#: Where a bot's privileged intents are switched on.
PORTAL_HINT = "Discord Developer Portal > your app > Bot > Privileged Gateway Intents"


class Intents(enum.IntFlag):
    """The gateway intents (``1 << n``); combine them with ``|``."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1  # privileged
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8  # privileged
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15  # privileged
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25

    #: Intents that must be enabled in the Developer Portal first.
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
    #: Every intent Discord documents.
    ALL = (
        GUILDS
        | GUILD_MEMBERS
        | GUILD_MODERATION
        | GUILD_EXPRESSIONS
        | GUILD_INTEGRATIONS
        | GUILD_WEBHOOKS
        | GUILD_INVITES
        | GUILD_VOICE_STATES
        | GUILD_PRESENCES
        | GUILD_MESSAGES
        | GUILD_MESSAGE_REACTIONS
        | GUILD_MESSAGE_TYPING
        | DIRECT_MESSAGES
        | DIRECT_MESSAGE_REACTIONS
        | DIRECT_MESSAGE_TYPING
        | MESSAGE_CONTENT
        | GUILD_SCHEDULED_EVENTS
        | AUTO_MODERATION_CONFIGURATION
        | AUTO_MODERATION_EXECUTION
        | GUILD_MESSAGE_POLLS
        | DIRECT_MESSAGE_POLLS
    )
    #: Every unprivileged intent: what a bot may ask for without the Developer Portal.
    DEFAULT = ALL & ~PRIVILEGED


_SINGLE = [member for member in Intents.__members__.values() if member.value.bit_count() == 1]


def intent_names(value: int) -> list[str]:
    """The names of the documented intents set in ``value``, lowest bit first;
    an undocumented bit ``n`` is named ``1 << n``."""
    names = [member.name or "" for member in _SINGLE if value & member.value]
    unknown = value & ~int(Intents.ALL)
    names += [f"1 << {bit}" for bit in range(unknown.bit_length()) if unknown >> bit & 1]
    return names
