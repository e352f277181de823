"""Timing code shared by both interpreters (ours and discord-gateway 0.4.0's venv).

Imports only the stdlib, wsproto and the decoders, never ``benchmarks.*``:
``seed_runner.py`` loads it as a top-level module inside the seed venv, where
``discord_gateway`` is 0.4.0. Everything here works with either version.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

URI = "wss://gateway.discord.gg/?v=10"
PROPERTIES = {"os": "linux", "browser": "bench", "device": "bench"}


#: Set by the worker (``run.py --gc off``): keep the cyclic GC out of the timed regions.
#: Big decoded payloads make gen-2 passes land at run-dependent points (burst noise).
GC_OFF = False


#: The timed regions count this process's CPU time, not wall time: on a shared
#: machine, time spent descheduled while other tenants run is not ours (the
#: regions do no I/O, so for them CPU time is the whole cost).
CLOCK = time.process_time


def _start_timing() -> float:
    gc.collect()
    if GC_OFF:
        gc.disable()
    return CLOCK()


def _stop_timing(t0: float) -> float:
    secs = CLOCK() - t0
    gc.enable()
    return secs


class Unsupported(Exception):
    """This implementation can't take this stream (0.4.0 has no zstd-stream)."""


@dataclass
class Stream:
    """One corpus in one encoding: the server's bytes after the HTTP upgrade."""

    name: str
    encoding: str  # "json" | "etf"
    compress: str | None  # "zlib-stream" | "zstd-stream" | None
    wire: bytes  # all WebSocket frames, back to back
    frame_lens: list[int]  # one frame per message
    payloads: list[bytes]  # each frame's payload (compressed / text / ETF bytes)
    raw_sizes: list[int]  # each message's size as JSON
    prelude: int  # leading messages fed before timing (HELLO [+ READY])

    @property
    def prelude_bytes(self) -> int:
        return sum(self.frame_lens[: self.prelude])

    @property
    def timed_messages(self) -> int:
        return len(self.frame_lens) - self.prelude

    @property
    def timed_raw_bytes(self) -> int:
        return sum(self.raw_sizes[self.prelude :])

    @property
    def timed_wire_bytes(self) -> int:
        return len(self.wire) - self.prelude_bytes

    def _stem(self, directory: Path) -> Path:
        return directory / self.name.replace("/", "__")

    def save(self, directory: Path) -> None:
        stem = self._stem(directory)
        meta = {
            "name": self.name,
            "encoding": self.encoding,
            "compress": self.compress,
            "frame_lens": self.frame_lens,
            "payload_lens": [len(p) for p in self.payloads],
            "raw_sizes": self.raw_sizes,
            "prelude": self.prelude,
        }
        stem.with_suffix(".json").write_text(json.dumps(meta))
        stem.with_suffix(".wire").write_bytes(self.wire)
        stem.with_suffix(".payloads").write_bytes(b"".join(self.payloads))

    @classmethod
    def load(cls, directory: Path, name: str) -> Stream:
        stem = directory / name.replace("/", "__")
        meta = json.loads(stem.with_suffix(".json").read_text())
        blob = stem.with_suffix(".payloads").read_bytes()
        payloads = []
        pos = 0
        for n in meta["payload_lens"]:
            payloads.append(blob[pos : pos + n])
            pos += n
        return cls(
            name=meta["name"],
            encoding=meta["encoding"],
            compress=meta["compress"],
            wire=stem.with_suffix(".wire").read_bytes(),
            frame_lens=meta["frame_lens"],
            payloads=payloads,
            raw_sizes=meta["raw_sizes"],
            prelude=meta["prelude"],
        )


def accept_response(request: bytes) -> bytes:
    """The server's 101 reply to a client's upgrade request (no extensions)."""
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    for _ in server.events():
        pass
    return server.send(AcceptConnection())


def frames(stream: Stream, start: int, stop: int | None = None) -> list[bytes]:
    out = []
    pos = sum(stream.frame_lens[:start])
    for n in stream.frame_lens[start:stop]:
        out.append(stream.wire[pos : pos + n])
        pos += n
    return out


def chunks(stream: Stream, size: int) -> list[bytes]:
    """The timed part of the wire, as reads of ``size`` bytes (0: one read per frame)."""
    if size == 0:
        return frames(stream, stream.prelude)
    data = stream.wire[stream.prelude_bytes :]
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- the client under test ------------------------------------------------------


def implementation() -> tuple[str, Any]:
    """(label, DiscordConnection class) of whichever discord_gateway this interpreter has."""
    from discord_gateway import DiscordConnection

    legacy = DiscordConnection.__module__ == "discord_gateway.conn"
    return ("0.4.0" if legacy else "ours"), DiscordConnection


def new_client(stream: Stream) -> Any:
    """A client past the upgrade and the stream's prelude (HELLO, IDENTIFY [, READY])."""
    label, cls = implementation()
    if label == "0.4.0":
        if stream.compress == "zstd-stream":
            raise Unsupported("0.4.0 has no zstd-stream")
        conn = cls(URI, encoding=stream.encoding, compress=stream.compress or False)
    else:
        conn = cls(URI, encoding=stream.encoding, compress=stream.compress)
    conn.receive(accept_response(conn.connect()))
    for _ in conn.events():
        pass
    for i, frame in enumerate(frames(stream, 0, stream.prelude)):
        conn.receive(frame)
        for _ in conn.events():
            pass
        if i == 0:  # after HELLO
            conn.identify(token="bench-token", intents=513, properties=PROPERTIES)
    return conn


def time_client(stream: Stream, data: list[bytes]) -> tuple[float, int]:
    """Seconds for ``receive()`` + draining ``events()`` over ``data``; events seen."""
    return time_client_on(new_client(stream), data)


def time_client_on(conn: Any, data: list[bytes]) -> tuple[float, int]:
    """:func:`time_client` on a client already past the stream's prelude."""
    receive = conn.receive
    events = conn.events
    n = 0
    _ev = None
    t0 = _start_timing()
    for chunk in data:
        receive(chunk)
        for _ev in events():
            n += 1
        # Drop the last event now, as the floors drop each result at once: a lingering
        # event keeps a whole GUILD_CREATE alive while the next one is decoded, which
        # cost ~15-20 % on the burst (fresh arenas, page faults), not the client's doing.
        _ev = None
    del _ev
    return _stop_timing(t0), n


# -- the floors ------------------------------------------------------------------


def _loads() -> Callable[[Any], Any]:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover
        return json.loads


def new_decoder(stream: Stream) -> Callable[[Any], Any]:
    """inflate + decode of one whole message payload, with a fresh per-connection context."""
    loads = _loads()
    if stream.encoding == "etf":
        import erlpack

        unpack = erlpack.unpack
        if stream.compress is None:
            return lambda b: unpack(bytes(b))
        loads = lambda b: unpack(bytes(b))  # noqa: E731
    if stream.compress == "zlib-stream":
        inflate = zlib.decompressobj().decompress
        return lambda b: loads(inflate(b))
    if stream.compress == "zstd-stream":
        import zstandard

        zinflate = zstandard.ZstdDecompressor().decompressobj().decompress
        return lambda b: loads(zinflate(b))
    return loads


def time_floor(stream: Stream) -> tuple[float, int]:
    """(a) inflate + decode of the same messages: no framing, no client."""
    decode = new_decoder(stream)
    for p in stream.payloads[: stream.prelude]:
        decode(p)
    timed = stream.payloads[stream.prelude :]
    t0 = _start_timing()
    for p in timed:
        decode(p)
    return _stop_timing(t0), len(timed)


def time_wsproto_floor(stream: Stream, data: list[bytes]) -> tuple[float, int]:
    """(b) wsproto's client-side parsing of the same reads + the floor per message."""
    ws = WSConnection(ConnectionType.CLIENT)
    ws.receive_data(accept_response(ws.send(Request(host="gateway.discord.gg", target="/"))))
    for _ in ws.events():
        pass
    decode = new_decoder(stream)
    for p in stream.payloads[: stream.prelude]:
        decode(p)
    ws.receive_data(stream.wire[: stream.prelude_bytes])
    for _ in ws.events():
        pass
    receive_data = ws.receive_data
    events = ws.events
    parts: list[Any] = []
    n = 0
    t0 = _start_timing()
    for chunk in data:
        receive_data(chunk)
        for ev in events():
            if isinstance(ev, (BytesMessage, TextMessage)):
                if ev.message_finished:
                    if parts:
                        parts.append(ev.data)
                        decode(
                            b"".join(parts)
                            if isinstance(ev.data, bytes | bytearray)
                            else "".join(parts)
                        )
                        parts.clear()
                    else:
                        decode(ev.data)
                    n += 1
                else:
                    parts.append(ev.data)
    return _stop_timing(t0), n


def new_aiohttp_reader() -> tuple[Any, Any]:
    """aiohttp's WebSocket reader (its compiled one when installed) and its queue,
    outside any event loop: ``feed_data(read)``, then messages pile up in the queue."""
    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

    class Protocol:  # what the queue asks of aiohttp's transport protocol
        _reading_paused = False

        def pause_reading(self) -> None:  # pragma: no cover - never over the limit
            raise AssertionError("the benchmark queue is never full")

        def resume_reading(self) -> None:  # pragma: no cover
            pass

    queue = WebSocketDataQueue(Protocol(), 2**30, loop=None)
    return WebSocketReader(queue, 16 * 1024 * 1024, compress=False, decode_text=True), queue


def time_aiohttp(stream: Stream, data: list[bytes], hold: bool = False) -> tuple[float, int]:
    """(c) the transport under discord.py and hikari: aiohttp's WebSocket reader fed
    the same reads, each message then inflated and decoded as discord.py does
    (zlib-stream: buffer until the 00 00 ff ff suffix, inflate, orjson), and
    dropped at once - or, with ``hold``, kept until the read is done, as our
    ``receive()``-then-``events()`` API keeps a read's events."""
    reader, queue = new_aiohttp_reader()
    decode = new_decoder(stream)
    for p in stream.payloads[: stream.prelude]:
        decode(p)
    reader.feed_data(stream.wire[: stream.prelude_bytes])
    buffer = queue._buffer
    buffer.clear()
    feed = reader.feed_data
    popleft = buffer.popleft
    zlib_stream = stream.compress == "zlib-stream"
    suffix = b"\x00\x00\xff\xff"
    parts = bytearray()
    held: list[Any] = []
    n = 0
    t0 = _start_timing()
    for chunk in data:
        feed(chunk)
        while buffer:
            message = popleft()[0]
            raw = message.data
            if zlib_stream and (parts or raw[-4:] != suffix):
                parts += raw  # a message split over several WebSocket messages
                if raw[-4:] != suffix:
                    continue
                raw = bytes(parts)
                parts.clear()
            payload = decode(raw)
            if hold:
                held.append(payload)
            n += 1
        held.clear()
    return _stop_timing(t0), n


# -- memory ----------------------------------------------------------------------


def idle_memory(stream: Stream, n: int) -> dict[str, Any]:
    """tracemalloc per connection for ``n`` clients left idle after the stream's prelude."""
    label, _ = implementation()
    new_client(stream)  # warm caches/imports so they aren't charged to the connections
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()  # (kept alive, so it is part of ``base``)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    conns = [new_client(stream) for _ in range(n)]
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    top = [
        {"where": str(st.traceback[0]), "bytes_per_conn": st.size_diff / n}
        for st in after.compare_to(before, "lineno")[:12]
    ]
    tracemalloc.stop()
    assert len(conns) == n
    return {
        "impl": label,
        "n": n,
        "current_per_conn": (current - base) / n,
        "peak_per_conn": (peak - base) / n,
        "top": top,
    }


# -- optional speedups: decoders alone -----------------------------------------------


def _min_time(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def codec_timings(zlib_s: Stream, zstd_s: Stream, json_s: Stream, repeat: int) -> dict[str, Any]:
    """Seconds for every message of a corpus through each available inflater / decoder.

    Streams are decoded whole (prelude included) so each context sees its full stream.
    """
    out: dict[str, Any] = {}
    inflaters: dict[str, Callable[[], Any]] = {"zlib": zlib.decompressobj}
    try:
        from zlib_ng import zlib_ng

        inflaters["zlib_ng"] = zlib_ng.decompressobj
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        inflaters["isal"] = isal_zlib.decompressobj
    except ImportError:
        pass
    for name, factory in inflaters.items():

        def run_inflate(factory: Callable[[], Any] = factory) -> None:
            inflate = factory().decompress
            for p in zlib_s.payloads:
                inflate(p)

        out[f"inflate:{name}"] = _min_time(run_inflate, repeat)
    try:
        import zstandard

        def run_zstd() -> None:
            inflate = zstandard.ZstdDecompressor().decompressobj().decompress
            for p in zstd_s.payloads:
                inflate(p)

        out["inflate:zstd"] = _min_time(run_zstd, repeat)
    except ImportError:
        pass
    decoders: dict[str, Callable[[Any], Any]] = {"json": json.loads}
    try:
        import orjson

        decoders["orjson"] = orjson.loads
    except ImportError:
        pass
    for name, loads in decoders.items():

        def run_decode(loads: Callable[[Any], Any] = loads) -> None:
            for p in json_s.payloads:
                loads(p)

        out[f"decode:{name}"] = _min_time(run_decode, repeat)
    out["messages"] = len(json_s.payloads)
    out["raw_bytes"] = sum(json_s.raw_sizes)
    return out
