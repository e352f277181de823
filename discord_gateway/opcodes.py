"""Wire constants: gateway opcodes, close codes and what each close code means.

Everything here is data taken from Discord's documentation (see the checklist
sections G and H in ``docs/protocol.md``); the connection reads these
tables rather than spelling the rules out in ``if`` chains.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = (
    "CLOSE_CODE_POLICIES",
    "RESUMABLE_CLOSE_CODE",
    "SESSION_ENDING_CLOSE_CODES",
    "CloseCode",
    "ClosePolicy",
    "Opcode",
    "close_policy",
    "should_reconnect",
)


class Opcode(enum.IntEnum):
    """Gateway opcodes (protocol G). The direction is from the client's view."""

    DISPATCH = 0  # receive
    HEARTBEAT = 1  # send and receive
    IDENTIFY = 2  # send
    PRESENCE_UPDATE = 3  # send
    VOICE_STATE_UPDATE = 4  # send
    RESUME = 6  # send
    RECONNECT = 7  # receive
    REQUEST_GUILD_MEMBERS = 8  # send
    INVALID_SESSION = 9  # receive
    HELLO = 10  # receive
    HEARTBEAT_ACK = 11  # receive
    REQUEST_SOUNDBOARD_SOUNDS = 31  # send
    REQUEST_CHANNEL_INFO = 43  # send


class CloseCode(enum.IntEnum):
    """WebSocket close codes that matter to the gateway (protocol H)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    ABNORMAL_CLOSURE = 1006  # no close frame: the transport was lost
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014

    # Aliases kept from discord-gateway 0.4.0 (its INVALID_SEQ was wrongly 4006).
    GENERIC_ERROR = 4000
    DECODING_ERROR = 4002
    ALREADT_AUTHENTICATED = 4005


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    """What a close code received from the gateway means for the client.

    ``reconnect``: whether connecting again can succeed at all.
    ``resume``: whether the session survives (RESUME) or a new one must be
    started (IDENTIFY).
    """

    meaning: str
    reconnect: bool
    resume: bool


#: Protocol H, one row per code. Codes missing from this table (4006, 4015+, 3xxx,
#: 1xxx other than below) are treated as "reconnect and try to resume"
#: (protocol 31), and so are 1000/1001 when the *server* sends them (protocol 32).
CLOSE_CODE_POLICIES: dict[int, ClosePolicy] = {
    CloseCode.NORMAL_CLOSURE: ClosePolicy("normal closure from the server", True, True),
    CloseCode.GOING_AWAY: ClosePolicy("server going away (reconnect requested)", True, True),
    CloseCode.ABNORMAL_CLOSURE: ClosePolicy("connection lost without a close frame", True, True),
    CloseCode.UNKNOWN_ERROR: ClosePolicy("unknown error", True, True),
    CloseCode.UNKNOWN_OPCODE: ClosePolicy("unknown opcode or invalid payload", True, True),
    CloseCode.DECODE_ERROR: ClosePolicy("decode error (invalid or oversized payload)", True, True),
    # protocol H [obs]: "...or this session has been invalidated": start over.
    CloseCode.NOT_AUTHENTICATED: ClosePolicy("not authenticated", True, False),
    CloseCode.AUTHENTICATION_FAILED: ClosePolicy("authentication failed (bad token)", False, False),
    CloseCode.ALREADY_AUTHENTICATED: ClosePolicy("already authenticated", True, True),
    CloseCode.INVALID_SEQ: ClosePolicy("invalid seq: start a new session", True, False),
    CloseCode.RATE_LIMITED: ClosePolicy("rate limited (too many commands)", True, True),
    CloseCode.SESSION_TIMED_OUT: ClosePolicy("session timed out: start a new session", True, False),
    CloseCode.INVALID_SHARD: ClosePolicy("invalid shard", False, False),
    CloseCode.SHARDING_REQUIRED: ClosePolicy("sharding required", False, False),
    CloseCode.INVALID_API_VERSION: ClosePolicy("invalid API version", False, False),
    CloseCode.INVALID_INTENTS: ClosePolicy("invalid intents", False, False),
    CloseCode.DISALLOWED_INTENTS: ClosePolicy("disallowed (privileged) intents", False, False),
}

_UNKNOWN_POLICY = ClosePolicy("unknown close code", True, True)

#: The code we close with when the session must survive: any code other than
#: 1000/1001 keeps it (protocol 13, 30). 4000 is what discord.py and twilight use.
RESUMABLE_CLOSE_CODE = 4000

#: Closing *ourselves* with one of these ends the session (protocol 30).
SESSION_ENDING_CLOSE_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY})


def close_policy(code: int | None) -> ClosePolicy:
    """The policy for a close code received from the gateway (``None``: no close frame)."""
    if code is None:
        return CLOSE_CODE_POLICIES[CloseCode.ABNORMAL_CLOSURE]
    return CLOSE_CODE_POLICIES.get(code, _UNKNOWN_POLICY)


def should_reconnect(code: int | None) -> bool:
    """Whether reconnecting after the gateway closed with ``code`` can succeed.

    Compatible with discord-gateway 0.4.0's function of the same name, with its
    range check fixed: fatal codes (4004, 4010-4014) return False; everything
    else, unknown codes and ``None`` (no close frame) included, returns True.
    """
    return close_policy(code).reconnect
