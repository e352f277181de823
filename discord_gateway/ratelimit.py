"""The gateway's send limit, as a pure sliding window (protocol 41).

Discord allows 120 gateway events per connection every 60 seconds and closes
with 4008 above that. Heartbeats (including answers to op 1) and the one
IDENTIFY or RESUME must never wait behind commands, so they are not counted
here: instead their worst case is *reserved* out of the 120, as twilight does
(discord.py simply caps commands at 110). Only commands are recorded.
"""

from __future__ import annotations

import math

__all__ = ("SEND_LIMIT", "SEND_WINDOW", "CommandRateLimiter")

SEND_LIMIT = 120
SEND_WINDOW = 60.0
#: Besides the heartbeats one window needs: one heartbeat more at the window's
#: edge, the IDENTIFY/RESUME, and one answer to a server op 1.
_EXTRA_RESERVE = 3


class CommandRateLimiter:
    """Sliding 60 s window of the commands sent on one connection."""

    __slots__ = ("_sent",)

    def __init__(self) -> None:
        # At most 120 entries: a list (an empty deque costs ~600 bytes per connection).
        self._sent: list[float] = []

    def reset(self) -> None:
        """A new connection starts with a fresh window."""
        self._sent.clear()

    @staticmethod
    def budget(heartbeat_interval: float | None) -> int:
        """Commands allowed per window once the heartbeats' room is reserved."""
        if heartbeat_interval is None or heartbeat_interval <= 0:
            heartbeats = 0
        else:
            heartbeats = math.ceil(SEND_WINDOW / heartbeat_interval)
        return max(1, SEND_LIMIT - heartbeats - _EXTRA_RESERVE)

    def _prune(self, now: float) -> None:
        sent = self._sent
        # Computed as next_free() computes it: in floating point (t + 60) - 60
        # can be below t, and a command next_free() announced as due would
        # then stay in the window, so a timer loop at that deadline would spin.
        while sent and sent[0] + SEND_WINDOW <= now:
            del sent[0]

    def try_acquire(self, now: float, heartbeat_interval: float | None) -> bool:
        """Record a command sent at ``now`` if the window has room for it."""
        self._prune(now)
        if len(self._sent) >= self.budget(heartbeat_interval):
            return False
        self._sent.append(now)
        return True

    def next_free(self, heartbeat_interval: float | None) -> float:
        """When the next command may go: ``-inf`` if there is room already."""
        excess = len(self._sent) - self.budget(heartbeat_interval)
        if excess < 0:
            return -math.inf
        return self._sent[excess] + SEND_WINDOW
