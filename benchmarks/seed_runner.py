"""Benchmark worker: times whichever ``discord_gateway`` its interpreter imports.

``run.py`` starts it twice: with the seed venv's python (discord-gateway 0.4.0,
which shares our import name) and with ours (PYTHONPATH = the repo). Both read
the same corpus files, so they see byte-identical input and run the same
timing code (``_harness.py``). It never imports the repository itself.

Commands:
    seed_runner.py CORPUS_DIR serve        JSON lines on stdin -> one JSON line out each:
        {"op": "time", "kind": "client"|"floor"|"wsproto"|"aiohttp"|"aiohttp_hold",
         "stream": NAME, "chunk": N,
         "gc_off": false}
        {"op": "info"}   {"op": "quit"}
    seed_runner.py CORPUS_DIR memory STREAM N
    seed_runner.py CORPUS_DIR profile STREAM CHUNK   (cProfile of the client, top functions)
    seed_runner.py CORPUS_DIR codecs CORPUS REPEAT   (inflaters/decoders alone; any venv)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import _harness as h  # the script's folder is sys.path[0]


class Worker:
    def __init__(self, corpus: Path) -> None:
        self.corpus = corpus
        self.streams: dict[str, h.Stream] = {}
        self.cache: dict[tuple[str, int], list[bytes]] = {}

    def stream(self, name: str) -> h.Stream:
        if name not in self.streams:
            self.streams[name] = h.Stream.load(self.corpus, name)
        return self.streams[name]

    def data(self, name: str, chunk: int) -> list[bytes]:
        key = (name, chunk)
        if key not in self.cache:
            if chunk and chunk < 1024:  # 1-byte reads etc.: too big to keep around
                return h.chunks(self.stream(name), chunk)
            self.cache[key] = h.chunks(self.stream(name), chunk)
        return self.cache[key]

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "info":
            import discord_gateway

            label, _ = h.implementation()
            return {"impl": label, "module": discord_gateway.__file__, "python": sys.version}
        if op == "drop":
            self.streams.clear()
            self.cache.clear()
            return {}
        if op != "time":
            raise ValueError(f"unknown op {op!r}")
        stream = self.stream(cmd["stream"])
        kind = cmd["kind"]
        h.GC_OFF = bool(cmd.get("gc_off", False))
        if kind == "floor":
            secs, n = h.time_floor(stream)
        elif kind == "wsproto":
            secs, n = h.time_wsproto_floor(stream, self.data(cmd["stream"], cmd["chunk"]))
        elif kind == "aiohttp" or kind == "aiohttp_hold":
            data = self.data(cmd["stream"], cmd["chunk"])
            secs, n = h.time_aiohttp(stream, data, hold=kind == "aiohttp_hold")
        elif kind == "client":
            try:
                secs, n = h.time_client(stream, self.data(cmd["stream"], cmd["chunk"]))
            except h.Unsupported as exc:
                return {"unsupported": str(exc)}
        else:
            raise ValueError(f"unknown kind {kind!r}")
        return {"seconds": secs, "events": n}


def serve(worker: Worker) -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            reply = worker.handle(cmd)
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def profile(worker: Worker, name: str, chunk: int) -> None:
    import cProfile
    import pstats

    stream = worker.stream(name)
    data = worker.data(name, chunk)
    h.time_client(stream, data)  # warm up
    prof = cProfile.Profile()
    prof.enable()
    secs, n = h.time_client(stream, data)
    prof.disable()
    print(f"# {name} chunk={chunk}: {n} events (profiled run {secs * 1e3:.0f} ms)")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def main(argv: list[str]) -> None:
    worker = Worker(Path(argv[0]))
    cmd = argv[1]
    if cmd == "serve":
        serve(worker)
    elif cmd == "memory":
        print(json.dumps(h.idle_memory(worker.stream(argv[2]), int(argv[3]))))
    elif cmd == "profile":
        profile(worker, argv[2], int(argv[3]))
    elif cmd == "codecs":  # needs no discord_gateway: run by the extras venv
        corpus, repeat = argv[2], int(argv[3])
        streams = [
            worker.stream(f"{corpus}/{fmt}") for fmt in ("zlib-stream", "zstd-stream", "json")
        ]
        print(json.dumps(h.codec_timings(*streams, repeat)))
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
