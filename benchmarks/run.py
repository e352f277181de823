"""Run the benchmark suite and print ratios measured in the same run.

    cd <repo> && PYTHONPATH=. .venv/bin/python benchmarks/run.py [--quick] [--only SECTION]
                                                                  [--repeat N] [--json FILE]

Sections: small, burst, memory, scaling, codecs, profile, e2e (default: all but profile).
Both implementations run in worker subprocesses (``seed_runner.py``): ours with
this interpreter and PYTHONPATH, discord-gateway 0.4.0 from ``benchmarks/.venv-seed``
(created on first use; ``--no-seed`` skips it). Workers are asked in turn, one at a
time, and every figure is the minimum over ``--repeat`` interleaved rounds, so
slow phases of a noisy machine hit every implementation alike. See README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED_VENV = HERE / ".venv-seed"
SEED_PACKAGES = ("discord-gateway==0.4.0", "orjson", "erlpack")
EXTRAS_VENV = HERE / ".venv-extras"
EXTRAS_PACKAGES = ("wsproto", "orjson", "zstandard", "zlib-ng", "isal")

if str(ROOT) not in sys.path:  # `python benchmarks/run.py` without PYTHONPATH
    sys.path.insert(0, str(ROOT))

from benchmarks import corpus  # noqa: E402
from benchmarks._harness import Stream  # noqa: E402

SECTIONS = ("small", "burst", "memory", "scaling", "codecs", "profile", "e2e")
DEFAULT_SECTIONS = ("small", "burst", "memory", "scaling", "codecs", "e2e")
READ_SIZES = {"16K": 16384, "64K": 65536, "frame": 0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- workers -----------------------------------------------------------------------


def venv_python(venv: Path, packages: tuple[str, ...], create: bool) -> Path | None:
    """A benchmark venv's python, creating the venv on demand (needs PyPI)."""
    py = venv / "bin" / "python"
    if py.exists():
        return py
    if not create:
        return None
    log(f"creating {venv} with {' '.join(packages)} ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"could not create {venv} ({exc}): its figures are skipped")
        return None
    return py


def seed_python(create: bool) -> Path | None:
    """The seed venv (discord-gateway 0.4.0)."""
    return venv_python(SEED_VENV, SEED_PACKAGES, create)


def worker_env(ours: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if ours:
        env["PYTHONPATH"] = str(ROOT)
    return env


#: The compiled build (setup.py, DISCORD_GATEWAY_COMPILE=1), made by
#: benchmarks/compiled_suite.sh; its worker imports the installed package.
COMPILED_VENV = ROOT / ".venv-compiled"


def compiled_python() -> Path | None:
    py = COMPILED_VENV / "bin" / "python"
    if not py.exists():
        return None
    probe = subprocess.run(
        [str(py), "-I", "-c", "import discord_gateway._fastframes as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        env=worker_env(False),
        check=False,
    )
    if probe.returncode or probe.stdout.strip().endswith(".py"):
        log(f"{COMPILED_VENV} has no compiled build: run benchmarks/compiled_suite.sh")
        return None
    return py


class Worker:
    """A ``seed_runner.py serve`` subprocess, one request at a time."""

    def __init__(self, python: Path | str, corpus_dir: Path, ours: bool) -> None:
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "seed_runner.py"), str(corpus_dir), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(ours),
        )
        self.info = self.ask({"op": "info"})
        self.label = self.info["impl"]

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died on {cmd}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def one_shot(python: Path | str, corpus_dir: Path, ours: bool, *args: str) -> str:
    out = subprocess.run(
        [str(python), str(HERE / "seed_runner.py"), str(corpus_dir), *args],
        capture_output=True,
        text=True,
        env=worker_env(ours),
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"{python} seed_runner.py {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


# -- throughput ----------------------------------------------------------------------


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if "seconds" in r]
    if not ok:
        return results[-1] if results else {"error": "not run"}
    return min(ok, key=lambda r: r["seconds"])


def throughput(
    streams: list[Stream],
    reads: dict[str, int],
    ours: Worker,
    seed: Worker | None,
    repeat: int,
    gc_off: bool = False,
    compiled: Worker | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for stream in streams:
        floor_runs: list[dict[str, Any]] = []
        kinds = ("wsproto", "ours", "0.4.0", "compiled", "aiohttp", "aiohttp_hold")
        per_read: dict[str, dict[str, list[dict[str, Any]]]] = {
            r: {k: [] for k in kinds} for r in reads
        }
        for _ in range(repeat):
            floor = {"op": "time", "kind": "floor", "stream": stream.name, "gc_off": gc_off}
            floor_runs.append(ours.ask(floor))
            for read, size in reads.items():
                cmd = {"op": "time", "stream": stream.name, "chunk": size, "gc_off": gc_off}
                runs = per_read[read]
                runs["wsproto"].append(ours.ask({**cmd, "kind": "wsproto"}))
                runs["ours"].append(ours.ask({**cmd, "kind": "client"}))
                if compiled is not None:
                    runs["compiled"].append(compiled.ask({**cmd, "kind": "client"}))
                runs["aiohttp"].append(ours.ask({**cmd, "kind": "aiohttp"}))
                runs["aiohttp_hold"].append(ours.ask({**cmd, "kind": "aiohttp_hold"}))
                if seed is not None:
                    runs["0.4.0"].append(seed.ask({**cmd, "kind": "client"}))
        floor = _best(floor_runs)
        for read in reads:
            runs = per_read[read]
            row: dict[str, Any] = {
                "stream": stream.name,
                "read": read,
                "messages": stream.timed_messages,
                "raw_bytes": stream.timed_raw_bytes,
                "wire_bytes": stream.timed_wire_bytes,
                "floor": floor,
                "wsproto": _best(runs["wsproto"]),
                "ours": _best(runs["ours"]),
                "0.4.0": _best(runs["0.4.0"]) if seed is not None else {"skipped": "--no-seed"},
                "compiled": _best(runs["compiled"]),
                "aiohttp": _best(runs["aiohttp"]),
                "aiohttp_hold": _best(runs["aiohttp_hold"]),
            }
            rows.append(row)
        ours.ask({"op": "drop"})
        if seed is not None:
            seed.ask({"op": "drop"})
        if compiled is not None:
            compiled.ask({"op": "drop"})
    return rows


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if "seconds" in a and "seconds" in b and b["seconds"] > 0:
        return float(a["seconds"]) / float(b["seconds"])
    return None


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def print_throughput(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {title}: receive() + events() vs the floors (min of repeats)")
    head = (
        f"{'stream':<20} {'read':>5} {'events':>6} {'ours ev/s':>10} {'MB/s':>7} "
        f"{'ours/floor':>10} {'ours/(ws+fl)':>12} {'(ws+fl)/fl':>10} {'0.4.0/ours':>10} "
        f"{'0.4.0 ev/s':>10} {'compiled/fl':>11} {'aiohttp/fl':>10} {'aio held/fl':>11} "
        f"{'0.4.0/fl':>8}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        o = row["ours"]
        s = row["0.4.0"]
        evs = o["events"] / o["seconds"] if "seconds" in o else None
        mbs = row["raw_bytes"] / o["seconds"] / 1e6 if "seconds" in o else None
        row["ratios"] = {
            "ours/floor": _ratio(o, row["floor"]),
            "ours/wsproto+floor": _ratio(o, row["wsproto"]),
            "wsproto+floor/floor": _ratio(row["wsproto"], row["floor"]),
            "0.4.0/ours": _ratio(s, o),
            "compiled/floor": _ratio(row.get("compiled", {}), row["floor"]),
            "aiohttp/floor": _ratio(row.get("aiohttp", {}), row["floor"]),
            "aiohttp_held/floor": _ratio(row.get("aiohttp_hold", {}), row["floor"]),
            "0.4.0/floor": _ratio(s, row["floor"]),
        }
        seed_evs = s["events"] / s["seconds"] if "seconds" in s else None
        note = ""
        if "seconds" not in o:
            note = "  ours: " + str(o.get("error") or o.get("unsupported"))
        elif "seconds" not in s:
            note = "  0.4.0: " + str(s.get("unsupported") or s.get("error") or s.get("skipped"))
        counts = {row["floor"].get("events"), row["wsproto"].get("events"), o.get("events")}
        if s.get("events") is not None:
            counts.add(s["events"])
        if len(counts) != 1:
            note += f"  EVENT COUNTS DIFFER: {sorted(map(str, counts))}"
        r = row["ratios"]
        print(
            f"{row['stream']:<20} {row['read']:>5} {row['messages']:>6} "
            f"{_fmt(evs, ',.0f', ''):>10} {_fmt(mbs, '.1f', ''):>7} "
            f"{_fmt(r['ours/floor']):>10} {_fmt(r['ours/wsproto+floor']):>12} "
            f"{_fmt(r['wsproto+floor/floor']):>10} {_fmt(r['0.4.0/ours']):>10} "
            f"{_fmt(seed_evs, ',.0f', ''):>10} {_fmt(r['compiled/floor']):>11} "
            f"{_fmt(r['aiohttp/floor']):>10} {_fmt(r['aiohttp_held/floor']):>11} "
            f"{_fmt(r['0.4.0/floor']):>8}{note}"
        )


# -- memory ------------------------------------------------------------------------


def memory(corpus_dir: Path, seed_py: Path | None, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    targets: list[tuple[str, Path | str, bool]] = [("ours", sys.executable, True)]
    if seed_py is not None:
        targets.append(("0.4.0", seed_py, False))
    for label, py, is_ours in targets:
        text = one_shot(py, corpus_dir, is_ours, "memory", "small/zlib-stream", str(n))
        out[label] = json.loads(text)
    print(f"\n## Idle connections after HELLO + IDENTIFY + READY, zlib-stream, n={n} (tracemalloc)")
    print(f"{'impl':<6} {'current/conn':>13} {'peak/conn':>10}")
    for label, res in out.items():
        print(
            f"{label:<6} {res['current_per_conn'] / 1024:>10.1f} KiB "
            f"{res['peak_per_conn'] / 1024:>7.1f} KiB"
        )
    if "0.4.0" in out:
        ratio = out["ours"]["current_per_conn"] / out["0.4.0"]["current_per_conn"]
        out["ratio"] = ratio
        print(f"ours/0.4.0 (current): {ratio:.2f}x   (target <= 1.2x)")
    for label, res in out.items():
        if label == "ratio":
            continue
        print(f"top allocation sites per connection ({label}):")
        for site in res["top"][:8]:
            print(f"  {site['bytes_per_conn'] / 1024:8.2f} KiB  {site['where']}")
    return out


# -- scaling -------------------------------------------------------------------------


def scaling_streams(quick: bool) -> list[tuple[Stream, int]]:
    """(stream, read size): one big GUILD_CREATE per stream, growing sizes."""
    out = []
    plan = [("zlib-stream", 1, (64, 128, 256) if quick else (500, 1000, 2000, 4000))]
    plan.append(("json", 64, (256, 512, 1024) if quick else (1000, 2000, 4000, 8000)))
    for fmt, read, sizes_kb in plan:
        for kb in sizes_kb:
            msgs = [corpus.hello(), corpus.big_message(kb * 1000)]
            # hello-only prelude + one big dispatch: ours rejects dispatches before IDENTIFY,
            # so the harness identifies after HELLO and the big one is timed.
            out.append((corpus.encode(msgs, f"scale/{fmt}/{kb}kB", fmt, 1), read))
    return out


def scaling(
    corpus_dir: Path, ours: Worker, seed: Worker | None, quick: bool, repeat: int
) -> list[dict[str, Any]]:
    print("\n## Scaling: one big message in small reads (time per wire byte should stay flat)")
    head = (
        f"{'stream':<24} {'read':>4} {'wire':>9} {'raw':>9}  {'impl':<6} "
        f"{'seconds':>8} {'ns/byte':>8}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    budget = 3.0 if quick else 30.0  # stop growing an implementation past this (quadratic!)
    too_slow: set[str] = set()
    for stream, read in scaling_streams(quick):
        stream.save(corpus_dir)
        for worker in (ours, seed):
            if worker is None:
                continue
            fam = f"{worker.label}:{stream.name.rsplit('/', 1)[0]}"
            if fam in too_slow:
                res: dict[str, Any] = {"skipped": "previous size over budget"}
            else:
                cmd = {"op": "time", "kind": "client", "stream": stream.name, "chunk": read}
                res = _best([worker.ask(cmd) for _ in range(repeat)])
                worker.ask({"op": "drop"})
                if res.get("seconds", 0) > budget:
                    too_slow.add(fam)
            row = {
                "stream": stream.name,
                "read": read,
                "wire_bytes": stream.timed_wire_bytes,
                "raw_bytes": stream.timed_raw_bytes,
                "impl": worker.label,
                **res,
            }
            if "seconds" in res:
                row["ns_per_byte"] = res["seconds"] / stream.timed_wire_bytes * 1e9
            rows.append(row)
            print(
                f"{stream.name:<24} {read:>4} {stream.timed_wire_bytes:>9,} "
                f"{stream.timed_raw_bytes:>9,}  {worker.label:<6} "
                f"{_fmt(res.get('seconds'), '.3f', ''):>8} "
                f"{_fmt(row.get('ns_per_byte'), '.0f', ''):>8}"
                + ("" if "seconds" in res else "  " + str(next(iter(res.values()))))
            )
    for impl in {r["impl"] for r in rows}:
        for fam in sorted({r["stream"].rsplit("/", 1)[0] for r in rows}):
            pts = [r for r in rows if r["impl"] == impl and r["stream"].startswith(fam + "/")]
            pts = [r for r in pts if "ns_per_byte" in r]
            if len(pts) >= 2:
                growth = pts[-1]["ns_per_byte"] / pts[0]["ns_per_byte"]
                size_x = pts[-1]["wire_bytes"] / pts[0]["wire_bytes"]
                print(
                    f"{impl:<6} {fam}: per-byte cost x{growth:.2f} while the message grew "
                    f"x{size_x:.1f}  ({'linear' if growth < 2 else 'SUPERLINEAR'})"
                )
    return rows


# -- optional speedups --------------------------------------------------------------


def codecs(corpus_dir: Path, create: bool, repeat: int) -> dict[str, Any]:
    """Inflaters and decoders alone, for choosing the optional extras by measurement."""
    print("\n## Optional speedups: inflate / decode alone (min of repeats; speedup vs stdlib)")
    py = venv_python(EXTRAS_VENV, EXTRAS_PACKAGES, create)
    if py is None:
        print(f"skipped: no {EXTRAS_VENV}")
        return {}
    out: dict[str, Any] = {}
    for name in ("small", "burst"):
        res = json.loads(one_shot(py, corpus_dir, False, "codecs", name, str(repeat)))
        out[name] = res
        mb = res["raw_bytes"] / 1e6
        parts = []
        for key in ("inflate:zlib_ng", "inflate:isal", "inflate:zstd"):
            if key in res:
                parts.append(f"{key.split(':')[1]} x{res['inflate:zlib'] / res[key]:.2f}")
        if "decode:orjson" in res:
            parts.append(f"orjson x{res['decode:json'] / res['decode:orjson']:.2f} vs json")
        print(
            f"{name:<6} {res['messages']:>6} msgs {mb:6.1f} MB: zlib inflate "
            f"{res['inflate:zlib'] * 1e3:7.1f} ms, json {res['decode:json'] * 1e3:7.1f} ms, "
            f"orjson {res.get('decode:orjson', float('nan')) * 1e3:7.1f} ms | " + ", ".join(parts)
        )
    return out


# -- profile / e2e -------------------------------------------------------------------


def profile(corpus_dir: Path) -> None:
    for name, read in (("small/zlib-stream", 65536), ("burst/zlib-stream", 65536)):
        print(f"\n## cProfile of ours: {name}, {read}-byte reads (sorted by own time)")
        print(one_shot(sys.executable, corpus_dir, True, "profile", name, str(read)))


def e2e(count: int = 100_000) -> dict[str, Any]:
    """The asyncio adapter receiving ``count`` events from the local gateway over loopback.

    The server runs in its own process (benchmarks/e2e_server.py), so the
    client has a core to itself; the figure is events/s from the first dispatch
    to the last, through TCP, zlib-stream, the core and the adapter's queue.
    """
    print(f"\n## End-to-end: asyncio adapter, {count:,} events from the local server over loopback")
    import asyncio
    import subprocess

    from discord_gateway import Dispatch
    from discord_gateway.adapters.asyncio import Shard

    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.e2e_server", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert server.stdout is not None
        url, token = server.stdout.readline().split()

        async def receive() -> tuple[float, int]:
            seen = 0
            first = 0.0
            async with Shard(token, intents=513, url=url) as shard:
                async for event in shard:
                    if isinstance(event, Dispatch) and event.name not in ("READY", "GUILD_CREATE"):
                        if seen == 0:
                            first = time.perf_counter()
                        seen += 1
                        if seen == count:
                            break
            return time.perf_counter() - first, seen

        elapsed, seen = asyncio.run(asyncio.wait_for(receive(), 600))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
    rate = seen / elapsed
    print(f"{seen:,} events in {elapsed:.2f} s: {rate:,.0f} events/s end to end")
    return {"available": True, "events": seen, "seconds": elapsed, "events_per_s": rate}


# -- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny corpora, 1 repeat (smoke test)")
    ap.add_argument("--only", choices=SECTIONS, action="append", help="run only this section")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved rounds (default 5)")
    ap.add_argument("--memory-n", type=int, default=None, help="idle connections (default 1000)")
    ap.add_argument("--no-seed", action="store_true", help="skip discord-gateway 0.4.0")
    ap.add_argument(
        "--gc",
        choices=("on", "off"),
        default="on",
        help="cyclic GC during timed regions of small/burst (off: less noise on the burst)",
    )
    ap.add_argument("--json", type=Path, help="also write all results as JSON here")
    args = ap.parse_args(argv)
    sections = tuple(args.only or DEFAULT_SECTIONS)
    repeat = args.repeat or (1 if args.quick else 5)
    reads = {"64K": 65536, "frame": 0} if args.quick else READ_SIZES
    results: dict[str, Any] = {
        "quick": args.quick,
        "repeat": repeat,
        "sections": sections,
        "gc": args.gc,
    }

    seed_py = None if args.no_seed else seed_python(create=not args.quick)
    with tempfile.TemporaryDirectory(prefix="dg-bench-") as tmp:
        corpus_dir = Path(tmp)
        t0 = time.perf_counter()
        built: dict[str, list[Stream]] = {}
        for name in ("small", "burst"):
            if (
                name in sections
                or (name == "small" and "memory" in sections)
                or "profile" in sections
                or "codecs" in sections
            ):
                built[name] = corpus.build_streams(name, quick=args.quick)
                for s in built[name]:
                    s.save(corpus_dir)
        log(f"corpus built in {time.perf_counter() - t0:.1f}s")
        ours = Worker(sys.executable, corpus_dir, ours=True)
        seed = Worker(seed_py, corpus_dir, ours=False) if seed_py is not None else None
        compiled_py = None if args.quick else compiled_python()
        compiled = Worker(compiled_py, corpus_dir, ours=False) if compiled_py else None
        if compiled is not None:
            print(f"# compiled: {compiled.info['module']}")
        results["workers"] = {"ours": ours.info, "0.4.0": seed.info if seed else None}
        print(f"# ours: {ours.info['module']}")
        if seed is not None:
            print(f"# 0.4.0: {seed.info['module']}")
        print(
            f"# gc {args.gc} in timed regions; min of {repeat} interleaved repeats; ratios are "
            "time ratios (lower is better for ours/...; 0.4.0/ours > 1 means ours is faster)"
        )
        try:
            for name, title in (("small", "Small dispatches"), ("burst", "Startup burst")):
                if name in sections:
                    rows = throughput(
                        built[name], reads, ours, seed, repeat, args.gc == "off", compiled
                    )
                    print_throughput(title, rows)
                    results[name] = rows
            if "memory" in sections:
                n = args.memory_n or (20 if args.quick else 1000)
                results["memory"] = memory(corpus_dir, seed_py, n)
            if "scaling" in sections:
                results["scaling"] = scaling(
                    corpus_dir, ours, seed, args.quick, 1 if args.quick else min(repeat, 2)
                )
            if "codecs" in sections:
                results["codecs"] = codecs(corpus_dir, not args.quick, repeat)
            if "profile" in sections:
                profile(corpus_dir)
            if "e2e" in sections:
                results["e2e"] = e2e()
        finally:
            ours.close()
            if seed is not None:
                seed.close()
            if compiled is not None:
                compiled.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
