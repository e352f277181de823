"""Pure, validated builders for the ``d`` of every command a client sends.

Each function returns a plain ``dict`` (lists, never tuples, so that ETF and
JSON encode the same shape); the connection wraps it as ``{"op": ..., "d": ...}``
and encodes it. Nothing here does I/O or keeps state.

Every builder validates before returning and raises :class:`InvalidCommand`
with a message naming the broken rule: Discord answers a bad payload by
closing the connection (4001, 4002, 4013, ...), so refusing it locally is
cheaper and says why. As a last check each builder refuses a command whose
JSON encoding (with its envelope) would exceed 4096 bytes (protocol 42); the
connection must still measure the bytes it actually encodes (ETF sizes differ).

Snowflakes are accepted as ``int`` or decimal ``str`` and always sent as
``str``, like Discord's own examples. Error messages never include the token.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from .codec import MAX_SEND_SIZE, json_dumps
from .errors import InvalidCommand
from .intents import intent_names
from .opcodes import Opcode
from .presence import Activity, Status

__all__ = (
    "ACTIVITY_KEYS",
    "Activity",
    "Status",
    "CHANNEL_INFO_FIELDS",
    "INTENTS_LIMIT",
    "PRESENCE_STATUSES",
    "Snowflake",
    "default_properties",
    "identify_data",
    "presence_data",
    "request_channel_info_data",
    "request_guild_members_data",
    "request_soundboard_sounds_data",
    "validate_snowflake",
    "voice_state_data",
)

#: A Discord ID as the caller may give it.
Snowflake: TypeAlias = "int | str"

_SNOWFLAKE_LIMIT = 2**64
# str(2**64 - 1) has 20 digits; checking the length first keeps int() cheap
# and avoids the int-max-str-digits ValueError on absurd inputs.
_SNOWFLAKE_MAX_DIGITS = 20

#: Intents must be below this. The highest documented intent is
#: DIRECT_MESSAGE_POLLS = 1 << 25 (developers/events/gateway.mdx, list of
#: intents); Discord closes with 4013 on bits it does not know (protocol 19), so a
#: bit above it is refused here. Raise this when Discord adds an intent.
INTENTS_LIMIT = 1 << 26

PRESENCE_STATUSES = frozenset({"online", "dnd", "idle", "invisible", "offline"})
#: protocol 51: "Bot users are only able to set name, state, type, and url".
ACTIVITY_KEYS = ("name", "type", "state", "url")
#: Activity types: 0 Playing, 1 Streaming, 2 Listening, 3 Watching,
#: 4 Custom, 5 Competing, 6 Hang.
_ACTIVITY_TYPES = range(7)
_STREAMING = 1
#: protocol 51: streaming URLs must be Twitch or YouTube.
_STREAMING_HOSTS = frozenset({"twitch.tv", "www.twitch.tv", "youtube.com", "www.youtube.com"})
#: protocol 49: the only fields Request Channel Info accepts.
CHANNEL_INFO_FIELDS = ("status", "voice_start_time")

_LARGE_THRESHOLD = range(50, 251)  # protocol 17: "Value between 50 and 250"
_MEMBERS_LIMIT = 100  # protocol 47: a query or user_ids returns at most 100 members
_NONCE_MAX_BYTES = 32  # protocol 47: "Nonce can only be up to 32 bytes"

_DEPRECATED_PROPERTIES = {"$os": "os", "$browser": "browser", "$device": "device"}


def _intents_problem(intents: int) -> str:
    """Why Discord would refuse ``intents`` (4013), naming the bits."""
    if intents < 0:
        return f"intents must be >= 0, not {intents}: combine Intents flags with |"
    unknown = intents & ~(INTENTS_LIMIT - 1)
    return (
        f"intents {intents} include bits above DIRECT_MESSAGE_POLLS that Discord does not "
        f"know ({', '.join(intent_names(unknown))}); it closes the connection (4013) on "
        "unknown intents: drop them, or build intents from the Intents flags"
    )


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as an intent or a limit is a bug, not 1.
    return isinstance(value, int) and not isinstance(value, bool)


def validate_snowflake(value: object, field: str = "snowflake") -> str:
    """Return ``value`` as the decimal string Discord expects.

    Accepts an ``int`` or a string of ASCII digits with 0 < id < 2**64;
    anything else raises :class:`InvalidCommand` naming ``field``.
    """
    if _is_int(value):
        number = value
    elif isinstance(value, str):
        if not (0 < len(value) <= _SNOWFLAKE_MAX_DIGITS and value.isascii() and value.isdigit()):
            raise InvalidCommand(
                f"{field} must be a snowflake (an int or a string of decimal digits), not {value!r}"
            )
        number = int(value)
    else:
        raise InvalidCommand(
            f"{field} must be a snowflake (int or decimal str), not {type(value).__name__}"
        )
    assert isinstance(number, int)
    if not 0 < number < _SNOWFLAKE_LIMIT:
        raise InvalidCommand(f"{field} must be a snowflake with 0 < id < 2**64, not {value!r}")
    return str(number)


def _snowflake_list(values: object, field: str) -> list[str]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidCommand(f"{field} must be a list of snowflakes, not {type(values).__name__}")
    return [validate_snowflake(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _require_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidCommand(f"{field} must be a bool, not {value!r}")
    return value


def _check_size(op: Opcode, data: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json_dumps({"op": int(op), "d": data}))
    except (TypeError, ValueError) as exc:  # e.g. a lone surrogate is not UTF-8
        raise InvalidCommand(f"{op.name} payload cannot be encoded: {exc}") from exc
    if size > MAX_SEND_SIZE:
        # protocol 42: Discord closes with 4002 on a sent payload over 4096 bytes.
        raise InvalidCommand(
            f"{op.name} payload is {size} bytes of JSON; Discord accepts at most "
            f"{MAX_SEND_SIZE} and closes the connection (4002) on a bigger one: send less"
        )
    return data


# -- IDENTIFY (op 2) -----------------------------------------------------------


def default_properties() -> dict[str, str]:
    """The connection properties sent when none are given (protocol 17)."""
    return {"os": sys.platform, "browser": "discord-gateway", "device": "discord-gateway"}


def _properties(properties: Mapping[str, object] | None) -> dict[str, str]:
    result = default_properties()
    if properties is None:
        return result
    if not isinstance(properties, Mapping):
        raise InvalidCommand(f"properties must be a mapping, not {type(properties).__name__}")
    given: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidCommand(f"properties must map str to str, not {key!r}: {value!r}")
        name = _DEPRECATED_PROPERTIES.get(key, key)
        if name != key:
            # protocol 17: "$os"-style keys are deprecated.
            warnings.warn(
                f"identify property {key!r} is deprecated, use {name!r}",
                DeprecationWarning,
                stacklevel=3,  # the caller of identify_data
            )
        if name in given:
            raise InvalidCommand(f"properties gives '{name}' twice (as '{name}' and '${name}')")
        given[name] = value
    result.update(given)
    return result


def identify_data(
    *,
    token: str,
    intents: int,
    properties: Mapping[str, str] | None = None,
    compress: bool | None = None,
    large_threshold: int | None = None,
    shard: tuple[int, int] | list[int] | None = None,
    presence: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``d`` of IDENTIFY (op 2, protocol 17-19).

    ``properties`` defaults to :func:`default_properties`; keys that are left
    out fall back to it, and the deprecated ``$os``/``$browser``/``$device``
    are renamed with a :class:`DeprecationWarning`. ``presence`` is a mapping
    of :func:`presence_data`'s keyword arguments (``since``, ``activities``,
    ``status``, ``afk``), validated the same way. Optional fields left as
    None are omitted.
    """
    if not isinstance(token, str) or not token.strip():
        raise InvalidCommand("token must be a non-empty str: your bot's token")
    if not _is_int(intents):
        raise InvalidCommand(
            f"intents must be an int or Intents flags, not {type(intents).__name__}"
        )
    # protocol 19: Discord closes with 4013 on bits it does not know.
    if not 0 <= intents < INTENTS_LIMIT:
        raise InvalidCommand(_intents_problem(intents))
    data: dict[str, Any] = {
        "token": token,
        "properties": _properties(properties),
    }
    if compress is not None:
        # protocol 36: per-packet zlib; the connection must refuse it together
        # with transport compression.
        data["compress"] = _require_bool(compress, "compress")
    if large_threshold is not None:
        if not _is_int(large_threshold) or large_threshold not in _LARGE_THRESHOLD:
            raise InvalidCommand(
                f"large_threshold must be an int between 50 and 250, not {large_threshold!r}"
            )
        data["large_threshold"] = large_threshold
    if shard is not None:
        data["shard"] = _shard(shard)
    if presence is not None:
        if not isinstance(presence, Mapping):
            raise InvalidCommand(f"presence must be a mapping, not {type(presence).__name__}")
        unknown = set(presence) - {"since", "activities", "status", "afk"}
        if unknown:
            raise InvalidCommand(
                f"presence has unknown keys {sorted(map(str, unknown))}; "
                "allowed: since, activities, status, afk"
            )
        data["presence"] = presence_data(**presence)
    data["intents"] = int(intents)  # a plain int on the wire, whatever the flag type
    return _check_size(Opcode.IDENTIFY, data)


def _shard(shard: object) -> list[int]:
    if isinstance(shard, (str, bytes, Mapping)) or not isinstance(shard, (tuple, list)):
        raise InvalidCommand(f"shard must be a (shard_id, num_shards) pair, not {shard!r}")
    if len(shard) != 2 or not all(_is_int(v) for v in shard):
        raise InvalidCommand(f"shard must be a pair of ints (shard_id, num_shards), not {shard!r}")
    shard_id, num_shards = shard
    if not 0 <= shard_id < num_shards:
        raise InvalidCommand(f"shard must satisfy 0 <= shard_id < num_shards, not {list(shard)!r}")
    return [shard_id, num_shards]


# -- PRESENCE_UPDATE (op 3) ----------------------------------------------------


def _activity(activity: object, index: int) -> dict[str, Any]:
    where = f"activities[{index}]"
    if isinstance(activity, Activity):
        activity = activity.to_dict()
    if not isinstance(activity, Mapping):
        raise InvalidCommand(f"{where} must be a mapping, not {type(activity).__name__}")
    unknown = [k for k in activity if k not in ACTIVITY_KEYS]
    if unknown:
        raise InvalidCommand(
            f"{where} has keys {unknown!r}: bots may only set name, state, type and url"
        )
    name = activity.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidCommand(f"{where}.name must be a non-empty str, not {name!r}")
    kind = activity.get("type")
    if not _is_int(kind) or kind not in _ACTIVITY_TYPES:
        raise InvalidCommand(f"{where}.type must be an activity type int 0..6, not {kind!r}")
    assert isinstance(kind, int)
    result: dict[str, Any] = {"name": name, "type": int(kind)}  # an ActivityType sent as int
    for key in ("state", "url"):
        if key not in activity:
            continue
        value = activity[key]
        if value is not None and not isinstance(value, str):
            raise InvalidCommand(f"{where}.{key} must be a str or None, not {value!r}")
        result[key] = value
    url = result.get("url")
    if kind == _STREAMING and url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname not in _STREAMING_HOSTS:
            raise InvalidCommand(
                f"{where}.url must be a Twitch or YouTube URL for a streaming activity, not {url!r}"
            )
    return result


def presence_data(
    *,
    activities: Iterable[Activity | Mapping[str, Any]] = (),
    status: Status | str = "online",
    afk: bool = False,
    since: int | None = None,
) -> dict[str, Any]:
    """The ``d`` of PRESENCE_UPDATE (op 3, protocol 51), also IDENTIFY's ``presence``.

    ``since`` is the Unix time in milliseconds the client went idle, or None.
    Each activity is an :class:`~discord_gateway.Activity` or a mapping with
    ``name`` (str) and ``type`` (an :class:`~discord_gateway.ActivityType` or
    int 0..6) and optionally ``state`` and ``url``; a streaming (type 1) URL
    must be Twitch or YouTube. ``status`` is a :class:`~discord_gateway.Status`
    or its string.
    """
    if since is not None and (not _is_int(since) or since < 0):
        raise InvalidCommand(f"since must be None or a Unix time in ms (int >= 0), not {since!r}")
    if isinstance(activities, (str, bytes, Mapping)) or not isinstance(activities, Iterable):
        raise InvalidCommand(
            f"activities must be a list of activity mappings, not {type(activities).__name__}"
        )
    built = [_activity(a, i) for i, a in enumerate(activities)]
    if status not in PRESENCE_STATUSES:
        raise InvalidCommand(f"status must be one of {sorted(PRESENCE_STATUSES)}, not {status!r}")
    data = {
        "since": since,
        "activities": built,
        "status": status.value if isinstance(status, Status) else status,
        "afk": _require_bool(afk, "afk"),
    }
    return _check_size(Opcode.PRESENCE_UPDATE, data)


# -- VOICE_STATE_UPDATE (op 4) -------------------------------------------------


def voice_state_data(
    guild_id: Snowflake,
    channel_id: Snowflake | None,
    *,
    self_mute: bool = False,
    self_deaf: bool = False,
) -> dict[str, Any]:
    """The ``d`` of VOICE_STATE_UPDATE (op 4, protocol 50): all four keys, always.

    ``channel_id=None`` disconnects from voice.
    """
    return {
        "guild_id": validate_snowflake(guild_id, "guild_id"),
        "channel_id": None if channel_id is None else validate_snowflake(channel_id, "channel_id"),
        "self_mute": _require_bool(self_mute, "self_mute"),
        "self_deaf": _require_bool(self_deaf, "self_deaf"),
    }


# -- REQUEST_GUILD_MEMBERS (op 8) ----------------------------------------------


def request_guild_members_data(
    guild_id: Snowflake,
    *,
    query: str | None = None,
    limit: int | None = None,
    presences: bool | None = None,
    user_ids: Snowflake | Iterable[Snowflake] | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The ``d`` of REQUEST_GUILD_MEMBERS (op 8, protocol 47).

    Give exactly one of ``query`` (a username prefix, with ``limit`` 0..100;
    ``query=""`` with ``limit=0`` asks for every member, which needs the
    GUILD_MEMBERS intent and is allowed once per guild per 30 s, protocol 43) or
    ``user_ids`` (one snowflake or up to 100). ``nonce`` is echoed in the
    GUILD_MEMBERS_CHUNK replies and may be at most 32 bytes of UTF-8.
    """
    data: dict[str, Any] = {"guild_id": validate_snowflake(guild_id, "guild_id")}
    if (query is None) == (user_ids is None):
        raise InvalidCommand("give exactly one of query and user_ids (a username prefix, or ids)")
    if query is not None:
        if not isinstance(query, str):
            raise InvalidCommand(f"query must be a str, not {type(query).__name__}")
        if limit is None:
            raise InvalidCommand(
                "limit is required with query (0 to 100; query='' with limit=0 asks for "
                "every member)"
            )
        data["query"] = query
    if limit is not None:
        if not _is_int(limit) or not 0 <= limit <= _MEMBERS_LIMIT:
            raise InvalidCommand(
                f"limit must be an int between 0 and 100, not {limit!r}: a query returns at "
                "most 100 members; query='' with limit=0 requests all members"
            )
        data["limit"] = limit
    if presences is not None:
        # protocol 47: presences=True needs the GUILD_PRESENCES intent.
        data["presences"] = _require_bool(presences, "presences")
    if user_ids is not None:
        if _is_int(user_ids) or isinstance(user_ids, str):
            ids = [validate_snowflake(user_ids, "user_ids")]
        else:
            ids = _snowflake_list(user_ids, "user_ids")
        if not 1 <= len(ids) <= _MEMBERS_LIMIT:
            raise InvalidCommand(
                f"user_ids must hold 1 to 100 snowflakes, not {len(ids)}: split the request"
            )
        data["user_ids"] = ids
    if nonce is not None:
        if not isinstance(nonce, str):
            raise InvalidCommand(f"nonce must be a str, not {type(nonce).__name__}")
        size = len(nonce.encode("utf-8", "surrogatepass"))
        if size > _NONCE_MAX_BYTES:
            # Discord silently drops a nonce over 32 bytes: the reply could
            # then never be matched, so refuse it (protocol 47).
            raise InvalidCommand(
                f"nonce must be at most 32 bytes of UTF-8, not {size} bytes: Discord would drop it"
            )
        data["nonce"] = nonce
    return _check_size(Opcode.REQUEST_GUILD_MEMBERS, data)


# -- REQUEST_SOUNDBOARD_SOUNDS (op 31) and REQUEST_CHANNEL_INFO (op 43) -------


def request_soundboard_sounds_data(guild_ids: Iterable[Snowflake]) -> dict[str, Any]:
    """The ``d`` of REQUEST_SOUNDBOARD_SOUNDS (op 31, protocol 48): at least one guild."""
    ids = _snowflake_list(guild_ids, "guild_ids")
    if not ids:
        raise InvalidCommand("guild_ids must hold at least one guild id")
    return _check_size(Opcode.REQUEST_SOUNDBOARD_SOUNDS, {"guild_ids": ids})


def request_channel_info_data(
    guild_id: Snowflake, fields: Iterable[str] = CHANNEL_INFO_FIELDS
) -> dict[str, Any]:
    """The ``d`` of REQUEST_CHANNEL_INFO (op 43, protocol 49).

    ``fields`` is a non-empty selection of ``"status"`` and
    ``"voice_start_time"``, each at most once.
    """
    if isinstance(fields, (str, bytes, Mapping)) or not isinstance(fields, Iterable):
        raise InvalidCommand(f"fields must be a list of field names, not {fields!r}")
    names = list(fields)
    bad = [f for f in names if f not in CHANNEL_INFO_FIELDS]
    if bad or not names or len(set(names)) != len(names):
        raise InvalidCommand(
            f"fields must be a non-empty selection of {list(CHANNEL_INFO_FIELDS)} without "
            f"repeats, not {names!r}"
        )
    return {"guild_id": validate_snowflake(guild_id, "guild_id"), "fields": names}
