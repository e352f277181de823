"""Seeded, offline corpus of gateway traffic, encoded as a server would send it.

Two corpora, both starting with HELLO (and READY for ``small``) so a client
can be brought to a steady state before the timed part begins:

* ``small``: realistic small dispatches (MESSAGE_CREATE with author/member,
  PRESENCE_UPDATE, TYPING_START, MESSAGE_REACTION_ADD), 0.3-2 KB of JSON each;
* ``burst``: the startup burst, READY + 40 GUILD_CREATEs of 20 to 2,500
  members (about 10 MB of JSON).

Each corpus is encoded four ways, with ONE server-side compression context per
stream, as Discord does: ``zlib-stream`` (one deflate context, Z_SYNC_FLUSH per
message), ``zstd-stream`` (one zstd context, a block flush per message that
does not end the frame), uncompressed JSON text frames, and ETF binary frames
(atom keys, binary strings, snowflakes as integers - the server's shape).
Frames come from a server-side wsproto connection (unmasked, as a server sends).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from typing import Any

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from benchmarks._harness import Stream

__all__ = (
    "ENCODINGS",
    "build_streams",
    "burst_messages",
    "encode",
    "guild_create",
    "small_messages",
)

#: (encoding, transport compression) pairs, named as in the result tables.
ENCODINGS: dict[str, tuple[str, str | None]] = {
    "zlib-stream": ("json", "zlib-stream"),
    "zstd-stream": ("json", "zstd-stream"),
    "json": ("json", None),
    "etf": ("etf", None),
}

Payload = dict[str, Any]

_WORDS = tuple(
    " ".join(
        (
            "the quick brown fox jumps over lazy dog gateway shard heartbeat resume",
            "guild channel message reaction presence typing voice thread emoji sticker",
            "role member permission invite webhook embed attachment lol ok yes no maybe",
            "tomorrow tonight game ranked queue patch notes server boost nitro",
        )
    ).split(" ")
)
_EMOJIS = ("🔥", "👍", "😂", "❤️", "🎉", "👀", "✅", "😭")
_STATUSES = ("online", "idle", "dnd", "offline")


class _Gen:
    """Random but plausible Discord objects, all from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.t = 1_700_000_000_000  # ms, advances per snowflake

    def snowflake(self) -> str:
        self.t += self.rng.randrange(1, 5000)
        return str(((self.t - 1_420_070_400_000) << 22) | self.rng.randrange(1 << 22))

    def text(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(lo, hi)))

    def timestamp(self) -> str:
        r = self.rng
        return (
            f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randrange(10**6):06d}+00:00"
        )

    def avatar(self) -> str | None:
        return None if self.rng.random() < 0.2 else f"{self.rng.getrandbits(128):032x}"

    def user(self) -> Payload:
        r = self.rng
        name = self.text(1, 2).replace(" ", "_")[:24]
        return {
            "username": name,
            "public_flags": r.choice((0, 0, 64, 128, 256)),
            "id": self.snowflake(),
            "global_name": None if r.random() < 0.3 else name.title(),
            "discriminator": "0",
            "avatar_decoration_data": None,
            "avatar": self.avatar(),
            **({"bot": True} if r.random() < 0.05 else {}),
        }

    def member(self, roles: list[str], with_user: bool) -> Payload:
        r = self.rng
        out: Payload = {
            "roles": r.sample(roles, min(len(roles), r.randint(0, 4))),
            "premium_since": None,
            "pending": False,
            "nick": None if r.random() < 0.7 else self.text(1, 2),
            "mute": False,
            "joined_at": self.timestamp(),
            "flags": 0,
            "deaf": False,
            "communication_disabled_until": None,
            "avatar": None,
        }
        if with_user:
            out["user"] = self.user()
        return out

    def activity(self) -> Payload:
        r = self.rng
        act: Payload = {
            "type": r.choice((0, 2, 4)),
            "name": self.text(1, 3),
            "id": f"{r.getrandbits(64):016x}",
            "created_at": self.t,
        }
        if r.random() < 0.5:
            act["timestamps"] = {"start": self.t - r.randrange(10**7)}
            act["application_id"] = self.snowflake()
            act["details"] = self.text(2, 5)
            act["state"] = self.text(1, 4)
        return act

    def presence(self, guild_id: str | None, user_id: str | None = None) -> Payload:
        r = self.rng
        status = r.choice(_STATUSES[:3])
        out: Payload = {
            "user": {"id": user_id or self.snowflake()},
            "status": status,
            "client_status": {r.choice(("desktop", "mobile", "web")): status},
            "activities": [self.activity() for _ in range(r.choice((1, 1, 1, 2)))],
            "broadcast": None,
        }
        if guild_id is not None:
            out["guild_id"] = guild_id
        return out


# -- small dispatches -------------------------------------------------------


def _message_create(g: _Gen, guild_id: str, channel_id: str, roles: list[str]) -> Payload:
    r = g.rng
    author = g.user()
    mentions = [g.user() for _ in range(r.choice((0, 0, 0, 0, 1)))]
    for m in mentions:
        m["member"] = g.member(roles, with_user=False)
    data: Payload = {
        "type": 0,
        "tts": False,
        "timestamp": g.timestamp(),
        "referenced_message": None,
        "pinned": False,
        "nonce": str(r.getrandbits(60)),
        "mentions": mentions,
        "mention_roles": [],
        "mention_everyone": False,
        "member": g.member(roles, with_user=False),
        "id": g.snowflake(),
        "flags": 0,
        "embeds": [],
        "edited_timestamp": None,
        "content": g.text(1, 30),
        "components": [],
        "channel_id": channel_id,
        "author": author,
        "attachments": [],
        "guild_id": guild_id,
    }
    if r.random() < 0.15:
        data["embeds"] = [
            {
                "type": "rich",
                "title": g.text(2, 6),
                "description": g.text(5, 30),
                "color": r.randrange(1 << 24),
                "url": f"https://example.com/{r.getrandbits(40):x}",
            }
        ]
    return data


def _typing_start(g: _Gen, guild_id: str, channel_id: str, roles: list[str]) -> Payload:
    member = g.member(roles, with_user=True)
    return {
        "user_id": member["user"]["id"],
        "timestamp": g.t // 1000,
        "member": member,
        "channel_id": channel_id,
        "guild_id": guild_id,
    }


def _reaction_add(g: _Gen, guild_id: str, channel_id: str, roles: list[str]) -> Payload:
    r = g.rng
    member = g.member(roles, with_user=True)
    return {
        "user_id": member["user"]["id"],
        "type": 0,
        "message_id": g.snowflake(),
        "message_author_id": g.snowflake(),
        "member": member,
        "emoji": {"name": r.choice(_EMOJIS), "id": None},
        "channel_id": channel_id,
        "burst": False,
        "guild_id": guild_id,
    }


def _presence_update(g: _Gen, guild_id: str, channel_id: str, roles: list[str]) -> Payload:
    return g.presence(guild_id)


_SMALL_KINDS = (
    ("MESSAGE_CREATE", _message_create, 40),
    ("PRESENCE_UPDATE", _presence_update, 25),
    ("TYPING_START", _typing_start, 20),
    ("MESSAGE_REACTION_ADD", _reaction_add, 15),
)


def hello() -> Payload:
    return {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 41250}}


def ready(g: _Gen, guild_ids: list[str], seq: int) -> Payload:
    user = g.user()
    user.update({"verified": True, "mfa_enabled": True, "bot": True, "flags": 0, "email": None})
    return {
        "t": "READY",
        "s": seq,
        "op": 0,
        "d": {
            "v": 10,
            "user_settings": {},
            "user": user,
            "shard": [0, 1],
            "session_type": "normal",
            "session_id": f"{g.rng.getrandbits(128):032x}",
            "resume_gateway_url": "wss://gateway-us-east1-c.discord.gg",
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"unavailable": True, "id": gid} for gid in guild_ids],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["frankfurt", "milan", "paris", "rotterdam", "london"],
            "auth": {},
            "application": {"id": user["id"], "flags": 41975808},
            "_trace": ['["gateway-prd-arm-us-east1-c-rzdj",{"micros":111772,"calls":[]}]'],
        },
    }


def small_messages(n: int, seed: int = 7) -> list[Payload]:
    """HELLO, READY, then ``n`` small dispatches (s = 2 .. n + 1)."""
    g = _Gen(seed)
    guilds = [g.snowflake() for _ in range(5)]
    channels = {gid: [g.snowflake() for _ in range(8)] for gid in guilds}
    roles = {gid: [g.snowflake() for _ in range(12)] for gid in guilds}
    out = [hello(), ready(g, guilds, 1)]
    names = [k[0] for k in _SMALL_KINDS]
    makers = {k[0]: k[1] for k in _SMALL_KINDS}
    weights = [k[2] for k in _SMALL_KINDS]
    for seq in range(2, n + 2):
        name = g.rng.choices(names, weights)[0]
        gid = g.rng.choice(guilds)
        data = makers[name](g, gid, g.rng.choice(channels[gid]), roles[gid])
        out.append({"t": name, "s": seq, "op": 0, "d": data})
    return out


# -- startup burst ----------------------------------------------------------


def guild_create(g: _Gen, gid: str, n_members: int, seq: int) -> Payload:
    r = g.rng
    roles = [
        {
            "version": g.t,
            "unicode_emoji": None,
            "tags": {},
            "position": i,
            "permissions": str(r.getrandbits(40)),
            "name": "@everyone" if i == 0 else g.text(1, 2),
            "mentionable": False,
            "managed": False,
            "id": gid if i == 0 else g.snowflake(),
            "icon": None,
            "hoist": r.random() < 0.3,
            "flags": 0,
            "color": r.randrange(1 << 24),
        }
        for i in range(min(250, 5 + n_members // 40))
    ]
    role_ids = [ro["id"] for ro in roles[1:]] or [gid]
    channels = [
        {
            "version": g.t,
            "type": r.choice((0, 0, 0, 2, 4)),
            "topic": g.text(0, 12) or None,
            "rate_limit_per_user": 0,
            "position": i,
            "permission_overwrites": [
                {"type": 0, "id": r.choice(role_ids), "deny": "0", "allow": "1024"}
                for _ in range(r.randint(0, 3))
            ],
            "parent_id": None,
            "nsfw": False,
            "name": g.text(1, 2).replace(" ", "-"),
            "last_message_id": g.snowflake(),
            "id": g.snowflake(),
            "flags": 0,
        }
        for i in range(min(200, 8 + n_members // 25))
    ]
    members = []
    presences = []
    for _ in range(n_members):
        m = g.member(role_ids, with_user=True)
        members.append(m)
        if r.random() < 0.2:
            presences.append(g.presence(None, m["user"]["id"]))
    return {
        "t": "GUILD_CREATE",
        "s": seq,
        "op": 0,
        "d": {
            "id": gid,
            "name": g.text(1, 4),
            "description": None,
            "icon": g.avatar(),
            "splash": None,
            "owner_id": members[0]["user"]["id"],
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "features": ["COMMUNITY", "NEWS"] if n_members > 500 else [],
            "mfa_level": 0,
            "system_channel_id": channels[0]["id"],
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "max_members": 500000,
            "joined_at": g.timestamp(),
            "large": n_members > 250,
            "unavailable": False,
            "member_count": n_members,
            "lazy": True,
            "roles": roles,
            "emojis": [
                {
                    "name": g.text(1, 1),
                    "id": g.snowflake(),
                    "roles": [],
                    "require_colons": True,
                    "managed": False,
                    "animated": r.random() < 0.2,
                    "available": True,
                }
                for _ in range(min(100, n_members // 20))
            ],
            "stickers": [],
            "channels": channels,
            "threads": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "members": members,
            "presences": presences,
        },
    }


def burst_member_counts(n_guilds: int = 40, lo: int = 20, hi: int = 2500) -> list[int]:
    """Geometrically spread member counts from ``lo`` to ``hi``."""
    if n_guilds == 1:
        return [hi]
    ratio = (hi / lo) ** (1 / (n_guilds - 1))
    return [round(lo * ratio**i) for i in range(n_guilds)]


def burst_messages(seed: int = 11, n_guilds: int = 40, hi: int = 2500) -> list[Payload]:
    """HELLO, READY (s=1), then one GUILD_CREATE per guild (s = 2 ..)."""
    g = _Gen(seed)
    counts = burst_member_counts(n_guilds, min(20, hi), hi)
    gids = [g.snowflake() for _ in counts]
    out = [hello(), ready(g, gids, 1)]
    for i, (gid, n) in enumerate(zip(gids, counts, strict=True)):
        out.append(guild_create(g, gid, n, i + 2))
    return out


def big_message(target_bytes: int, seed: int = 13) -> Payload:
    """One GUILD_CREATE of about ``target_bytes`` of JSON (for the scaling test)."""
    g = _Gen(seed)
    n = max(1, target_bytes // 640)  # ~640 bytes of JSON per member (+presence)
    msg = guild_create(g, g.snowflake(), n, 2)
    return msg


# -- server-side encoding ---------------------------------------------------


def _server() -> WSConnection:
    """A server-side wsproto connection past the handshake (no extensions)."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="gateway.discord.gg", target="/?v=10")))
    for _ in server.events():
        pass
    server.send(AcceptConnection())
    return server


def _to_etf_term(obj: Any, key: str = "") -> Any:
    """The server's ETF shape: atom keys, binary strings, snowflakes as integers."""
    import erlpack

    if isinstance(obj, dict):
        return {erlpack.Atom(k): _to_etf_term(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_etf_term(v, key) for v in obj]
    if isinstance(obj, str) and obj.isdigit() and (key == "id" or key.endswith("_id")):
        return int(obj)
    return obj


def encode(messages: Iterable[Payload], name: str, fmt: str, prelude: int) -> Stream:
    """Encode ``messages`` as the server's byte stream in format ``fmt`` (see ENCODINGS)."""
    encoding, compress = ENCODINGS[fmt]
    server = _server()
    frames: list[bytes] = []
    payloads: list[bytes] = []
    raw_sizes: list[int] = []
    deflate = zlib.compressobj() if compress == "zlib-stream" else None
    zstd_obj: Any = None
    zstd_flush = 0
    if compress == "zstd-stream":
        import zstandard

        zstd_obj = zstandard.ZstdCompressor().compressobj()
        zstd_flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    for msg in messages:
        raw = orjson.dumps(msg)
        raw_sizes.append(len(raw))
        if encoding == "etf":
            import erlpack

            body: bytes = erlpack.pack(_to_etf_term(msg))
        else:
            body = raw
        if deflate is not None:
            body = deflate.compress(body) + deflate.flush(zlib.Z_SYNC_FLUSH)
        elif zstd_obj is not None:
            body = zstd_obj.compress(body) + zstd_obj.flush(zstd_flush)
        payloads.append(body)
        if encoding == "json" and compress is None:
            frames.append(server.send(TextMessage(body.decode())))
        else:
            frames.append(server.send(BytesMessage(body)))
    return Stream(
        name=name,
        encoding=encoding,
        compress=compress,
        wire=b"".join(frames),
        frame_lens=[len(f) for f in frames],
        payloads=payloads,
        raw_sizes=raw_sizes,
        prelude=prelude,
    )


def build_streams(
    corpus: str, fmts: Iterable[str] = tuple(ENCODINGS), *, quick: bool = False, seed: int = 0
) -> list[Stream]:
    """All encodings of one corpus (``small`` or ``burst``); ``quick`` makes it tiny."""
    if corpus == "small":
        msgs = small_messages(300 if quick else 20_000, seed=7 + seed)
        prelude = 2  # HELLO + READY untimed
    elif corpus == "burst":
        msgs = burst_messages(11 + seed, n_guilds=6 if quick else 40, hi=150 if quick else 2500)
        prelude = 1  # HELLO untimed; READY + GUILD_CREATEs timed
    else:
        raise ValueError(f"unknown corpus {corpus!r}")
    return [encode(msgs, f"{corpus}/{fmt}", fmt, prelude) for fmt in fmts]
