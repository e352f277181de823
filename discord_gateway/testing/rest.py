"""The REST routes a bot library calls at login and in an ordinary bot's life.

Sans-I/O: :meth:`RestApi.answer` takes one parsed request and returns the
status and JSON body; :mod:`.control` moves the bytes. Routes live on
``/api/v9`` and ``/api/v10`` (and ``/api`` without a version), need
``Authorization: Bot <token>`` like Discord's (``GET /gateway`` does not), and
every request is recorded in :attr:`RestApi.requests` for assertions. Anything
else answers Discord's JSON error shape with 404 and is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..codec import json_loads

if TYPE_CHECKING:
    from .server import SessionStore

__all__ = ("HttpRequest", "RestApi", "RestRequest", "parse_head")

logger = logging.getLogger("discord_gateway.testing")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request head: method, target, headers (names lower-cased)."""

    method: str
    target: str
    headers: Mapping[str, str]

    @property
    def is_upgrade(self) -> bool:
        return self.headers.get("upgrade", "").lower() == "websocket"

    @property
    def content_length(self) -> int:
        value = self.headers.get("content-length", "0")
        return int(value) if value.isdigit() else 0


def parse_head(head: bytes) -> HttpRequest | None:
    """The request in ``head`` (up to the blank line), or None if it is not HTTP."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpRequest(parts[0], parts[1], headers)


@dataclass(frozen=True, slots=True)
class RestRequest:
    """One REST request a bot made: ``route`` is the path after ``/api/v{n}/``."""

    method: str
    route: str
    version: int | None
    headers: Mapping[str, str]
    json: Any = None
    status: int = 0

    @property
    def authorized(self) -> bool:
        return "authorization" in self.headers


def _error(status: int, message: str, code: int = 0) -> tuple[int, Any]:
    return status, {"message": message, "code": code}


_NOT_FOUND = (404, {"message": "404: Not Found", "code": 0})

Handler = Callable[["RestApi", re.Match[str], Any], "tuple[int, Any]"]


@dataclass(eq=False)
class RestApi:
    """Discord's REST API as far as bots need it, over one :class:`SessionStore`."""

    store: SessionStore
    requests: list[RestRequest] = field(default_factory=list)

    def answer(self, request: HttpRequest, body: bytes = b"") -> tuple[int, Any]:
        """Status and JSON body for ``request`` (recorded in :attr:`requests`)."""
        path = urlsplit(request.target).path.rstrip("/")
        match = re.fullmatch(r"/api(?:/v(\d+))?/(.*)", path)
        version = int(match.group(1)) if match and match.group(1) else None
        route = match.group(2) if match else path.lstrip("/")
        payload: Any = None
        if body:
            try:
                payload = json_loads(body)
            except ValueError:
                payload = None
        status, answer = self._route(request, match is not None, version, route, payload)
        self.requests.append(
            RestRequest(request.method, route, version, dict(request.headers), payload, status)
        )
        level = logging.WARNING if status == 404 else logging.INFO
        logger.log(level, "REST %s %s -> %d", request.method, request.target, status)
        return status, answer

    def _route(
        self, request: HttpRequest, is_api: bool, version: int | None, route: str, payload: Any
    ) -> tuple[int, Any]:
        config = self.store.config
        if not is_api or (version is not None and version not in config.versions):
            return _NOT_FOUND
        for method, pattern, handler in _ROUTES:
            found = re.fullmatch(pattern, route)
            if found is None:
                continue
            if request.method != method:
                continue
            if pattern != "gateway" and not self._authorized(request):
                return _error(401, "401: Unauthorized")
            return handler(self, found, payload)
        if any(re.fullmatch(pattern, route) for _, pattern, _ in _ROUTES):
            return _error(405, "405: Method Not Allowed")
        return _NOT_FOUND

    def _authorized(self, request: HttpRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme == "Bot" and token in self.store.config.tokens

    # -- routes ------------------------------------------------------------------------

    def _gateway(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        return 200, {"url": self.store.config.url}

    def _gateway_bot(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        config = self.store.config
        remaining = max(0, config.session_start_limit - self.store.identify_count)
        return 200, {
            "url": config.url,
            "shards": config.recommended_shards,
            "session_start_limit": {
                "total": config.session_start_limit,
                "remaining": remaining,
                "reset_after": 86_400_000,
                "max_concurrency": config.max_concurrency,
            },
        }

    def _me(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        me = dict(self.store.world.bot)
        me.update(verified=True, mfa_enabled=False, email=None, locale="en-US")
        return 200, me

    def _application(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        return 200, self.store.world.application()

    def _channel(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        world = self.store.world
        guild = world.guild_of(match.group(1))
        if guild is None:
            return _error(404, "Unknown Channel", 10003)
        return 200, {**world.channel(match.group(1)), "guild_id": guild.id}

    def _guild(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        world = self.store.world
        if match.group(1) not in world.guilds:
            return _error(404, "Unknown Guild", 10004)
        _, data = world.guild_update(match.group(1))
        count = len(world.guilds[match.group(1)].members)
        return 200, {**data, "approximate_member_count": count}

    def _create_message(self, match: re.Match[str], payload: Any) -> tuple[int, Any]:
        world = self.store.world
        if world.guild_of(match.group(1)) is None:
            return _error(404, "Unknown Channel", 10003)
        if not isinstance(payload, Mapping):
            return _error(400, "Cannot send an empty message", 50006)
        content = payload.get("content") or ""
        embeds = payload.get("embeds") or []
        if not content and not embeds and not payload.get("sticker_ids"):
            return _error(400, "Cannot send an empty message", 50006)
        name, data = world.message(str(content), channel=match.group(1), author=world.bot)
        data["embeds"] = list(embeds)
        data["tts"] = bool(payload.get("tts", False))
        if payload.get("nonce") is not None:
            data["nonce"] = payload["nonce"]
        reference = payload.get("message_reference")
        if isinstance(reference, Mapping) and reference.get("message_id") is not None:
            data["type"] = 19  # REPLY
            referenced = world.messages.get(str(reference["message_id"]))
            data["message_reference"] = {
                "type": 0,
                "message_id": str(reference["message_id"]),
                "channel_id": data["channel_id"],
                "guild_id": data.get("guild_id"),
            }
            data["referenced_message"] = referenced
        # Discord sends the bot's own message to its sessions too.
        self.store.dispatch(name, data)
        return 200, data


_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "gateway", RestApi._gateway),
    ("GET", "gateway/bot", RestApi._gateway_bot),
    ("GET", "users/@me", RestApi._me),
    ("GET", "oauth2/applications/@me", RestApi._application),
    ("GET", "applications/@me", RestApi._application),
    ("GET", r"channels/(\d+)", RestApi._channel),
    ("POST", r"channels/(\d+)/messages", RestApi._create_message),
    ("GET", r"guilds/(\d+)", RestApi._guild),
]
