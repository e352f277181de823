"""The fuzz loop: seeded random mutations of the corpus for a time budget.

Input ``i`` of a run with seed ``S`` is drawn from ``random.Random(f"{S}:{i}")``
alone, so it is the same on every machine; only how many inputs fit in the budget
varies. Every failing input is saved to ``tests/fuzz/crashes/`` (gitignored) with
its driver seed, the smallest one per failure class, and replays with
``python -m tests.fuzz replay <file>``.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import CRASHES, Case, load_corpus
from .driver import Violation, run_case
from .mutators import mutate

#: Failure classes known today whose fix is being made elsewhere (branch, issue item).
#: The fuzz test reports them without failing; a class not listed here fails it.
#: Keys are substrings of ``Violation.signature``. Empty this as the fixes land.
KNOWN_OPEN: dict[str, str] = {}


@dataclass
class Failure:
    signature: str
    message: str
    count: int
    path: Path
    size: int
    seed: str
    known: str | None
    first: str  # the input that first showed it


@dataclass
class Report:
    seed: int
    inputs: int = 0
    seconds: float = 0.0
    failures: dict[str, Failure] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def new(self) -> list[Failure]:
        return [f for f in self.failures.values() if f.known is None]

    def summary(self) -> str:
        lines = [
            f"fuzz seed {self.seed}: {self.inputs} inputs in {self.seconds:.1f} s "
            f"({self.rate:.0f}/s), {len(self.failures)} failure classes"
        ]
        for failure in sorted(self.failures.values(), key=lambda f: f.signature):
            status = f"known: {failure.known}" if failure.known else "NEW"
            lines.append(
                f"  [{status}] {failure.signature} x{failure.count}"
                f" (first: input {failure.first})\n"
                f"      {failure.message[:300]}\n"
                f"      smallest input {failure.size} bytes (seed {failure.seed}): "
                f"python -m tests.fuzz replay {failure.path}"
            )
        return "\n".join(lines)


def known_reason(signature: str) -> str | None:
    for pattern, reason in KNOWN_OPEN.items():
        if pattern in signature:
            return reason
    return None


def slug(signature: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", signature).strip("-")[:120]


def weight(case: Case) -> int:
    """Recorded sessions and captures are drawn more often than the hand-made edge
    cases: they hold whole lifecycles, every encoding and compression, for the
    mutators to break anywhere."""
    if case.name.startswith("session-"):
        return 8
    if case.name.startswith(("capture-", "fragmented-", "fatal-", "op7-")):
        return 3
    return 1


def draw(corpus: list[Case], seed: int, index: int) -> Case:
    """Input ``index`` of the run with ``seed``, its driver seed included."""
    rng = random.Random(f"{seed}:{index}")
    base = rng.choices(corpus, [weight(case) for case in corpus])[0]
    case = mutate(rng, base, corpus) if rng.random() < 0.9 else base
    return Case(
        name=case.name,
        encoding=case.encoding,
        compress=case.compress,
        conns=case.conns,
        note=f"fuzz seed {seed} input {index}: {case.note or case.name}",
        driver_seed=rng.getrandbits(32),
    )


def fuzz(
    seconds: float,
    seed: int,
    *,
    corpus: list[Case] | None = None,
    memory_every: int = 8,
    crashes: Path = CRASHES,
    max_inputs: int | None = None,
) -> Report:
    corpus = corpus if corpus is not None else load_corpus()
    report = Report(seed)
    start = time.perf_counter()
    stop = start + seconds
    index = 0
    while time.perf_counter() < stop and (max_inputs is None or index < max_inputs):
        case = draw(corpus, seed, index)
        assert case.driver_seed is not None
        try:
            run_case(case, case.driver_seed, memory=index % memory_every == 0)
        except Violation as violation:
            record(report, case, violation, f"{seed}:{index}", crashes)
        index += 1
    report.inputs = index
    report.seconds = time.perf_counter() - start
    return report


def record(report: Report, case: Case, violation: Violation, seed: str, crashes: Path) -> None:
    failure = report.failures.get(violation.signature)
    if failure is not None:
        failure.count += 1
        if case.size >= failure.size:
            return
    crashes.mkdir(parents=True, exist_ok=True)
    path = crashes / f"{slug(violation.signature)}.case"
    case.save(path)
    count = failure.count if failure is not None else 1
    first = failure.first if failure is not None else seed
    report.failures[violation.signature] = Failure(
        violation.signature,
        str(violation),
        count,
        path,
        case.size,
        seed,
        known_reason(violation.signature),
        first,
    )
