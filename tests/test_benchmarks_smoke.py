"""Smoke test of the benchmark suite: the corpus generator and ``run.py --quick``.

Checks shapes and sanity only (event counts agree, ratios positive); speed targets
are measured by ``benchmarks/run.py``, never asserted here.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

from benchmarks import corpus
from benchmarks._harness import Stream, chunks

pytest.importorskip("zstandard")
pytest.importorskip("erlpack")


def test_corpus_is_seeded_and_realistic() -> None:
    a = corpus.small_messages(200, seed=1)
    assert a == corpus.small_messages(200, seed=1)
    assert a != corpus.small_messages(200, seed=2)
    assert [m["op"] for m in a[:2]] == [10, 0] and a[1]["t"] == "READY"
    names = {m["t"] for m in a[2:]}
    assert names == {"MESSAGE_CREATE", "PRESENCE_UPDATE", "TYPING_START", "MESSAGE_REACTION_ADD"}
    sizes = [len(orjson.dumps(m)) for m in a[2:]]
    assert min(sizes) >= 200 and max(sizes) <= 2500
    assert [m["s"] for m in a[1:]] == list(range(1, 202))


def test_burst_member_counts() -> None:
    counts = corpus.burst_member_counts()
    assert len(counts) == 40 and counts[0] == 20 and counts[-1] == 2500
    burst = corpus.burst_messages(n_guilds=3, hi=60)
    assert [m.get("t") for m in burst] == [None, "READY"] + ["GUILD_CREATE"] * 3
    assert [len(m["d"]["members"]) for m in burst[2:]] == corpus.burst_member_counts(3, 20, 60)


@pytest.mark.parametrize("fmt", list(corpus.ENCODINGS))
def test_streams_round_trip(fmt: str, tmp_path: Path) -> None:
    msgs = corpus.small_messages(30)
    stream = corpus.encode(msgs, f"t/{fmt}", fmt, prelude=2)
    stream.save(tmp_path)
    loaded = Stream.load(tmp_path, f"t/{fmt}")
    assert loaded == stream
    assert len(stream.wire) == sum(stream.frame_lens)
    assert stream.timed_messages == 30
    assert b"".join(chunks(stream, 0)) == b"".join(chunks(stream, 100))
    if fmt == "zlib-stream":
        inflate = zlib.decompressobj()
        for payload, msg in zip(stream.payloads, msgs, strict=True):
            assert payload.endswith(b"\x00\x00\xff\xff")
            assert orjson.loads(inflate.decompress(payload)) == msg
    elif fmt == "zstd-stream":
        import zstandard

        dec = zstandard.ZstdDecompressor().decompressobj()
        for payload, msg in zip(stream.payloads, msgs, strict=True):
            assert orjson.loads(dec.decompress(payload)) == msg
    elif fmt == "json":
        assert [orjson.loads(p) for p in stream.payloads] == msgs


def test_quick_run(tmp_path: Path) -> None:
    pytest.importorskip("discord_gateway.connection")
    from benchmarks import run

    out = tmp_path / "results.json"
    results = run.main(["--quick", "--json", str(out)])
    assert out.exists()
    for section in ("small", "burst"):
        rows = results[section]
        assert len(rows) == len(corpus.ENCODINGS) * 2  # every encoding, two read sizes
        for row in rows:
            counts = {row["floor"]["events"], row["wsproto"]["events"], row["ours"]["events"]}
            assert counts == {row["messages"]}, row
            if "seconds" in row["0.4.0"]:
                assert row["0.4.0"]["events"] == row["messages"], row
            for key in ("ours/floor", "ours/wsproto+floor", "wsproto+floor/floor"):
                assert row["ratios"][key] > 0, row
    memory = results["memory"]["ours"]
    assert 4 * 1024 < memory["current_per_conn"] < 1024 * 1024
    assert memory["peak_per_conn"] >= memory["current_per_conn"]
    ours_scaling = [r for r in results["scaling"] if r["impl"] == "ours"]
    assert ours_scaling and all(r["ns_per_byte"] > 0 for r in ours_scaling)
    assert "available" in results["e2e"]
