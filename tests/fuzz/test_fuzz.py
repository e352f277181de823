"""Byte-level fuzzing of the client core in CI: the corpus, the driver's own checks, a
time-boxed random-mutation run and a hypothesis variant (docs/testing.md,
"Byte-level fuzzing").

``FUZZ_SECONDS`` (default 35) is the budget of the random-mutation run and
``FUZZ_SEED`` (default 0) its seed; the same seed draws the same inputs everywhere.
``FUZZ_HYPOTHESIS_EXAMPLES`` (default 200, 5,000 with ``HYPOTHESIS_PROFILE=fuzz``)
sizes the hypothesis variant.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discord_gateway import DiscordConnection

from . import make_corpus
from .corpus import CORPUS, Case, load_corpus
from .driver import Violation, run_case
from .engine import draw, fuzz, known_reason

CORPUS_CASES = load_corpus()
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", 35))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", 0))
_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
HYPOTHESIS_EXAMPLES = int(os.environ.get("FUZZ_HYPOTHESIS_EXAMPLES", 5000 if _LONG else 200))


def check(case: Case, seed: int, *, memory: bool = True) -> None:
    """Run ``case``; a failure of a class whose fix is pending elsewhere is tolerated."""
    try:
        run_case(case, seed, memory=memory)
    except Violation as violation:
        if known_reason(violation.signature) is None:
            raise


# -- the corpus ------------------------------------------------------------------------


def test_corpus_covers_every_encoding_and_compression() -> None:
    configs = {(c.encoding, c.compress) for c in CORPUS_CASES if c.name.startswith("session-")}
    assert configs == {(enc, comp) for _, enc, comp in make_corpus.CONFIGS}
    for case in CORPUS_CASES:
        if case.name.startswith("session-"):
            assert len(case.conns) == 3  # identify, resume with replay, identify after op 9
    total = sum(path.stat().st_size for path in CORPUS.glob("*.case"))
    assert total < 2 * 1024 * 1024, total


def test_corpus_is_what_make_corpus_writes(tmp_path: Path) -> None:
    """``make_corpus`` writes the committed corpus: the same cases, and byte for byte the
    same hand-made and captured ones. Recorded sessions follow the local gateway and the
    client of the day (and zstandard's version), so only their shape is compared."""
    assert make_corpus.main([str(tmp_path)]) == 0
    fresh = {p.name: Case.load(p) for p in tmp_path.glob("*.case")}
    committed = {p.name: Case.load(p) for p in CORPUS.glob("*.case")}
    assert fresh.keys() == committed.keys()
    recorded = {c.name for c in make_corpus.recorded_cases()}
    for name, case in fresh.items():
        if case.name in recorded:
            assert len(case.conns) == len(committed[name].conns), name
            assert case.client_ops == committed[name].client_ops, name
        else:
            assert case == committed[name], name


def test_recorded_sessions_are_whole_sessions() -> None:
    """Unmutated, a recorded session takes the client through READY twice and a RESUME."""
    for case in CORPUS_CASES:
        if case.name.startswith("session-"):
            stats = run_case(case, 0, timers=False)
            assert stats.connections == 3 and stats.hellos == 3, (case.name, stats)
            assert stats.readies == 2, (case.name, stats)


@pytest.mark.parametrize("case", CORPUS_CASES, ids=[c.name for c in CORPUS_CASES])
def test_corpus_case(case: Case) -> None:
    for seed in range(3):
        check(case, seed, memory=seed == 0)


# -- the driver catches what it should ---------------------------------------------------


class LeaksKeyError(DiscordConnection):
    def receive(self, data: bytes | None, now: float | None = None) -> list[bytes]:
        if data and b"heartbeat_interval" in data:
            raise KeyError("heartbeat_interval")
        return super().receive(data, now)


class NoDeadline(DiscordConnection):
    def next_deadline(self) -> float | None:
        return None


class FarDeadline(DiscordConnection):
    def next_deadline(self) -> float | None:
        deadline = super().next_deadline()
        return None if deadline is None else deadline + 1e12


class LogsInternalError(DiscordConnection):
    def events(self) -> Any:
        self._log.error("internal error: the fuzz driver's own test")
        return super().events()


SESSION = next(c for c in CORPUS_CASES if c.name == "session-json")


@pytest.mark.parametrize(
    ("factory", "kind"),
    [
        (LeaksKeyError, "receive:raised:KeyError"),
        (NoDeadline, "wedged"),
        (FarDeadline, "deadline"),
        (LogsInternalError, "error log"),
    ],
)
def test_driver_reports(factory: type[DiscordConnection], kind: str) -> None:
    with pytest.raises(Violation) as caught:
        for seed in range(20):
            run_case(SESSION, seed, factory=factory)
    assert kind in caught.value.signature


class Hoarder(DiscordConnection):
    """Holds 8 MiB for as long as it lives: the memory check must notice."""

    def events(self) -> Any:
        self.__dict__.setdefault("hoard", bytearray(8 * 1024 * 1024))
        return super().events()


def test_driver_reports_memory_over_the_bound() -> None:
    case = next(c for c in CORPUS_CASES if c.name == "json-list-amplification")
    assert run_case(case, 1, memory=True).peak > 1024 * 1024  # tracemalloc sees the decode
    with pytest.raises(Violation, match="memory"):
        run_case(case, 1, memory=True, factory=Hoarder)


def test_draw_is_deterministic() -> None:
    for index in range(50):
        assert draw(CORPUS_CASES, 3, index) == draw(CORPUS_CASES, 3, index)


# -- the fuzz runs -------------------------------------------------------------------------


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Pause coverage (``.ci/run`` measures it): traced, the loop tries 4x fewer inputs,
    and what the fuzzer is for is finding failures, not lines."""
    try:
        import coverage
    except ImportError:  # pragma: no cover - coverage comes with the test extra
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


def test_fuzz_random_mutations(capsys: pytest.CaptureFixture[str]) -> None:
    """FUZZ_SECONDS of seeded random mutations; every failure class must be a known one."""
    crashes = Path(__file__).parent / "crashes"
    with untraced():
        report = fuzz(FUZZ_SECONDS, FUZZ_SEED, corpus=CORPUS_CASES, crashes=crashes)
    with capsys.disabled():
        print(f"\n{report.summary()}")
    assert report.inputs > 0
    assert not report.new(), report.summary()


@settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    case=st.sampled_from(CORPUS_CASES),
    where=st.floats(0, 1),
    junk=st.binary(max_size=32),
    overwrite=st.booleans(),
    driver_seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_hypothesis(
    case: Case, where: float, junk: bytes, overwrite: bool, driver_seed: int
) -> None:
    """Hypothesis's bytes written over, or into, a corpus case at any point."""
    conns = list(case.conns)
    index = int(where * len(conns)) % len(conns)
    data = conns[index]
    pos = int(where * len(data))
    end = pos + len(junk) if overwrite else pos
    conns[index] = data[:pos] + junk + data[end:]
    check(case.with_conns(conns), driver_seed)
