"""``python -m discord_gateway demo`` and ``connect``: the first thing people run.

``demo`` starts the local gateway on loopback, connects the asyncio adapter to
it and narrates the lifecycle for someone new to the gateway: an opening
paragraph and a legend, then every step with the cause printed before its
effect (the gateway's message, then the state change it caused), a forced
RECONNECT and its resume, a dropped TCP connection whose missed events are
replayed, and a summary computed from what both sides saw. ``connect`` does
the same against the real Discord gateway when ``DISCORD_TOKEN`` is set.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .adapters.asyncio import Shard
from .errors import GatewayError
from .events import (
    Disconnected,
    Dispatch,
    Event,
    HeartbeatAck,
    Hello,
    InvalidSession,
    Ready,
    Reconnect,
    Resumed,
)
from .intents import Intents
from .sharding import GatewayBotInfo

if TYPE_CHECKING:
    from .testing import LocalGateway

__all__ = ("DemoSummary", "brief_json", "get_gateway_bot", "run_connect", "run_demo")

DISCORD_API = "https://discord.com/api/v10"
#: GUILDS | GUILD_MESSAGES: enough to see events without privileged intents.
DEFAULT_INTENTS = int(Intents.GUILDS | Intents.GUILD_MESSAGES)

INTRODUCTION = """\
discord-gateway demo: a bot and a Discord-like gateway, both on this machine.

A bot keeps one WebSocket open to Discord's gateway. The gateway greets it with
HELLO; the bot answers IDENTIFY and gets READY, which starts a session. Events
then arrive numbered (s=1, 2, 3, ...) and the bot sends heartbeats to show it
is alive. Connections break - the gateway asks for a reconnect, or TCP simply
drops - and the bot then RESUMEs its session on a new connection: the gateway
replays every event it missed, so none is lost. Below, the local gateway
forces both kinds of break, and every step is shown as it happens.

Legend:
  server     what the local gateway did        client    what the library did
  state      the library's lifecycle state changed (from -> to)
  HELLO, READY, RESUMED, dispatch ...   a message from the gateway to the bot
  s=N        an event's sequence number; RESUME asks for everything after it
  op 7       RECONNECT: the gateway asks the bot to reconnect and resume
  4000       the close code the bot closes with to keep its session resumable
             (1000 would end the session)
  1006       the connection was lost without a close frame
  lost       a connection ended: its close code, why, and what happens next
  (replayed) sent while the bot was disconnected, delivered after RESUME
"""


def brief_json(data: Any, limit: int = 60) -> str:
    """``data`` as JSON of at most about ``limit`` characters, elided cleanly.

    Never cut inside a string or a number: a value too long for the room left
    becomes ``"..."``, ``{...}`` or ``[...]``, and keys that do not fit become
    a final ``...``, so what is shown is always well-formed to the eye.
    """
    text = json.dumps(data, ensure_ascii=False)
    if len(text) <= limit:
        return text
    if not isinstance(data, dict):
        return _elided(data)
    parts: list[str] = []
    used = 2
    for key, value in data.items():
        item = f"{json.dumps(str(key))}: {json.dumps(value, ensure_ascii=False)}"
        if used + len(item) > limit - 5:
            item = f"{json.dumps(str(key))}: {_elided(value)}"
        if used + len(item) > limit - 5:
            parts.append("...")
            break
        parts.append(item)
        used += len(item) + 2
    return "{" + ", ".join(parts) + "}"


def _elided(value: Any) -> str:
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    if isinstance(value, str):
        return '"..."'
    return "..."


@dataclass
class DemoSummary:
    """What the demo counted: the final summary line is built from these."""

    #: Events the bot's code received (READY, RESUMED and dispatches).
    delivered: int = 0
    #: Connections lost and reopened (one ``Disconnected`` each).
    reconnects: int = 0
    #: Sessions resumed (RESUMED received).
    resumes: int = 0
    #: Sequence numbers the gateway sent in the session that the bot never got.
    lost: int = 0

    def line(self) -> str:
        return (
            f"summary: {self.delivered} events delivered, {self.reconnects} reconnects, "
            f"{self.resumes} resumes, lost: {self.lost}"
        )


class _Narrator(logging.Handler):
    """Prints log lines and events with a clock, each cause before its effect.

    The library logs a state change while it handles the message that caused
    it, before that message is handed on as an event: the client's log lines
    wait here until the events of the same step are printed (or, if the step
    had none, until the event loop next runs).
    """

    def __init__(self, out: TextIO, started: float) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.started = started
        self._held: list[tuple[str, str]] = []
        self._flush_scheduled = False
        self.summary = DemoSummary()
        self.seqs: set[int] = set()

    def line(self, kind: str, text: str) -> None:
        self.flush()
        self._write(kind, text)

    def _write(self, kind: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.out.write(f"{elapsed:7.3f}s  {kind:<9} {text}".rstrip() + "\n")
        self.out.flush()

    def flush(self) -> None:
        held, self._held = self._held, []
        for kind, text in held:
            self._write(kind, text)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith("discord_gateway.testing"):
            self.line("server", message)
            return
        if message.startswith("lost the connection to the gateway"):
            return  # the Disconnected event says it, in its place
        kind = "state" if message.startswith("gateway state ") else "client"
        self._held.append((kind, message.removeprefix("gateway state ")))
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_scheduled = True
            loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def events(self, events: list[tuple[Event, bool]]) -> None:
        """Print one step's events (each with whether it is a replay), then its log lines."""
        for event, replaying in events:
            kind, text = _describe(event, replaying)
            self._write(kind, text)
            if isinstance(event, (Ready, Resumed, Dispatch)):
                self.summary.delivered += 1
                if event.seq is not None:
                    self.seqs.add(event.seq)
            if isinstance(event, Resumed):
                self.summary.resumes += 1
            elif isinstance(event, Disconnected):
                self.summary.reconnects += 1
        self.flush()


def _describe(event: Event, replaying: bool) -> tuple[str, str]:
    if isinstance(event, Hello):
        return "HELLO", f"the gateway says hello: heartbeat every {event.heartbeat_interval:.2f} s"
    if isinstance(event, Ready):
        return (
            "READY",
            f"s={event.seq} session {event.session_id[:8]}... started; "
            f"resume URL {event.resume_gateway_url}",
        )
    if isinstance(event, Resumed):
        return "RESUMED", f"s={event.seq} session resumed: every missed event came before this"
    if isinstance(event, HeartbeatAck):
        latency = "?" if event.latency is None else f"{event.latency * 1000:.2f} ms"
        return "heartbeat", f"ACK, latency {latency}"
    if isinstance(event, Reconnect):
        return "RECONNECT", "op 7: the gateway asks us to reconnect; closing with 4000 to resume"
    if isinstance(event, InvalidSession):
        return "INVALID", f"op 9: invalid session, resumable={event.resumable}"
    if isinstance(event, Disconnected):
        code = "no connection" if event.code is None else str(event.code)
        then = "resuming the session" if event.resumable else "identifying anew"
        return (
            "lost",
            f"{code} ({event.reason}); {then} in {event.delay:.2f} s (attempt {event.attempt})",
        )
    if isinstance(event, Dispatch):
        tag = " (replayed)" if replaying else ""
        return "dispatch", f"{event.name} s={event.seq} {brief_json(event.data)}{tag}"
    return type(event).__name__, ""


class _NarratedShard(Shard):
    """A Shard whose events are narrated when they are produced, in order with the logs."""

    narrator: _Narrator

    def _deliver(self, events: list[Event]) -> None:
        shown: list[tuple[Event, bool]] = []
        for event in events:
            if isinstance(event, Hello):
                self._replaying = self._seen_ready and self.connection.should_resume
            elif isinstance(event, Ready):
                self._seen_ready = True
            elif isinstance(event, Resumed):
                self._replaying = False
            shown.append((event, self._replaying and isinstance(event, Dispatch)))
        self.narrator.events(shown)
        super()._deliver(events)

    _replaying = False
    _seen_ready = False


async def _drain(shard: Shard) -> None:
    async for _ in shard:
        pass


def _lost(gateway: LocalGateway, narrator: _Narrator) -> int:
    """Sequence numbers the gateway sent (once or more) that never reached the bot."""
    sent = {
        payload["s"]
        for connection in gateway.connections
        for payload in connection.sent
        if payload.get("op") == 0 and payload.get("s") is not None
    }
    return len(sent - narrator.seqs)


async def _demo(out: TextIO, seconds: float) -> DemoSummary:
    from .testing import ResetConnection, SendReconnect, ServerConfig, serve

    out.write(INTRODUCTION + "\n")
    started = time.monotonic()
    narrator = _Narrator(out, started)
    logger = logging.getLogger("discord_gateway")
    logger.addHandler(narrator)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with serve(ServerConfig(heartbeat_interval=1.0), seed="demo") as gateway:
            shard = _NarratedShard(
                gateway.token,
                # the demo's messages have no guild: DMs, which need DIRECT_MESSAGES
                intents=DEFAULT_INTENTS | Intents.DIRECT_MESSAGES,
                url=gateway.url,
                dispatch_handled=True,
                close_timeout=1.0,
            )
            shard.narrator = narrator
            async with shard:
                consumer = asyncio.create_task(_drain(shard))
                await shard.wait_ready()
                for i in range(3):
                    await asyncio.sleep(0.3)
                    gateway.dispatch("MESSAGE_CREATE", {"content": f"hello #{i + 1}"})
                await asyncio.sleep(0.5)
                narrator.line("demo", "the gateway sends op 7 RECONNECT")
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
                narrator.line("demo", "closing with 1000, which ends the session")
            await asyncio.wait_for(consumer, 5)
            narrator.flush()
            narrator.summary.lost = _lost(gateway, narrator)
        summary = narrator.summary
        narrator.line("demo", summary.line())
        narrator.line("demo", "finished: the session is over and the bot has stopped")
        return summary
    finally:
        logger.removeHandler(narrator)
        logger.setLevel(level)


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
    """``GET /gateway/bot`` with the stdlib HTTP client (protocol 46)."""
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
    limit = info.session_start_limit
    narrator.line(
        "client",
        f"{info.url}: {info.shards} shard(s) recommended, "
        f"{limit.remaining}/{limit.total} identifies left today",
    )
    try:
        shard = _NarratedShard(token, intents=intents, url=info.url, dispatch_handled=True)
        shard.narrator = narrator
        async with shard:
            task = asyncio.create_task(_drain(shard))
            try:
                await asyncio.wait_for(asyncio.shield(task), seconds)
            except asyncio.TimeoutError:
                task.cancel()  # --seconds passed: stop listening, close with 1000
    finally:
        narrator.flush()
        logger.removeHandler(narrator)


def run_connect(
    *, intents: int = DEFAULT_INTENTS, seconds: float | None = None, api_base: str = DISCORD_API
) -> int:
    """Connect to the real gateway with ``DISCORD_TOKEN``; explain what is missing otherwise."""
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        print(
            "connect needs a bot token: set DISCORD_TOKEN (Discord Developer Portal > your "
            "app > Bot > Reset Token), or run `python -m discord_gateway demo` to try "
            "everything offline",
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
    except GatewayError as exc:  # a fatal close (bad token, disallowed intents, ...) or bad options
        print(f"connect: {exc}", file=sys.stderr)
        return 1
    return 0
