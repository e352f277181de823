"""No quadratic buffering: a big message fed in tiny reads costs time linear in its size.

Only a generous guard against blow-up (time(4N) / time(N) < 8 with min-of-3, where
linear is ~4 and quadratic ~16); speed targets live in ``benchmarks/run.py``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("discord_gateway.connection")

from benchmarks import corpus
from benchmarks._harness import Stream, chunks, time_client


def _stream(fmt: str, raw_bytes: int) -> Stream:
    msgs = [corpus.hello(), corpus.big_message(raw_bytes)]
    return corpus.encode(msgs, f"scale/{fmt}", fmt, prelude=1)


def _best_time(stream: Stream, read: int) -> float:
    data = chunks(stream, read)
    best = float("inf")
    for _ in range(3):
        secs, events = time_client(stream, data)
        assert events == 1
        best = min(best, secs)
    return best


@pytest.mark.parametrize(
    ("fmt", "raw_bytes", "read"),
    [
        ("zlib-stream", 50_000, 1),  # ~8 KB on the wire, one-byte reads
        ("json", 250_000, 16),  # text frame in 16-byte reads
    ],
)
def test_tiny_reads_scale_linearly(fmt: str, raw_bytes: int, read: int) -> None:
    small = _stream(fmt, raw_bytes)
    big = _stream(fmt, 4 * raw_bytes)
    size_ratio = big.timed_wire_bytes / small.timed_wire_bytes
    assert 3 < size_ratio < 5
    t_small = _best_time(small, read)
    t_big = _best_time(big, read)
    per_byte_growth = (t_big / big.timed_wire_bytes) / (t_small / small.timed_wire_bytes)
    assert per_byte_growth < 2, (
        f"{fmt}: {t_small:.3f}s for {small.timed_wire_bytes} B, {t_big:.3f}s for "
        f"{big.timed_wire_bytes} B in {read}-byte reads: per-byte cost x{per_byte_growth:.1f}"
    )
