"""HTTP for the local gateway's first request: request-head limits and checks, responses.

Every connection to the local gateway starts with one HTTP/1.1 request: a
WebSocket upgrade (handed to wsproto once its head is valid) or a plain ``GET
/api/v10/gateway``. :class:`~.server.GatewayServer` buffers and checks that head
(:meth:`~.server.GatewayServer._read_http_head`) with these helpers and answers
non-upgrades with :func:`response`, which :mod:`.control` also uses for the REST
and control routes on the same port. Pure functions: no I/O, no state.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..codec import json_dumps

__all__ = ("MAX_HEAD", "MAX_HEADERS", "idna_host", "response", "split_target")

MAX_HEAD = 16 * 1024  # the whole request head, complete or not (HTTP 431 beyond)
MAX_HEADERS = 100  # header lines in one request head (HTTP 431 beyond)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
}


def split_target(target: str) -> tuple[str, str] | None:
    """A request target's path and query; ``None`` if it is not a valid URL."""
    if not target or any(c in target for c in " \x00"):
        return None
    try:
        split = urlsplit(target)
    except ValueError:  # e.g. ``http://[``
        return None
    return split.path, split.query


def idna_host(host: str) -> bool:
    try:
        host.encode("latin-1").decode("idna")
    except UnicodeError:
        return False
    return True


def response(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> bytes:
    """A complete HTTP/1.1 response with a JSON ``body``; the connection closes after it."""
    raw = json_dumps(body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers or ())
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + raw
