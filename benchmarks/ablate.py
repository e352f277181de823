"""Where our per-event overhead goes: replace one part of our path at a time.

    cd <repo> && .venv/bin/python benchmarks/ablate.py [--repeat N] [--read 16384]

Small dispatches, zlib-stream, in one process. Each variant patches one piece of
``DiscordConnection`` (restored after the round), and every variant plus the
(wsproto + floor) baseline runs once per round, rounds interleaved; each figure
is the minimum over the rounds. Also counts the cyclic GC's collections per
variant (``gc.callbacks``). Results are in benchmarks/README.md, "Where the time
goes". Not used by CI.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _harness as H  # noqa: E402
from benchmarks import corpus  # noqa: E402
from discord_gateway.connection import DiscordConnection  # noqa: E402
from discord_gateway.events import new_dispatch  # noqa: E402

Patch = Callable[[Any], None]
_ORIGINAL_ON_DISPATCH = DiscordConnection._on_dispatch


def _shipped(conn: Any) -> None:
    pass


def _gc_off(conn: Any) -> None:
    gc.disable()


def _gc_threshold(conn: Any) -> None:
    gc.set_threshold(10_000, 10, 10)


def _no_events(conn: Any) -> None:
    DiscordConnection._on_dispatch = lambda self, payload: None  # type: ignore[method-assign]


def _unchecked(conn: Any) -> None:
    # The payload queued as is (events() still builds its Dispatch): what the checks cost.
    DiscordConnection._on_dispatch = (  # type: ignore[method-assign]
        lambda self, payload: self._events.append(payload)
    )


def _built_at_receive(conn: Any) -> None:
    # As before: the Dispatch built in receive() and held until events() yields it.
    def on_dispatch(self: Any, payload: Any) -> None:
        _ORIGINAL_ON_DISPATCH(self, payload)
        if self._events and self._events[-1] is payload:
            p = self._events.pop()
            self._events.append(new_dispatch(p["t"], p.get("s"), p.get("d"), p))

    DiscordConnection._on_dispatch = on_dispatch  # type: ignore[method-assign]


_HANDED: list[Any] = []


def _handed_over(conn: Any) -> None:
    # A prototype of an opt-in API that hands each event over as it is parsed
    # (a callback, here one that drops it) instead of holding it until events().
    def on_dispatch(self: Any, payload: Any) -> None:
        _ORIGINAL_ON_DISPATCH(self, payload)
        if self._events and self._events[-1] is payload:
            p = self._events.pop()
            _HANDED.append(new_dispatch(p["t"], p.get("s"), p.get("d"), p))
            _HANDED.clear()  # the callback returns: the event is dropped

    DiscordConnection._on_dispatch = on_dispatch  # type: ignore[method-assign]


class _BareCodec:
    """``loads(decompress(data))``, joining a message split across reads."""

    max_size = 16 * 1024 * 1024  # the fast path's frame cap

    def __init__(self, inflate: Callable[[Any], bytes], loads: Callable[[Any], Any]) -> None:
        self._inflate = inflate
        self._loads = loads
        self._parts: list[bytes] = []

    def binary_message(self, data: Any) -> Any:
        return self.binary(data, True)

    def binary(self, data: Any, finished: bool) -> Any:
        if finished and not self._parts:
            return self._loads(self._inflate(data))
        self._parts.append(self._inflate(data))
        if not finished:
            return None
        message = b"".join(self._parts)
        self._parts.clear()
        return self._loads(message)


def _bare_codec(conn: Any) -> None:
    # The connection's own inflate context: it has already seen the prelude.
    conn._codec = _BareCodec(conn._codec._inflater._inflater.decompress, H._loads())


_BIG_HEAP: list[Any] = []


def _big_heap(conn: Any) -> None:
    # A process the size of a real bot's (caches: ~300K long-lived objects) instead
    # of this benchmark's ~17K: the full collection comes only once the objects
    # promoted since the last one reach a quarter of the heap, so it stops running.
    _BIG_HEAP.extend([i] for i in range(300_000))


def _fast_off(conn: Any) -> None:
    conn._fast_frames = False


VARIANTS: dict[str, Patch] = {
    "ours as shipped": _shipped,
    "fast_frames=False (all frames via wsproto)": _fast_off,
    "cyclic GC off": _gc_off,
    "gc.set_threshold(10_000)": _gc_threshold,
    "a bot-sized heap (+300K live objects)": _big_heap,
    "no events queued (_on_dispatch no-op)": _no_events,
    "events handed over as parsed (callback API)": _handed_over,
    "Dispatch built in receive() (as before)": _built_at_receive,
    "no _on_dispatch checks": _unchecked,
    "codec = loads(decompress(data))": _bare_codec,
}


def _restore() -> None:
    DiscordConnection._on_dispatch = _ORIGINAL_ON_DISPATCH  # type: ignore[method-assign]
    _BIG_HEAP.clear()
    gc.enable()
    gc.set_threshold(700, 10, 10)


def run_variant(
    stream: H.Stream, data: list[bytes], patch: Patch
) -> tuple[float, tuple[int, int, int], float]:
    """Microseconds per event, the cyclic GC's collections per generation, and the
    CPU time spent in them (microseconds per event), for one variant."""
    conn = H.new_client(stream)
    collections = [0, 0, 0]
    in_gc = 0.0
    started = 0.0
    untimed = 1  # the gc.collect() that starts every timed region

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal in_gc, started, untimed
        if untimed:
            untimed -= phase == "stop"
        elif phase == "start":
            collections[info["generation"]] += 1
            started = H.CLOCK()
        else:
            in_gc += H.CLOCK() - started

    patch(conn)
    gc.callbacks.append(count)
    try:
        seconds, _ = H.time_client_on(conn, data)
    finally:
        gc.callbacks.remove(count)
        _restore()
    n = stream.timed_messages
    return seconds / n * 1e6, (collections[0], collections[1], collections[2]), in_gc / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--read", type=int, default=16384, help="bytes per receive() (0: a frame)")
    parser.add_argument(
        "--stream", default="zlib-stream", choices=("zlib-stream", "zstd-stream", "json")
    )
    args = parser.parse_args(argv)
    (stream,) = corpus.build_streams("small", [args.stream])
    data = H.chunks(stream, args.read)
    variants = dict(VARIANTS)
    if args.stream != "zlib-stream":
        del variants["codec = loads(decompress(data))"]
    best: dict[str, float] = {}
    collected: dict[str, tuple[int, int, int]] = {}
    in_gc: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, patch in variants.items():
            us, collections, gc_us = run_variant(stream, data, patch)
            if us < best.get(name, float("inf")):
                best[name], collected[name], in_gc[name] = us, collections, gc_us
        seconds, n = H.time_wsproto_floor(stream, data)
        us = seconds / n * 1e6
        best["wsproto + floor (b)"] = min(best.get("wsproto + floor (b)", us), us)
        seconds, n = H.time_floor(stream)
        us = seconds / n * 1e6
        best["floor (a): inflate + loads"] = min(best.get("floor (a): inflate + loads", us), us)
    base = best["wsproto + floor (b)"]
    floor = best["floor (a): inflate + loads"]
    reads = f"{args.read}-byte reads" if args.read else "one read per frame"
    print(f"# small/{args.stream}, {reads}, min of {args.repeat}")
    print("# GC: collections of generations 0/1/2 and the us/event spent in them (fastest round)")
    print(
        f"{'variant':44s} {'us/event':>9s} {'/floor':>8s} {'/(ws+fl)':>9s} "
        f"{'GC 0/1/2':>12s} {'GC us':>6s}"
    )
    for name, us in best.items():
        runs = collected.get(name)
        gens = "" if runs is None else "/".join(map(str, runs))
        spent = "" if name not in in_gc else f"{in_gc[name]:6.2f}"
        print(f"{name:44s} {us:9.2f} {us / floor:7.2f}x {us / base:8.2f}x {gens:>12s} {spent:>6s}")


if __name__ == "__main__":
    main()
