"""Typed pieces of a presence: :class:`Status`, :class:`ActivityType`, :class:`Activity`.

Everything that takes a presence - ``update_presence()`` on the core and on
every shard, IDENTIFY's ``presence`` option - accepts these or Discord's raw
dicts and strings::

    shard.update_presence(
        status=Status.IDLE,
        activities=[Activity("the gateway", ActivityType.WATCHING)],
    )
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ("Activity", "ActivityType", "Status")


class Status(str, enum.Enum):
    """A bot's status; a ``str``, so ``"idle"`` and ``Status.IDLE`` are interchangeable."""

    ONLINE = "online"
    DND = "dnd"  # do not disturb
    IDLE = "idle"
    INVISIBLE = "invisible"  # shown as offline
    OFFLINE = "offline"

    def __str__(self) -> str:
        return self.value


class ActivityType(enum.IntEnum):
    """What an activity's name describes ("Playing {name}", "Watching {name}", ...)."""

    PLAYING = 0
    STREAMING = 1  # the url must be a Twitch or YouTube URL
    LISTENING = 2
    WATCHING = 3
    CUSTOM = 4  # the text is ``state``
    COMPETING = 5
    HANG = 6


@dataclass(frozen=True, slots=True)
class Activity:
    """One activity of a presence. Bots may set only these four fields."""

    name: str
    type: ActivityType | int = ActivityType.PLAYING
    state: str | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Discord's activity object (optional fields left as None are omitted)."""
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.state is not None:
            data["state"] = self.state
        if self.url is not None:
            data["url"] = self.url
        return data
