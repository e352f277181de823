"""Hostile-client fuzz target for the local gateway (sans-I/O, seeded, time-boxed).

Each round opens a connection and feeds it a mutated upgrade request, then mutated
client frames (valid payloads, junk, nasty JSON/ETF, broken headers, control frames),
cut at random places, with timers firing in between. Asserted throughout: no ERROR
log record (an internal error is logged at ERROR), nothing buffered beyond the
limits, and a well-behaved client on the same store keeps being served.

``SERVER_FUZZ_SECONDS`` (else ``FUZZ_SECONDS``, else 20) bounds the run (untraced
by coverage), ``SERVER_FUZZ_SEED`` picks the
seed. The rate is printed with ``-s``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import struct
import time
import tracemalloc

import pytest

from discord_gateway.codec import json_dumps
from discord_gateway.testing import ConnectionState, GatewayServer, ServerConfig, SessionStore
from tests.gateway_client import IDENTIFY, FakeClient
from tests.test_server_soak import untraced

SECONDS = float(os.environ.get("SERVER_FUZZ_SECONDS", os.environ.get("FUZZ_SECONDS", "20")))
SEED = int(os.environ.get("SERVER_FUZZ_SEED", "0"))

KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
TARGETS = [
    "/?v=10&encoding=json",
    "/?v=10&encoding=etf",
    "/?v=10&encoding=json&compress=zlib-stream",
    "/?v=9&encoding=json&compress=zstd-stream",
    "/?v=%C2%B2",
    "/?v=" + "9" * 5000,
    "http://[",
    "/api/v10/gateway",
    "/api/v10/gateway/bot",
    "/?encoding=\udcff",
    "*",
    "",
]
NASTY = [
    "[" * 5000,
    '{"op":' + "1" * 5000 + "}",
    '{"op":8,"d":{"guild_id":"1","query":"","limit":0,"nonce":"\\ud800"}}',
    '{"op":2,"d":' + json_dumps(IDENTIFY).decode() + "}",
    '{"op":6,"d":{"token":"x","session_id":"' + "a" * 3000 + '","seq":1e999}}',
    '{"op":6,"d":{"token":"discord-gateway-local-test-token","session_id":"s","seq":-1}}',
    '{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}',
    '{"op":4,"d":{"guild_id":"1","channel_id":null,"self_mute":false,"self_deaf":false}}',
    '{"op":1,"d":null}',
    '{"op":31,"d":[]}',
    '{"op":1.5}',
    "\x00\udcff",
]


def upgrade(rng: random.Random) -> bytes:
    target = rng.choice(TARGETS).encode("utf-8", "surrogateescape")
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if rng.random() < 0.8:
        lines += [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            KEY.rstrip(),
            b"Sec-WebSocket-Version: 13",
        ]
    if rng.random() < 0.1:
        lines += [b"X-Junk: y"] * rng.randrange(1, 300)
    if rng.random() < 0.1:
        lines.append(b"Authorization: Bot discord-gateway-local-test-token")
    head = bytearray(b"\r\n".join(lines) + b"\r\n\r\n")
    for _ in range(rng.choice([0, 0, 0, 1, 3])):  # a few byte-level mutations
        i = rng.randrange(len(head))
        op = rng.random()
        if op < 0.4:
            head[i] = rng.randrange(256)
        elif op < 0.7:
            del head[i : i + rng.randrange(1, 8)]
        else:
            head[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(head)


def frame(rng: random.Random, opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if rng.random() < 0.03:
        first |= rng.choice([0x40, 0x20, 0x10])  # RSV bits: no extension negotiated
    masked = rng.random() > 0.03
    n = len(payload)
    if n < 126:
        head = bytes([first, (0x80 if masked else 0) | n])
    elif n < 1 << 16:
        head = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    mask = bytes(rng.randrange(256) for _ in range(4))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def client_bytes(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.45:
        text = rng.choice(NASTY)
        return frame(rng, 1, text.encode("utf-8", "surrogatepass"))
    if kind < 0.6:
        return frame(
            rng, rng.choice([1, 2]), bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        )
    if kind < 0.7:
        return frame(rng, 9, b"p" * rng.choice([0, 4, 125, 126]))  # ping, maybe too long
    if kind < 0.75:
        code = rng.choice([1000, 1005, 1006, 4000, 999, 5000, 1002])
        return frame(rng, 8, struct.pack(">H", code) + rng.choice([b"", b"\xff", b"bye"]))
    if kind < 0.85:  # fragments, maybe interleaved wrongly
        return frame(rng, 1, b'{"op":', fin=False) + frame(rng, rng.choice([0, 1]), b"1}")
    if kind < 0.9:  # a huge announced length
        return frame(rng, 2, b"")[:1] + b"\xff" + struct.pack(">Q", rng.choice([1 << 62, 1 << 40]))
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))


def feed(rng: random.Random, server: GatewayServer, data: bytes, now: float) -> None:
    while data:
        cut = rng.choice([len(data), 1, rng.randrange(1, len(data) + 1)])
        server.receive_data(data[:cut], now)
        server.data_to_send()
        data = data[cut:]


def test_hostile_clients_never_make_an_error_and_a_good_client_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="discord_gateway.testing")
    rng = random.Random(SEED)
    store = SessionStore(
        ServerConfig(
            heartbeat_interval=10.0,
            enforce_identify_concurrency=False,
            enforce_session_start_limit=False,
            keep_closed_connections=50,
        ),
        seed=SEED,
    )
    good = FakeClient(store)
    good.identify()
    now = 0.0
    rounds = inputs = 0
    stop = time.monotonic() + SECONDS
    paused = contextlib.ExitStack()
    paused.enter_context(untraced())
    tracemalloc.start()
    baseline = None
    try:
        while time.monotonic() < stop:
            rounds += 1
            server = GatewayServer(store, now=now)
            feed(rng, server, upgrade(rng), now)
            inputs += 1
            for _ in range(rng.randrange(1, 12)):
                if server.state is ConnectionState.CLOSED:
                    break
                feed(rng, server, client_bytes(rng), now)
                inputs += 1
                if rng.random() < 0.2:
                    now += rng.choice([0.5, 3.0, 13.0])
                    server.handle_timer(now)
                    server.data_to_send()
                assert len(server._http_head) <= 16 * 1024
                assert server._message_size <= store.config.max_payload_size
            for _ in range(3):  # its deadlines end it (handshake, heartbeat, close) ...
                deadline = server.next_deadline()
                if deadline is None or rng.random() < 0.3:
                    break
                now = max(now, deadline)
                server.handle_timer(now)
                server.data_to_send()
            server.receive_data(None, now)  # ... or the client goes away
            assert server.state is ConnectionState.CLOSED
            # The well-behaved client is still served, at its own pace; it starts
            # over now and then (its own record of what it got grows with time).
            if rounds % 500 == 0:
                good.close(1000)
            if good.server.state is not ConnectionState.CONNECTED:
                good = FakeClient(store, now=now)
                good.identify(now=now)
            good.op(1, None, now=now)
            assert good.payloads[-1]["op"] == 11, good.payloads[-3:]
            if rounds == 2000:
                baseline, _ = tracemalloc.get_traced_memory()
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
                r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
            ][:3]
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        paused.close()
    growth = 0 if baseline is None else current - baseline
    print(
        f"server fuzz: {inputs} inputs in {rounds} connections, {inputs / SECONDS:.0f} inputs/s,"
        f" traced memory {growth / 1024:+.0f} KiB after round 2000"
    )
    assert len(store.connections) <= 50 + 16 + 2
    assert growth < 4 * 1024 * 1024
