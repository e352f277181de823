"""A scripted raw-socket "gateway" for hostile-server tests: exact bytes, no library.

Each accepted connection runs ``script(conn, index)`` in a thread of its own;
``conn`` performs the upgrade by hand (or not), writes whatever frames or bytes
the script says, and decodes the client's (masked) frames. Misbehaving on
purpose is the point: a Ping after the client's close frame, a garbled
upgrade response, a frame over the client's cap, a close right after the
upgrade. Nothing here uses the library under test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A server frame (unmasked, RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def text(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return frame(TEXT, data.encode())


def close(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


HELLO = {"op": 10, "d": {"heartbeat_interval": 41250}}


def ready(seq: int = 1) -> dict[str, Any]:
    # No resume_gateway_url: the RESUME comes back to this server.
    return {"op": 0, "s": seq, "t": "READY", "d": {"session_id": "hostile", "v": 10}}


class Conn:
    """One accepted socket, as the script sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10.0)
        self.buffer = b""
        self.request = b""
        self.received: list[Any] = []  # decoded client payloads, ("close", code), ("pong", b)

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_request(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.request = head
        return head

    def header(self, name: str) -> str | None:
        for line in self.request.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None

    def accept(self) -> None:
        """Read the upgrade request and answer 101 like a real server."""
        self.read_request()
        key = (self.header("Sec-WebSocket-Key") or "").encode()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if second & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(size)))
        return first & 0x0F, payload

    def read_payload(self) -> Any:
        """The next client message (JSON), close or pong; recorded in ``received``."""
        opcode, payload = self.read_frame()
        if opcode == TEXT:
            item: Any = json.loads(payload)
        elif opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            item = ("close", code)
        elif opcode == PONG:
            item = ("pong", payload)
        else:
            item = (opcode, payload)
        self.received.append(item)
        return item

    def read_op(self) -> Any:
        """Skip heartbeats; the first other client payload."""
        while True:
            item = self.read_payload()
            if not (isinstance(item, dict) and item.get("op") == 1):
                return item

    def until_close(self, *, answer: bool = True) -> int | None:
        """Read until the client's close frame (answered) or EOF; its code."""
        with contextlib.suppress(EOFError, OSError):
            while True:
                item = self.read_payload()
                if isinstance(item, tuple) and item[0] == "close":
                    if answer:
                        self.write(close(item[1]))
                    return int(item[1])
        return None


class HostileServer:
    """Accept connections on 127.0.0.1; run ``script(conn, index)`` for each."""

    def __init__(self, script: Callable[[Conn, int], None]) -> None:
        self.script = script
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.sock.close()
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = Conn(sock)
            index = len(self.conns)
            self.conns.append(conn)
            thread = threading.Thread(target=self._run, args=(conn, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: Conn, index: int) -> None:
        try:
            self.script(conn, index)
        except (EOFError, OSError):
            pass  # the client went away: that is its right
        except BaseException as exc:  # a broken script must fail the test
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()
