"""Coverage-guided fuzzing of the client core with atheris (libFuzzer); not run in CI.

    pip install atheris
    python -m tests.fuzz.atheris_client --seeds /tmp/atheris-seeds   # write seed inputs
    python -m tests.fuzz.atheris_client /tmp/atheris-corpus /tmp/atheris-seeds \\
        -max_total_time=600 -rss_limit_mb=2048

An atheris input is one byte choosing the configuration (encoding x compression,
``CONFIGS``), four bytes of driver seed, then the bytes of the connections, separated
by :data:`SEPARATOR`. The fuzz driver runs it and checks the same contract as the
random-mutation run (``driver.py``); a violation is raised, so libFuzzer saves the
input (``crash-*``). ``--seeds DIR`` turns ``tests/fuzz/corpus/`` into such inputs.
Replay one with ``python -m tests.fuzz.atheris_client crash-...`` (libFuzzer runs a
file argument once).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]

with atheris.instrument_imports():
    import wsproto  # noqa: F401

    import discord_gateway  # noqa: F401 - instrumented for coverage

from .corpus import Case, load_corpus
from .driver import run_case
from .make_corpus import CONFIGS

SEPARATOR = b"\n--next-connection--\n"


def to_input(case: Case) -> bytes:
    config = next(
        i
        for i, (_, enc, comp) in enumerate(CONFIGS)
        if (enc, comp) == (case.encoding, case.compress)
    )
    return (
        bytes((config,)) + (case.driver_seed or 0).to_bytes(4, "big") + SEPARATOR.join(case.conns)
    )


def from_input(data: bytes) -> Case | None:
    if len(data) < 5:
        return None
    _, encoding, compress = CONFIGS[data[0] % len(CONFIGS)]
    conns = data[5:].split(SEPARATOR)[:4]
    seed = int.from_bytes(data[1:5], "big")
    return Case("atheris", encoding, compress, tuple(conns), driver_seed=seed)


def test_one_input(data: bytes) -> None:
    case = from_input(data)
    if case is not None:
        assert case.driver_seed is not None
        run_case(case, case.driver_seed, memory=False)


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for case in load_corpus():
        (directory / case.name).write_bytes(to_input(case))


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--seeds":
        write_seeds(Path(argv[2]))
        return
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
