"""Soak: 10,000 connect / identify / drop cycles against one local gateway, memory flat.

Sans-I/O and in virtual time (one second per cycle, sessions expire on their TTL), with
zlib-stream so every connection has a compressor to release. Measured on a 2-core CI
machine: about 25 s for the 10,000 cycles; traced memory grows by well under 1 MB after
the first 1,000 cycles.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import tracemalloc
from collections.abc import Iterator

from discord_gateway.testing import ServerConfig, SessionStore
from tests.gateway_client import FakeClient

CYCLES = int(os.environ.get("SOAK_CYCLES", "10000"))
#: Past the warm-up every bounded record is full (the world keeps 1,000 messages).
WARM_UP = 1000
assert CYCLES >= 2 * WARM_UP, "SOAK_CYCLES must be at least 2000"


try:  # imported here: importing it inside a measured loop would count its ~2 MB
    import coverage
except ImportError:  # pragma: no cover - coverage comes with the test extra
    coverage = None


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Pause coverage (``.ci/run`` measures it; traced, the loops run 4x slower)."""
    if coverage is None:  # pragma: no cover
        yield
        return
    current = coverage.Coverage.current()
    if current is not None:
        current.stop()
    try:
        yield
    finally:
        if current is not None:
            current.start()


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover - not Linux


def test_10000_connect_identify_drop_cycles_keep_memory_flat() -> None:
    store = SessionStore(
        ServerConfig(
            heartbeat_interval=10.0,
            session_ttl=60.0,
            enforce_identify_concurrency=False,  # one IDENTIFY per virtual second
            enforce_session_start_limit=False,  # 10,000 session starts
            keep_closed_connections=100,
        )
    )
    query = "v=10&encoding=json&compress=zlib-stream"

    def cycle(n: int) -> None:
        now = float(n)
        store.handle_timer(now)
        client = FakeClient(store, now=now, query=query, compress="zlib-stream")
        client.identify()
        store.dispatch("MESSAGE_CREATE", {"content": "soak", "channel_id": "1"})
        client.pump()
        if n % 2:
            client.drop()  # the session stays for its TTL
        else:
            client.close(1000)  # the session ends

    # Log records kept by a capturing handler (pytest's, once an earlier test set
    # INFO on the root logger) are not the server's memory.
    log = logging.getLogger("discord_gateway.testing")
    level = log.level
    log.setLevel(logging.WARNING)
    tracemalloc.start()
    try:
        for n in range(WARM_UP):
            cycle(n)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        with untraced():  # the warm-up was traced: same code paths
            for n in range(WARM_UP, CYCLES):
                cycle(n)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        log.setLevel(level)
    assert store.connection_count == CYCLES
    assert len(store.connections) <= 100 + 16 + 1  # a bounded record
    assert len(store.sessions) <= 31  # only the dropped ones within their TTL
    growth = after - baseline
    print(f"soak: {CYCLES} cycles, traced growth {growth / 1024:.0f} KiB, RSS {rss_mib():.0f} MiB")
    assert growth < 1024 * 1024, f"memory grew by {growth} bytes over {CYCLES - WARM_UP} cycles"
