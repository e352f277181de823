"""End to end, side by side: our asyncio adapter and an aiohttp client, same bytes.

    cd <repo> && .venv/bin/python benchmarks/e2e_peer.py [--repeat 5]   # needs the bench extra

A replay server in its own process (its own core) answers each WebSocket
upgrade with the recorded small-dispatch stream (benchmarks.corpus, zlib-stream,
20,000 events): HELLO at once, then - after the client's first frame (IDENTIFY)
- READY and every dispatch in one write, as fast as loopback takes them. So
both clients read byte-identical input and the server costs nothing per event.

* ours: ``discord_gateway.adapters.asyncio.Shard``, ``async for event in shard``;
* aiohttp: ``ClientSession.ws_connect`` + ``async for msg in ws``, each message
  inflated (one zlib context, the 00 00 ff ff suffix) and decoded with orjson
  as discord.py does, then dropped.

Rounds alternate; each figure is the minimum. Wall time from the first
dispatch to the last, and the client process's CPU time over the same span.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _harness as H  # noqa: E402
from benchmarks import corpus  # noqa: E402

STREAM = "small/zlib-stream"


async def serve(directory: Path) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Request

    stream = H.Stream.load(directory, STREAM)
    hello = stream.frame_lens[0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        upgraded = False
        while not upgraded:
            data = await reader.read(65536)
            if not data:
                return
            ws.receive_data(data)
            upgraded = any(isinstance(e, Request) for e in ws.events())
        writer.write(ws.send(AcceptConnection()) + stream.wire[:hello])
        await reader.read(65536)  # IDENTIFY (whatever the client sends first)
        writer.write(stream.wire[hello:])
        while data := await reader.read(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    writer.write(ws.send(event.response()))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ws://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def ours(url: str, count: int) -> tuple[float, float, int]:
    from discord_gateway import Dispatch
    from discord_gateway.adapters.asyncio import Shard

    seen = 0
    wall = cpu = 0.0
    async with Shard("bench-token", intents=513, url=url) as shard:
        async for event in shard:
            if isinstance(event, Dispatch) and event.name != "READY":
                if seen == 0:
                    wall, cpu = time.perf_counter(), time.process_time()
                seen += 1
                if seen == count:
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    break
    return wall, cpu, seen


async def aiohttp_client(url: str, count: int) -> tuple[float, float, int]:
    import aiohttp
    import orjson

    suffix = b"\x00\x00\xff\xff"
    inflate = zlib.decompressobj().decompress
    buffer = bytearray()
    seen = 0
    wall = cpu = 0.0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/?v=10&encoding=json&compress=zlib-stream") as ws,
    ):
        identified = False
        async for message in ws:
            data = message.data
            buffer += data
            if data[-4:] != suffix:
                continue
            payload: Any = orjson.loads(inflate(buffer))
            buffer.clear()
            if not identified:  # HELLO
                identified = True
                await ws.send_str('{"op":2,"d":{"token":"bench-token","intents":513}}')
            elif payload["op"] == 0 and payload["t"] != "READY":
                if seen == 0:
                    wall, cpu = time.perf_counter(), time.process_time()
                seen += 1
                if seen == count:
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    break
    return wall, cpu, seen


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    (stream,) = corpus.build_streams("small", ["zlib-stream"])
    count = stream.timed_messages
    clients = {"ours (asyncio Shard)": ours, "aiohttp + zlib + orjson": aiohttp_client}
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="dg-e2e-") as tmp:
        stream.save(Path(tmp))
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            for _ in range(args.repeat):
                for name, client in clients.items():
                    wall, cpu, seen = asyncio.run(asyncio.wait_for(client(url, count), 120))
                    assert seen == count, (name, seen)
                    old = best.get(name, (float("inf"), float("inf")))
                    best[name] = (min(old[0], wall), min(old[1], cpu))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(10)
    print(f"# {count:,} small dispatches, zlib-stream, loopback; min of {args.repeat} rounds")
    print(f"{'client':28s} {'events/s':>10s} {'wall s':>7s} {'client CPU s':>12s} {'us/event':>9s}")
    for name, (wall, cpu) in best.items():
        print(f"{name:28s} {count / wall:10,.0f} {wall:7.3f} {cpu:12.3f} {cpu / count * 1e6:9.2f}")
    return {name: {"wall": w, "cpu": c, "events": count} for name, (w, c) in best.items()}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(serve(Path(sys.argv[2])))
    else:
        main()
