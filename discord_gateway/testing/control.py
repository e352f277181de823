"""Plain HTTP on the gateway's port: Discord's REST (:mod:`.rest`) and the control API.

A request that is not a WebSocket upgrade never becomes a gateway connection
(so fault indices count WebSocket connections only). Paths under
``/control/`` drive the running server from another process (``python -m
discord_gateway ctl ...``); everything else goes to :class:`~.rest.RestApi`.

Control API (JSON in, JSON out):

``GET /control/sessions``, ``GET /control/connections``
    The sessions (id, seq, shard, connected) and WebSocket connections.
``GET /control/requests``
    The REST requests bots made (method, route, JSON body, status).
``POST /control/dispatch`` ``{"name": "...", "data": {...}, "session_id"?: "..."}``
    Push a raw dispatch; answers ``{"seqs": [...]}``.
``POST /control/push/<factory>`` ``{keyword arguments}``
    Build a dispatch with a :class:`~.world.World` factory (``message``,
    ``member_join``, ``typing``, ``presence``, ``reaction_add``, ``guild_create``,
    ``guild_update``, ``guild_delete``, ``channel_create``) and push it;
    answers ``{"name": ..., "data": ..., "seqs": [...]}``.
``POST /control/fault`` ``{"fault": "<name>", "connection"?: n, ...}``
    Apply a fault to WebSocket connection ``n`` (1-based; default the newest
    live one). Names in :data:`FAULTS`.
``GET /control/wait-ready?timeout=S&count=N``
    Answers once ``N`` sessions (default 1) got READY and are connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..codec import json_loads
from . import faults as _f
from . import http as _http
from .rest import HttpRequest, parse_head

if TYPE_CHECKING:
    from .serve import LocalGateway

__all__ = (
    "CONTROL_PREFIX",
    "FACTORIES",
    "FAULTS",
    "ctl",
    "ctl_arguments",
    "handle_http",
    "read_head",
)

CONTROL_PREFIX = "/control/"
_MAX_HEAD = 16 * 1024
_MAX_BODY = 8 * 1024 * 1024
_READ_TIMEOUT = 10.0

#: ``fault`` names the control API (and ``ctl fault``) understands.
FAULTS: dict[str, Callable[[Mapping[str, Any]], _f.Fault]] = {
    "reconnect": lambda a: _f.SendReconnect(),
    "invalid-session": lambda a: _f.SendInvalidSession(bool(a.get("resumable", False))),
    "heartbeat-request": lambda a: _f.SendHeartbeatRequest(),
    "close": lambda a: _f.Close(int(a.get("code", 4000)), str(a.get("reason", ""))),
    "reset": lambda a: _f.ResetConnection(),
    "stall": lambda a: _f.Stall(),
    "malformed": lambda a: _f.SendMalformed(),
    "corrupt": lambda a: _f.CorruptCompressed(),
    "invalidate": lambda a: _f.InvalidateSession(),
}

#: World factories ``POST /control/push/<name>`` may call.
FACTORIES = frozenset(
    {
        "message",
        "member_join",
        "typing",
        "presence",
        "reaction_add",
        "guild_create",
        "guild_update",
        "guild_delete",
        "channel_create",
    }
)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """Bytes up to and including a request head's blank line (or what came before EOF,
    a timeout or the size limit: the gateway connection deals with those)."""
    data = b""
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
        while b"\r\n\r\n" not in data and len(data) <= _MAX_HEAD:
            chunk = await asyncio.wait_for(reader.read(65536), _READ_TIMEOUT)
            if not chunk:
                break
            data += chunk
    return data


def plain_http(head: bytes) -> HttpRequest | None:
    """The request if ``head`` is a complete HTTP request that is not an upgrade."""
    if b"\r\n\r\n" not in head:
        return None
    request = parse_head(head)
    return None if request is None or request.is_upgrade else request


async def handle_http(
    gateway: LocalGateway,
    request: HttpRequest,
    head: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer one plain HTTP request (REST or control), then close."""
    body = head.split(b"\r\n\r\n", 1)[1]
    length = request.content_length
    try:
        if length > _MAX_BODY:
            writer.write(_http.response(413, {"message": "Request entity too large", "code": 0}))
            return
        while len(body) < length:
            chunk = await asyncio.wait_for(reader.read(length - len(body)), _READ_TIMEOUT)
            if not chunk:
                return
            body += chunk
        if urlsplit(request.target).path.startswith(CONTROL_PREFIX):
            status, answer = await _control(gateway, request, body)
        else:
            status, answer = gateway.rest.answer(request, body)
        writer.write(_http.response(status, answer))
        await writer.drain()
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def _bad(message: str) -> tuple[int, Any]:
    return 400, {"message": message, "code": 0}


async def _control(gateway: LocalGateway, request: HttpRequest, body: bytes) -> tuple[int, Any]:
    parts = urlsplit(request.target)
    route = parts.path[len(CONTROL_PREFIX) :].strip("/")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    args: Any = {}
    if body:
        try:
            args = json_loads(body)
        except ValueError:
            return _bad("the body is not JSON")
    if not isinstance(args, dict):
        return _bad("the body must be a JSON object")
    store = gateway.store
    if request.method == "GET" and route == "sessions":
        return 200, [
            {
                "session_id": s.session_id,
                "seq": s.seq,
                "shard": list(s.shard) if s.shard else None,
                "intents": s.intents,
                "connected": s.connection is not None,
                "connection": s.connection.index if s.connection is not None else None,
            }
            for s in store.sessions.values()
        ]
    if request.method == "GET" and route == "connections":
        return 200, [
            {
                "index": c.index,
                "state": c.state.value,
                "target": c.target,
                "session_id": c.session.session_id if c.session else None,
                "close_code": c.close_code,
                "closed_by": c.closed_by,
                "received": len(c.received),
                "sent": len(c.sent),
            }
            for c in store.connections
        ]
    if request.method == "GET" and route == "requests":
        return 200, [
            {"method": r.method, "route": r.route, "json": r.json, "status": r.status}
            for r in gateway.rest.requests
        ]
    if request.method == "POST" and route == "dispatch":
        name, data = args.get("name"), args.get("data")
        if not isinstance(name, str) or not name:
            return _bad('"name" (the dispatch\'s event name) is missing')
        session_id = args.get("session_id")
        return 200, {"seqs": store.dispatch(name, data, session_id=session_id)}
    if request.method == "POST" and route.startswith("push/"):
        factory = route[len("push/") :]
        if factory not in FACTORIES:
            return _bad(f"unknown factory {factory!r}; one of: {', '.join(sorted(FACTORIES))}")
        try:
            name, data = getattr(store.world, factory)(**args)
        except (TypeError, KeyError, StopIteration) as exc:
            return _bad(f"{factory}: {exc}")
        return 200, {"name": name, "data": data, "seqs": store.dispatch(name, data)}
    if request.method == "POST" and route == "fault":
        make = FAULTS.get(str(args.get("fault")))
        if make is None:
            return _bad(f"unknown fault; one of: {', '.join(FAULTS)}")
        index = args.get("connection")
        live = [c for c in store.connections if c.state.value in ("awaiting_identify", "connected")]
        if index is None:
            if not live:
                return 404, {"message": "no live WebSocket connection", "code": 0}
            target = live[-1]
        elif isinstance(index, int) and 1 <= index <= len(store.connections):
            target = store.connections[index - 1]
        else:
            return _bad(f"no WebSocket connection {index}")
        try:
            fault = make(args)
        except (TypeError, ValueError) as exc:
            return _bad(f"bad fault arguments: {exc}")
        target.inject(fault, asyncio.get_running_loop().time())
        return 200, {"connection": target.index, "fault": repr(fault)}
    if request.method == "GET" and route == "wait-ready":
        count = int(query.get("count", "1"))
        timeout = float(query.get("timeout", "10"))

        def ready() -> bool:
            return (
                sum(
                    1
                    for c in store.connections
                    if c.session is not None
                    and any(p.get("t") == "READY" for p in c.sent)
                    and c.state.value == "connected"
                )
                >= count
            )

        try:
            await gateway.wait_for(ready, timeout)
        except asyncio.TimeoutError:
            return 408, {"message": f"no READY within {timeout} s", "code": 0}
        return 200, {"ready": True}
    return 404, {"message": f"no control route {request.method} {parts.path}", "code": 0}


# -- ctl: the control API from the command line (``python -m discord_gateway ctl``) --------


def ctl_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("DISCORD_GATEWAY_URL"),
        help="the running gateway's URL as `serve` printed it, ws://127.0.0.1:PORT/ "
        "(default: $DISCORD_GATEWAY_URL)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    message = actions.add_parser("message", help="push MESSAGE_CREATE by the guild's owner")
    message.add_argument("content")
    message.add_argument("--channel", help="channel id (default: the first guild's #general)")
    push = actions.add_parser("push", help="push what a world factory builds")
    push.add_argument("factory", choices=sorted(FACTORIES))
    push.add_argument("arguments", nargs="?", default="{}", help="its keyword arguments (JSON)")
    dispatch = actions.add_parser("dispatch", help="push a raw dispatch")
    dispatch.add_argument("name", help="event name, e.g. MESSAGE_CREATE")
    dispatch.add_argument("data", help="the payload's d (JSON)")
    fault = actions.add_parser("fault", help="inject a fault into a WebSocket connection")
    fault.add_argument("fault", choices=list(FAULTS))
    fault.add_argument("--connection", type=int, help="connection number (default: newest)")
    fault.add_argument("--code", type=int, help="with close: the close code (default 4000)")
    fault.add_argument("--reason", help="with close: the close reason")
    fault.add_argument("--resumable", action="store_true", help="with invalid-session")
    for name, text in (
        ("sessions", "list sessions"),
        ("connections", "list WebSocket connections"),
        ("requests", "list the REST requests bots made"),
    ):
        actions.add_parser(name, help=text)
    wait = actions.add_parser("wait-ready", help="wait until a bot got READY")
    wait.add_argument("--count", type=int, default=1, help="how many sessions (default 1)")
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")


def ctl(args: argparse.Namespace) -> int:
    """Run one ``ctl`` action; prints the answer as JSON. 0 on success, 1 on failure."""
    if not args.url:
        print(
            "ctl needs the gateway's URL: --url ws://127.0.0.1:PORT/ (as serve printed it)",
            file=sys.stderr,
        )
        return 1
    parts = urlsplit(args.url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    base = f"{scheme}://{parts.netloc}{CONTROL_PREFIX}"
    method, path, body = "GET", str(args.action), None
    try:
        if args.action == "message":
            options = {"content": args.content}
            if args.channel:
                options["channel"] = args.channel
            method, path, body = "POST", "push/message", options
        elif args.action == "push":
            method, path, body = "POST", f"push/{args.factory}", json.loads(args.arguments)
        elif args.action == "dispatch":
            method, body = "POST", {"name": args.name, "data": json.loads(args.data)}
        elif args.action == "fault":
            body = {"fault": args.fault, "connection": args.connection}
            body.update({k: getattr(args, k) for k in ("code", "reason") if getattr(args, k)})
            if args.resumable:
                body["resumable"] = True
            method = "POST"
        elif args.action == "wait-ready":
            path = f"wait-ready?count={args.count}&timeout={args.timeout}"
    except json.JSONDecodeError as exc:
        print(f"not JSON: {exc}", file=sys.stderr)
        return 1
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=getattr(args, "timeout", 30.0) + 5) as reply:
            answer = json.load(reply)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("message", exc.reason)
        except ValueError:
            message = exc.reason
        print(f"{args.action}: {message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"no local gateway at {args.url} ({exc}); "
            "is `python -m discord_gateway serve` running?",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(answer, indent=2))
    return 0
