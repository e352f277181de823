"""Fuzz cases: what a client is configured with and the bytes each of its connections reads.

A case file is one line of JSON (the header), then the bytes of every connection,
back to back::

    {"name": ..., "encoding": "json", "compress": "zlib-stream", "conns": [812, 407], ...}\\n
    <812 bytes the client read on its first connection><407 bytes on its second>

``compress`` is ``null``, ``"zlib-stream"``, ``"zstd-stream"`` or ``true`` (payload
compression, JSON only). ``driver_seed`` (optional) fixes how the driver splits the
stream into reads, when it runs timers and how it ends each connection, so a saved
crash replays exactly. ``client_ops`` (optional) records what the client wrote on each
connection when the case was recorded (op codes, ``"close N"``), for the reader only:
the client core writes its own bytes when the case is replayed.

The upgrade response's ``Sec-WebSocket-Accept`` depends on the random key of the
client's request, so cases hold :data:`ACCEPT_PLACEHOLDER` instead (same length) and
the driver puts in the right value for the request of the moment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"

#: Stands for the Sec-WebSocket-Accept value; 28 characters like the real one.
ACCEPT_PLACEHOLDER = b"fuzz/accept/placeholder/000="
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = re.compile(rb"(?im)^sec-websocket-key:[ \t]*([^\r\n]*?)[ \t]*\r?$")


@dataclass(frozen=True)
class Case:
    name: str
    encoding: str  # "json" or "etf"
    compress: str | bool | None
    conns: tuple[bytes, ...]
    note: str = ""
    driver_seed: int | None = None
    client_ops: tuple[tuple[Any, ...], ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.conns)

    def with_conns(self, conns: list[bytes] | tuple[bytes, ...]) -> Case:
        return replace(self, conns=tuple(conns))

    def dumps(self) -> bytes:
        header: dict[str, Any] = {
            "name": self.name,
            "encoding": self.encoding,
            "compress": self.compress,
            "conns": [len(c) for c in self.conns],
        }
        if self.note:
            header["note"] = self.note
        if self.driver_seed is not None:
            header["driver_seed"] = self.driver_seed
        if self.client_ops:
            header["client_ops"] = [list(ops) for ops in self.client_ops]
        return json.dumps(header).encode() + b"\n" + b"".join(self.conns)

    @classmethod
    def loads(cls, data: bytes) -> Case:
        head, _, body = data.partition(b"\n")
        header = json.loads(head)
        conns: list[bytes] = []
        pos = 0
        for size in header["conns"]:
            conns.append(body[pos : pos + size])
            pos += size
        if pos != len(body):
            raise ValueError(f"case body is {len(body)} bytes, the header says {pos}")
        return cls(
            name=header["name"],
            encoding=header["encoding"],
            compress=header["compress"],
            conns=tuple(conns),
            note=header.get("note", ""),
            driver_seed=header.get("driver_seed"),
            client_ops=tuple(tuple(ops) for ops in header.get("client_ops", ())),
        )

    def save(self, path: Path) -> None:
        path.write_bytes(self.dumps())

    @classmethod
    def load(cls, path: Path) -> Case:
        return cls.loads(path.read_bytes())


def load_corpus(directory: Path = CORPUS) -> list[Case]:
    return [Case.load(path) for path in sorted(directory.glob("*.case"))]


def accept_for(request: bytes) -> bytes | None:
    """The Sec-WebSocket-Accept answering the client's upgrade ``request`` (RFC 6455 4.2.2)."""
    match = _KEY.search(request)
    if match is None:
        return None
    return base64.b64encode(hashlib.sha1(match.group(1) + _WS_GUID).digest())


def answer(stream: bytes, request: bytes) -> bytes:
    """``stream`` with the placeholder replaced by the accept value for ``request``."""
    accept = accept_for(request)
    if accept is None or ACCEPT_PLACEHOLDER not in stream:
        return stream
    return stream.replace(ACCEPT_PLACEHOLDER, accept)


# -- WebSocket framing (server to client: never masked) -----------------------------

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 1, 2, 8, 9, 10, 0


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
    form: int | None = None,
    mask: bytes | None = None,
) -> bytes:
    """One frame. ``length`` overrides the declared length; ``form`` forces the length
    encoding (7, 16 or 64 bits) whatever the length; ``mask`` masks it (a server must not)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not None else 0
    if form is None:
        form = 7 if size < 126 else 16 if size < 65536 else 64
    if form == 7:
        head = bytes((first, mask_bit | (size & 0x7F)))
    elif form == 16:
        head = bytes((first, mask_bit | 126)) + (size & 0xFFFF).to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + (size & (2**64 - 1)).to_bytes(8, "big")
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def split_head(stream: bytes) -> tuple[bytes, bytes]:
    """(the HTTP response head, the WebSocket bytes after it); no head: (b"", stream)."""
    end = stream.find(b"\r\n\r\n")
    if not stream.startswith(b"HTTP/") or end < 0:
        return b"", stream
    return stream[: end + 4], stream[end + 4 :]


def frame_ends(data: bytes) -> Iterator[int]:
    """Where each whole frame at the start of ``data`` ends (no copies: the driver's
    cuts must not count against the client's memory)."""
    pos = 0
    while pos + 2 <= len(data):
        size, head = data[pos + 1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        if data[pos + 1] & 0x80:
            head += 4
        if pos + head + size > len(data):
            return
        pos += head + size
        yield pos


@dataclass(frozen=True)
class Frame:
    start: int  # offset of the frame in the WebSocket bytes
    header_size: int
    opcode: int
    fin: bool
    payload: bytes  # as sent (unmasked if the frame was masked)

    @property
    def end(self) -> int:
        return self.start + self.header_size + len(self.payload)


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """The whole frames at the start of ``data``, and what is left (a partial frame)."""
    frames: list[Frame] = []
    pos = 0
    while pos + 2 <= len(data):
        first, second = data[pos], data[pos + 1]
        size, head = second & 0x7F, 2
        if size == 126:
            if pos + 4 > len(data):
                break
            size, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif size == 127:
            if pos + 10 > len(data):
                break
            size, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        mask = b""
        if second & 0x80:
            mask, head = data[pos + head : pos + head + 4], head + 4
        if pos + head + size > len(data):
            break
        payload = data[pos + head : pos + head + size]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frames.append(Frame(pos, head, first & 0x0F, bool(first & 0x80), payload))
        pos += head + size
    return frames, data[pos:]
