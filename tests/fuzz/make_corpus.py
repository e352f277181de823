"""Regenerate ``tests/fuzz/corpus/`` (deterministic): ``python -m tests.fuzz.make_corpus``.

Three sources:

* **recorded sessions**: a real ``DiscordConnection`` against the local gateway
  (``discord_gateway.testing.GatewayServer``) in memory and virtual time, for every
  encoding x compression: upgrade, HELLO, IDENTIFY, READY, GUILD_CREATE, dispatches,
  op 1, heartbeats and ACKs, op 7, RESUME with replay, op 9, a new session, the
  gateway's close frame. The bytes the client read on each connection are the case;
  what the client wrote is noted in ``client_ops``;
* **real captures** from ``tests/fixtures/`` (see its SOURCES.md), framed as the
  gateway frames them after a recorded upgrade and HELLO;
* **hand-made** edge cases: upgrade responses (odd headers, 4xx with bodies, HTTP/1.0,
  non-UTF-8 bytes), control frames (Ping/Pong/Close with odd payloads, a Ping after
  our close frame), frames over the size cap and hostile payloads.

zlib's output depends on the zlib build only; zstandard's on its version, so a
regenerated corpus may differ in the zstd cases' bytes (not in what they say).
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from discord_gateway.testing import (
    DEFAULT_TOKEN,
    Close,
    ConnectionFaults,
    SendHeartbeatRequest,
    SendInvalidSession,
    SendReconnect,
    ServerConfig,
    SessionStore,
)
from tests.memory_link import MemoryLink

from .corpus import (
    ACCEPT_PLACEHOLDER,
    BINARY,
    CLOSE,
    CORPUS,
    PING,
    PONG,
    TEXT,
    Case,
    accept_for,
    close_payload,
    frame,
)
from .driver import MAX_PAYLOAD_SIZE

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLIENT_URL = "wss://gateway.local/"
CONFIGS: list[tuple[str, str, str | bool | None]] = [
    ("json", "json", None),
    ("json-zlib", "json", "zlib-stream"),
    ("json-zstd", "json", "zstd-stream"),
    ("json-payload-zlib", "json", True),
    ("etf", "etf", None),
    ("etf-zlib", "etf", "zlib-stream"),
    ("etf-zstd", "etf", "zstd-stream"),
]


class Recorder(MemoryLink):
    """A client and the local gateway, wired in memory (``tests/memory_link.py``);
    records what the client reads."""

    def __init__(
        self,
        encoding: str,
        compress: str | bool | None,
        *,
        token: str = DEFAULT_TOKEN,
        faults: Callable[[int], ConnectionFaults | None] = lambda n: None,
    ) -> None:
        config = ServerConfig(
            heartbeat_interval=10.0,
            heartbeat_grace=2.0,
            url=CLIENT_URL,
            resume_gateway_url="wss://resume.gateway.local/",
            guild_ids=(961969618123483218,),
        )
        self.encoding, self.compress = encoding, compress
        super().__init__(
            SessionStore(config, seed=1),
            token=token,
            faults=faults,
            encoding=encoding,
            compress=compress,
        )

    def push(self, count: int) -> None:
        for n in range(count):
            self.store.dispatch("MESSAGE_CREATE", {"id": str(1000 + n), "content": f"m{n}"})
        self.pump()

    def case(self, name: str, note: str) -> Case:
        conns = []
        for stream, request in zip(self.streams, self.requests, strict=True):
            accept = accept_for(request)
            assert accept is not None
            conns.append(bytes(stream).replace(accept, ACCEPT_PLACEHOLDER))
        ops: list[tuple[Any, ...]] = []
        for server in self.servers:
            done: list[Any] = [r.op for r in server.received]
            if server.closed_by == "client":
                done.append(f"close {server.close_code}")
            ops.append(tuple(done))
        return Case(
            name, self.encoding, self.compress, tuple(conns), note=note, client_ops=tuple(ops)
        )


def full_session(encoding: str, compress: str | bool | None, label: str) -> Case:
    rec = Recorder(encoding, compress)
    rec.push(3)
    rec.inject(SendHeartbeatRequest())  # op 1: answered at once
    rec.advance(rec.now + 11)  # a heartbeat from the timer, ACKed
    rec.inject(SendReconnect())  # op 7: the client closes with 4000
    rec.push(2)  # missed while away: replayed after RESUME
    rec.advance(rec.now + 1)
    assert rec.server is not None, "resumed"
    rec.push(1)
    rec.inject(SendInvalidSession(resumable=False))  # op 9 false: a new session
    rec.advance(rec.now + 6)
    assert rec.server is not None, "identified again"
    rec.push(1)
    rec.inject(Close(1001, "going away"))  # the gateway's own close frame
    return rec.case(
        f"session-{label}",
        "recorded: HELLO, READY, dispatches, op 1, ACK, op 7, RESUME + replay, "
        "op 9 false, IDENTIFY, READY, close 1001",
    )


def recorded_cases() -> list[Case]:
    cases = [full_session(enc, comp, label) for label, enc, comp in CONFIGS]
    rec = Recorder("json", None, token="not-the-token")
    cases.append(rec.case("fatal-4004-json", "recorded: a bad token, closed with 4004"))
    rec = Recorder(
        "json",
        "zlib-stream",
        faults=lambda n: ConnectionFaults(reconnect_instead_of_hello=True) if n == 1 else None,
    )
    cases.append(rec.case("op7-instead-of-hello-json-zlib", "recorded: op 7 and 1001, no HELLO"))
    rec = Recorder(
        "json",
        "zlib-stream",
        faults=lambda n: ConnectionFaults(split_messages=3, fragment_frames=3),
    )
    rec.push(2)
    cases.append(
        rec.case("fragmented-json-zlib", "recorded: messages over 3 frames and 3 zlib pieces")
    )
    return cases


# -- hand-made ------------------------------------------------------------------------

HEAD_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT_PLACEHOLDER + b"\r\n\r\n"
)
HELLO = {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}


def jtext(payload: Any) -> bytes:
    return frame(TEXT, json.dumps(payload).encode())


def json_case(name: str, note: str, *parts: bytes, head: bytes = HEAD_101) -> Case:
    return Case(name, "json", None, (head + b"".join(parts),), note=note)


def dispatch(seq: Any, name: str = "MESSAGE_CREATE", data: Any = None) -> dict[str, Any]:
    return {"op": 0, "s": seq, "t": name, "d": {"n": seq} if data is None else data}


def ready(seq: Any = 1, url: Any = "wss://resume.gateway.local/") -> dict[str, Any]:
    return dispatch(seq, "READY", {"session_id": "abc", "resume_gateway_url": url, "v": 10})


def upgrade_cases() -> list[Case]:
    def head(*lines: bytes) -> bytes:
        return b"\r\n".join(lines) + b"\r\n\r\n"

    accept = b"Sec-WebSocket-Accept: " + ACCEPT_PLACEHOLDER
    up = (b"Upgrade: websocket", b"Connection: Upgrade")
    heads = {
        "101-odd-headers": head(
            b"HTTP/1.1 101 Switching Protocols",
            b"upgrade:    WebSocket  ",
            b"CONNECTION: keep-alive, Upgrade",
            b"sec-websocket-accept:" + ACCEPT_PLACEHOLDER,
            b"X-Empty:",
            b"X-Dup: 1",
            b"X-Dup: 2",
            b"Server: " + b"x" * 300,
        ),
        "101-non-utf8-header": head(
            b"HTTP/1.1 101 Switching Protocols", *up, accept, b"X-Server: caf\xe9 \xff\xfe"
        ),
        "101-non-utf8-connection": head(
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: websocket",
            b"Connection: Upgrade, caf\xe9",
            accept,
        ),
        "101-non-utf8-reason": head(b"HTTP/1.1 101 Sw\xeftching \x80", *up, accept),
        "101-obs-fold": head(b"HTTP/1.1 101 Switching Protocols", *up, accept, b"X-A: a", b" b"),
        "101-extension-not-asked": head(
            b"HTTP/1.1 101 Switching Protocols",
            *up,
            accept,
            b"Sec-WebSocket-Extensions: permessage-deflate",
        ),
        "101-protocol-not-asked": head(
            b"HTTP/1.1 101 Switching Protocols", *up, accept, b"Sec-WebSocket-Protocol: chat"
        ),
        "101-wrong-accept": head(
            b"HTTP/1.1 101 Switching Protocols", *up, b"Sec-WebSocket-Accept: AAAA"
        ),
        "101-no-upgrade": head(b"HTTP/1.1 101 Switching Protocols", accept),
        "101-http10": head(b"HTTP/1.0 101 Switching Protocols", *up, accept),
        "101-content-length": head(
            b"HTTP/1.1 101 Switching Protocols", *up, accept, b"Content-Length: 5"
        ),
        "400-json-body": head(
            b"HTTP/1.1 400 Bad Request", b"Content-Type: application/json", b"Content-Length: 27"
        )
        + b'{"message": "bad", "code":0',
        "400-chunked-body": head(b"HTTP/1.1 400 Bad Request", b"Transfer-Encoding: chunked")
        + b"5\r\nhello\r\n0\r\n\r\n",
        "429-body-until-close": head(b"HTTP/1.1 429 Too Many Requests") + b"slow down " * 8,
        "400-non-utf8-body": head(b"HTTP/1.1 400 Bad Request", b"Content-Length: 4")
        + b"\xff\xfe\x00\x80",
        "400-http10": head(b"HTTP/1.0 400 Bad Request", b"Content-Length: 2") + b"no",
        "301-redirect": head(
            b"HTTP/1.1 301 Moved Permanently",
            b"Location: wss://elsewhere.example/",
            b"Content-Length: 0",
        ),
        "200-ok": head(b"HTTP/1.1 200 OK", b"Content-Length: 2") + b"{}",
        "100-continue-then-101": head(b"HTTP/1.1 100 Continue") + HEAD_101,
        "not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
        "http-garbage-status": head(b"HTTP/1.1 1O1 Switching"),
        "header-no-colon": head(b"HTTP/1.1 101 Switching Protocols", *up, accept, b"NoColon"),
        "bare-lf": b"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: "
        b"Upgrade\nSec-WebSocket-Accept: " + ACCEPT_PLACEHOLDER + b"\n\n",
    }
    return [
        json_case(f"upgrade-{name}", f"hand-made upgrade response: {name}", jtext(HELLO), head=h)
        for name, h in heads.items()
    ]


def control_cases() -> list[Case]:
    hello = jtext(HELLO)
    op7 = jtext({"op": 7, "d": None, "s": None, "t": None})
    op9 = jtext({"op": 9, "d": False, "s": None, "t": None})
    ping = frame(PING, b"are you there")
    cases = {
        "ping-pong-unsolicited": [hello, ping, frame(PONG, b"unasked"), frame(PING, b"")],
        "ping-125": [hello, frame(PING, b"p" * 125)],
        "ping-126-too-long": [hello, frame(PING, b"p" * 126)],
        "ping-fragmented": [hello, frame(PING, b"half", fin=False)],
        "ping-between-fragments": [
            frame(TEXT, b'{"op":10,"d":{"heartbeat_', fin=False),
            ping,
            frame(0, b'interval":41250}}'),
        ],
        "ping-after-op7": [hello, op7, ping],  # after our close frame
        "ping-after-op9": [hello, op9, ping, frame(PONG, b"")],
        "ping-after-server-close": [hello, frame(CLOSE, close_payload(4000)), ping],
        "close-1-byte": [hello, frame(CLOSE, b"\x03")],
        "close-empty": [hello, frame(CLOSE, b"")],
        "close-1005-on-wire": [hello, frame(CLOSE, close_payload(1005))],
        "close-999": [hello, frame(CLOSE, close_payload(999))],
        "close-5000": [hello, frame(CLOSE, close_payload(5000, b"x"))],
        "close-4004-fatal": [hello, frame(CLOSE, close_payload(4004, b"Authentication failed."))],
        "close-bad-utf8-reason": [hello, frame(CLOSE, close_payload(4000, b"\xff\xfe\xc3"))],
        "close-reason-123": [hello, frame(CLOSE, close_payload(4000, b"r" * 123))],
        "close-then-data": [hello, frame(CLOSE, close_payload(1000)), jtext(HELLO)],
        "close-after-op7-crossing": [hello, op7, frame(CLOSE, close_payload(1001))],
        "op7-then-text-over-cap": [hello, op7, frame(TEXT, b" " * (MAX_PAYLOAD_SIZE + 1))],
        "op7-then-binary-over-cap": [hello, op7, frame(BINARY, b"\0" * (MAX_PAYLOAD_SIZE + 1))],
        "text-over-cap": [hello, frame(TEXT, b" " * (MAX_PAYLOAD_SIZE + 1))],
        "text-over-cap-fragments": [
            hello,
            *(frame(TEXT if i == 0 else 0, b" " * 8192, fin=False) for i in range(9)),
            frame(0, b"{}"),
        ],
        "length-2-63-declared": [hello, frame(TEXT, b"{}", length=2**63)],
        "length-2-64-1-declared": [hello, frame(BINARY, b"", length=2**64 - 1)],
        "length-16bit-form-small": [hello, frame(TEXT, b"{}", form=16)],
        "length-64bit-form-small": [hello, frame(TEXT, b"{}", form=64)],
        "masked-server-frame": [hello, frame(TEXT, b"{}", mask=b"\x01\x02\x03\x04")],
        "rsv-bits": [hello, frame(TEXT, b"{}", rsv=4)],
        "reserved-opcode": [hello, frame(3, b"{}"), frame(11, b"")],
        "continuation-first": [hello, frame(0, b"{}")],
        "text-bad-utf8": [hello, frame(TEXT, b'{"op":11,"d":"\xff"}')],
        "binary-json-no-compression": [hello, frame(BINARY, b'{"op":11}')],
    }
    return [
        json_case(f"frames-{name}", f"hand-made frames: {name}", *parts)
        for name, parts in cases.items()
    ]


def payload_cases() -> list[Case]:
    hello = jtext(HELLO)
    raw = {
        "hello-interval-1e300": b'{"op":10,"d":{"heartbeat_interval":1e300}}',
        "hello-interval-2-64": b'{"op":10,"d":{"heartbeat_interval":18446744073709551616}}',
        "hello-interval-negative": b'{"op":10,"d":{"heartbeat_interval":-1}}',
        "hello-interval-tiny": b'{"op":10,"d":{"heartbeat_interval":1e-300}}',
        "hello-interval-string": b'{"op":10,"d":{"heartbeat_interval":"41250"}}',
        "hello-deep-nesting": b'{"op":10,"d":' + b"[" * 20000 + b"]" * 20000 + b"}",
        "hello-lone-surrogate": b'{"op":10,"d":{"heartbeat_interval":41250,"x":"\\ud800"}}',
        "hello-bad-escape": b'{"op":10,"d":{"heartbeat_interval":41250,"x":"\\u12"}}',
        "op-2-64": b'{"op":18446744073709551616,"d":null}',
        "op-float": b'{"op":10.0,"d":{"heartbeat_interval":41250}}',
        "not-an-object": b"[10, 41250]",
    }
    cases = [
        json_case(f"payload-{name}", f"hand-made payload: {name}", frame(TEXT, body))
        for name, body in raw.items()
    ]
    sequences = {
        "seq-2-64-1": [ready(1), dispatch(2**64 - 1), dispatch(3)],
        "seq-2-63": [ready(1), dispatch(2**63)],
        "seq-negative": [ready(1), dispatch(-1)],
        "seq-float": [ready(1), dispatch(2.0)],
        "seq-0-before-ready": [dispatch(0, "GUILD_CREATE"), ready(0), dispatch(1)],
        "ready-twice": [ready(1), ready(2)],
        "ready-url-downgrade": [ready(1, "ws://resume.example/"), dispatch(2)],
        "ready-url-credentials": [ready(1, "wss://user:pw@resume.example/")],
        "ready-url-not-a-url": [ready(1, "\x00:/\\%zz"), dispatch(2)],
        "ready-url-int": [ready(1, 12345)],
        "resumed-while-identifying": [dispatch(1, "RESUMED", None)],
        "dispatch-no-t": [ready(1), {"op": 0, "s": 2, "d": {}}],
    }
    for name, payloads in sequences.items():
        cases.append(
            json_case(
                f"payload-{name}",
                f"hand-made dispatches after HELLO: {name}",
                hello,
                *(jtext(p) for p in payloads),
            )
        )
    # Memory: a small zlib frame that inflates to just under the cap, and one over it.
    deflate = zlib.compressobj()
    under = deflate.compress(b" " * (MAX_PAYLOAD_SIZE - 64) + b'{"op":11}') + deflate.flush(
        zlib.Z_SYNC_FLUSH
    )
    over = zlib.compressobj()
    bomb = over.compress(b" " * (4 * MAX_PAYLOAD_SIZE)) + over.flush(zlib.Z_SYNC_FLUSH)
    zhello = zlib.compressobj()
    hello_z = zhello.compress(json.dumps(HELLO).encode()) + zhello.flush(zlib.Z_SYNC_FLUSH)
    cases.append(
        Case(
            "zlib-under-cap",
            "json",
            "zlib-stream",
            (HEAD_101 + frame(BINARY, hello_z + under),),
            note="hand-made: HELLO, then a message that inflates to just under the cap",
        )
    )
    cases.append(
        Case(
            "zlib-bomb",
            "json",
            "zlib-stream",
            (HEAD_101 + frame(BINARY, bomb),),
            note="hand-made: a message inflating to 4x the cap",
        )
    )
    # Amplification at the cap: ETF NIL_EXT (1 byte) and JSON "[]," (3 bytes) each
    # decode to a list object; zlib makes the frame a few hundred bytes.
    terms = MAX_PAYLOAD_SIZE - 16
    etf_hello = (FIXTURES / "constructed" / "hello.etf.bin").read_bytes()
    etf_nils = b"\x83l" + terms.to_bytes(4, "big") + b"j" * terms + b"j"
    json_lists = b"[" + b"[]," * (terms // 3) + b"[]]"
    for name, encoding, first, second in (
        ("etf-nil-amplification", "etf", etf_hello, etf_nils),
        ("json-list-amplification", "json", json.dumps(HELLO).encode(), json_lists),
    ):
        deflate = zlib.compressobj()
        frames = b"".join(
            frame(BINARY, deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH))
            for raw in (first, second)
        )
        cases.append(
            Case(
                name,
                encoding,
                "zlib-stream",
                (HEAD_101 + frames,),
                note=f"hand-made: HELLO, then {terms} bytes that decode to one list object each",
            )
        )
    return cases


def capture_cases() -> list[Case]:
    def fixture(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    def text(name: str) -> bytes:
        return frame(TEXT, json.dumps(json.loads(fixture(name))).encode())

    zlib_seq = [fixture(f"constructed/zlib_stream_seq_{n}.bin") for n in (0, 1)]
    zlib_seq += [fixture("constructed/zlib_stream_seq_2_part_a.bin")]
    zlib_seq += [fixture("constructed/zlib_stream_seq_2_part_b.bin")]
    return [
        Case(
            "capture-hello-zlib-stream",
            "json",
            "zlib-stream",
            (HEAD_101 + frame(BINARY, fixture("hello.zlib-stream.bin")),),
            note="capture: tests/fixtures/hello.zlib-stream.bin (twilight)",
        ),
        Case(
            "capture-hello-zstd-stream",
            "json",
            "zstd-stream",
            (HEAD_101 + frame(BINARY, fixture("hello.zstd-stream.bin")),),
            note="capture: tests/fixtures/hello.zstd-stream.bin (twilight)",
        ),
        Case(
            "capture-zlib-stream-seq",
            "json",
            "zlib-stream",
            (HEAD_101 + b"".join(frame(BINARY, part) for part in zlib_seq),),
            note="constructed fixtures: HELLO, READY, GUILD_CREATE in one zlib stream, "
            "the last over two frames",
        ),
        Case(
            "capture-etf",
            "etf",
            None,
            (
                HEAD_101
                + frame(BINARY, fixture("constructed/hello.etf.bin"))
                + frame(BINARY, fixture("constructed/guild_delete_dispatch.etf.bin")),
            ),
            note="constructed fixtures: ETF HELLO and GUILD_DELETE with atom keys",
        ),
        Case(
            "capture-payload-compression",
            "json",
            True,
            (
                HEAD_101
                + text("hello.freya022.v10.json")
                + frame(BINARY, fixture("constructed/payload_compression_ready.zlib.bin")),
            ),
            note="captures: HELLO as text, the READY as one zlib payload (compress: true)",
        ),
        Case(
            "capture-json-session",
            "json",
            None,
            (
                HEAD_101
                + b"".join(
                    text(name)
                    for name in (
                        "hello.twilight.json",
                        "ready.violentcat.v9.json",
                        "guild_create.violentcat.v9.json",
                        "heartbeat_request_op1.twilight.json",
                        "heartbeat_ack.twilight.json",
                        "heartbeat_ack_minimal.twilight.json",
                        "resumed.twilight.json",
                        "invalid_session_true.twilight.json",
                    )
                ),
                HEAD_101 + text("hello.freya022.v10.json") + text("reconnect_op7.twilight.json"),
            ),
            note="captures (tests/fixtures/*.json) as text frames: HELLO, READY, "
            "GUILD_CREATE, op 1, ACKs, RESUMED, op 9; then HELLO, op 7",
        ),
    ]


def all_cases() -> list[Case]:
    return [
        *recorded_cases(),
        *capture_cases(),
        *upgrade_cases(),
        *control_cases(),
        *payload_cases(),
    ]


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else CORPUS
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.case"):
        old.unlink()
    cases = all_cases()
    total = 0
    for case in cases:
        data = case.dumps()
        total += len(data)
        (target / f"{case.name}.case").write_bytes(data)
    print(f"{len(cases)} cases, {total} bytes in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
