"""The size cap through DiscordConnection: a message over ``max_payload_size``
costs about the cap, not its own size, also once the connection is closing
(when errors are only logged and reading goes on towards the close frame)."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from discord_gateway import PayloadTooLarge, State

from peer import ready_link

CAP = 2**20
READ = 64 * 1024
SIZE = 32 * 2**20


def feed_in_reads(link: object, frame: bytes) -> tuple[int, list[str]]:
    """Feed ``frame`` in socket-sized reads; return tracemalloc's peak and the errors."""
    conn = link.conn  # type: ignore[attr-defined]
    errors: list[str] = []
    tracemalloc.start()
    try:
        view = memoryview(frame)
        for start in range(0, len(frame), READ):
            try:
                conn.receive(bytes(view[start : start + READ]))
            except PayloadTooLarge as exc:
                errors.append(str(exc))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, errors


@pytest.mark.parametrize("closing_first", [True, False])
def test_huge_text_frame_costs_about_the_cap(closing_first: bool) -> None:
    # Regression: while closing, each chunk of a text frame over the cap was
    # buffered anyway (a 1 GiB frame cost 1 GiB RSS).
    link = ready_link(max_payload_size=CAP)
    if closing_first:
        link.conn.close(4000)
    frame = link.peer.send("x" * SIZE)
    peak, errors = feed_in_reads(link, frame)
    assert peak < 4 * CAP
    assert len(errors) == (0 if closing_first else 1)  # logged while closing
    assert link.conn.state is State.CLOSING
    link.deliver(link.peer.close(4000))  # and the close handshake still ends it
    assert link.closed is not None


def test_huge_zlib_stream_message_costs_about_the_cap() -> None:
    link = ready_link(max_payload_size=CAP, compress="zlib-stream")
    deflate = link.peer._deflate  # the connection's one deflate context (protocol 33)
    body = deflate.compress(b"y" * SIZE) + deflate.flush(zlib.Z_SYNC_FLUSH)
    frame = link.peer.send(body)
    peak, errors = feed_in_reads(link, frame)
    assert peak < 4 * CAP
    assert len(errors) == 1
    assert link.conn.state is State.CLOSING
