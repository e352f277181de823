"""``python -m discord_gateway demo`` and ``connect``: the first thing people run.

``demo`` starts the local gateway on loopback, connects the asyncio adapter to
it and narrates the lifecycle: state changes, heartbeats with their latency, a
forced RECONNECT and its resume, a dropped TCP connection whose missed events
are replayed. ``connect`` does the same against the real Discord gateway when
``DISCORD_TOKEN`` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

from .adapters.asyncio import Shard
from .events import Dispatch, Event, HeartbeatAck, Hello, InvalidSession, Ready, Reconnect, Resumed
from .sharding import GatewayBotInfo

__all__ = ("get_gateway_bot", "run_connect", "run_demo")

DISCORD_API = "https://discord.com/api/v10"
#: GUILDS | GUILD_MESSAGES: enough to see events without privileged intents.
DEFAULT_INTENTS = (1 << 0) | (1 << 9)


class _Narrator(logging.Handler):
    """Prints the core's lifecycle log lines and the events, with a clock."""

    def __init__(self, out: TextIO, started: float) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.started = started

    def line(self, kind: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.out.write(f"{elapsed:7.3f}s  {kind:<9} {text}\n")
        self.out.flush()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("gateway state "):
            self.line("state", message.removeprefix("gateway state "))
        elif record.name.startswith("discord_gateway.testing"):
            self.line("server", message)
        else:
            self.line("client", message)


def _describe(event: Event, replaying: bool) -> tuple[str, str]:
    if isinstance(event, Hello):
        return "HELLO", f"heartbeat every {event.heartbeat_interval:.2f} s"
    if isinstance(event, Ready):
        return "READY", f"session {event.session_id[:8]}..., resume URL {event.resume_gateway_url}"
    if isinstance(event, Resumed):
        return "RESUMED", f"at seq {event.seq}: every missed event was replayed before this"
    if isinstance(event, HeartbeatAck):
        latency = "?" if event.latency is None else f"{event.latency * 1000:.2f} ms"
        return "heartbeat", f"ACK, latency {latency}"
    if isinstance(event, Reconnect):
        return "RECONNECT", "the gateway asked us to reconnect (op 7): closing with 4000 to resume"
    if isinstance(event, InvalidSession):
        return "INVALID", f"invalid session, resumable={event.resumable}"
    if isinstance(event, Dispatch):
        tag = " (replayed)" if replaying else ""
        return "dispatch", f"{event.name} s={event.seq} {json.dumps(event.data)[:60]}{tag}"
    return type(event).__name__, ""


def _quiet_transitions() -> None:
    # transitions logs every trigger at INFO; the narration is ours.
    logging.getLogger("transitions").setLevel(logging.WARNING)


async def _narrate(shard: Shard, narrator: _Narrator, stop_after: float | None = None) -> None:
    replaying = False
    seen_ready = False
    async for event in shard:
        if isinstance(event, Hello):
            replaying = seen_ready and shard.connection.should_resume
        elif isinstance(event, Ready):
            seen_ready = True
        elif isinstance(event, Resumed):
            replaying = False
        kind, text = _describe(event, replaying and not isinstance(event, Hello))
        narrator.line(kind, text)


async def _demo(out: TextIO, seconds: float) -> None:
    from .testing import ResetConnection, SendReconnect, ServerConfig, serve

    started = time.monotonic()
    narrator = _Narrator(out, started)
    logger = logging.getLogger("discord_gateway")
    logger.addHandler(narrator)
    logger.setLevel(logging.INFO)
    _quiet_transitions()
    try:
        async with serve(ServerConfig(heartbeat_interval=1.0), seed="demo") as gateway:
            shard = Shard(
                gateway.token,
                intents=DEFAULT_INTENTS,
                url=gateway.url,
                dispatch_handled=True,
                close_timeout=1.0,
            )
            async with shard:
                consumer = asyncio.create_task(_narrate(shard, narrator))
                await shard.wait_ready()
                for i in range(3):
                    await asyncio.sleep(0.3)
                    gateway.dispatch("MESSAGE_CREATE", {"content": f"hello #{i + 1}"})
                await asyncio.sleep(0.5)
                narrator.line("demo", "the server sends op 7 RECONNECT")
                gateway.inject(SendReconnect())
                await asyncio.sleep(0.5)
                await shard.wait_ready()
                gateway.dispatch("MESSAGE_CREATE", {"content": "after the resume"})
                await asyncio.sleep(0.5)
                narrator.line("demo", "the TCP connection drops; 3 events are sent meanwhile")
                gateway.inject(ResetConnection())
                for i in range(3):
                    gateway.dispatch("MESSAGE_CREATE", {"content": f"missed #{i + 1}"})
                await asyncio.sleep(0.3)
                await shard.wait_ready()
                remaining = seconds - (time.monotonic() - started)
                if remaining > 0:
                    narrator.line("demo", f"idling {remaining:.1f} s: watch the heartbeats")
                    await asyncio.sleep(remaining)
                narrator.line("demo", "closing with 1000 (ends the session)")
            await asyncio.wait_for(consumer, 5)
        narrator.line("demo", "done")
    finally:
        logger.removeHandler(narrator)


def run_demo(seconds: float = 6.0, out: TextIO = sys.stdout) -> int:
    """Run the offline demo; returns the exit status."""
    try:
        asyncio.run(_demo(out, seconds))
    except KeyboardInterrupt:
        out.write("interrupted\n")
    return 0


def get_gateway_bot(
    token: str, api_base: str = DISCORD_API, timeout: float = 10.0
) -> GatewayBotInfo:
    """``GET /gateway/bot`` with the stdlib HTTP client (spec 46)."""
    request = urllib.request.Request(
        f"{api_base.rstrip('/')}/gateway/bot",
        headers={
            "Authorization": f"Bot {token}",
            "User-Agent": "DiscordBot (https://pypi.org/project/discord-gateway, 1.0)",
        },
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload: Any = json.loads(response.read())
    return GatewayBotInfo.from_payload(payload)


async def _connect(token: str, info: GatewayBotInfo, intents: int, seconds: float | None) -> None:
    narrator = _Narrator(sys.stdout, time.monotonic())
    logger = logging.getLogger("discord_gateway")
    logger.addHandler(narrator)
    logger.setLevel(logging.INFO)
    _quiet_transitions()
    limit = info.session_start_limit
    narrator.line(
        "client",
        f"{info.url}: {info.shards} shard(s) recommended, "
        f"{limit.remaining}/{limit.total} identifies left today",
    )
    try:
        async with Shard(token, intents=intents, url=info.url, dispatch_handled=True) as shard:
            task = asyncio.create_task(_narrate(shard, narrator))
            if seconds is None:
                await task
            else:
                await asyncio.wait({task}, timeout=seconds)
    finally:
        logger.removeHandler(narrator)


def run_connect(
    *, intents: int = DEFAULT_INTENTS, seconds: float | None = None, api_base: str = DISCORD_API
) -> int:
    """Connect to the real gateway with ``DISCORD_TOKEN``; explain what is missing otherwise."""
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        print(
            "connect needs a bot token: set DISCORD_TOKEN (Discord Developer Portal -> your "
            "application -> Bot -> Reset Token).\nTo try everything offline instead, run: "
            "python -m discord_gateway demo",
            file=sys.stderr,
        )
        return 2
    if token.lower().startswith("bot "):
        token = token[4:]
    try:
        info = get_gateway_bot(token, api_base)
    except urllib.error.HTTPError as exc:
        hint = " (is DISCORD_TOKEN a valid bot token?)" if exc.code == 401 else ""
        print(f"GET /gateway/bot failed: HTTP {exc.code}{hint}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"GET /gateway/bot failed: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_connect(token, info, intents, seconds))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    return 0
