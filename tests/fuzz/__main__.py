"""``python -m tests.fuzz``: the long fuzz profile, and tools for what it finds.

python -m tests.fuzz run [--seconds 600] [--seed N]   fuzz for a while, report classes
python -m tests.fuzz replay FILE                      re-run a saved input, show the error
python -m tests.fuzz minimize FILE [OUT]              shrink a saved input, same failure
python -m tests.fuzz stats                            the corpus: cases and bytes
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from .corpus import Case, load_corpus
from .driver import Violation, run_case
from .engine import fuzz


def signature_of(case: Case) -> str | None:
    try:
        run_case(case, case.driver_seed or 0, memory=True)
    except Violation as violation:
        return violation.signature
    return None


def minimize(case: Case, budget: int = 4000) -> Case:
    """Delta debugging: drop connections, then byte ranges, while the failure stays."""
    target = signature_of(case)
    if target is None:
        raise SystemExit("the input does not fail")
    tries = 0

    def same(candidate: Case) -> bool:
        nonlocal tries
        tries += 1
        return signature_of(candidate) == target

    conns = list(case.conns)
    for index in reversed(range(len(conns))):
        if len(conns) > 1 and same(case.with_conns(conns[:index] + conns[index + 1 :])):
            del conns[index]
    for index in range(len(conns)):
        chunk = max(1, len(conns[index]) // 2)
        while chunk >= 1 and tries < budget:
            data = conns[index]
            start, shrunk = 0, False
            while start < len(data) and tries < budget:
                candidate = data[:start] + data[start + chunk :]
                trial = [*conns[:index], candidate, *conns[index + 1 :]]
                if same(case.with_conns(trial)):
                    data, shrunk = candidate, True
                    conns[index] = data
                else:
                    start += chunk
            if not shrunk:
                chunk //= 2
    return case.with_conns(conns)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 600)))
    run.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 0)))
    replay = commands.add_parser("replay")
    replay.add_argument("file", type=Path)
    shrink = commands.add_parser("minimize")
    shrink.add_argument("file", type=Path)
    shrink.add_argument("out", type=Path, nargs="?")
    commands.add_parser("stats")
    args = parser.parse_args(argv)

    if args.command == "run":
        report = fuzz(args.seconds, args.seed)
        print(report.summary())
        return 1 if report.new() else 0
    if args.command == "stats":
        cases = load_corpus()
        print(f"{len(cases)} cases, {sum(c.size for c in cases)} bytes")
        for case in cases:
            print(f"  {case.name}: {len(case.conns)} connection(s), {case.size} bytes")
        return 0
    case = Case.load(args.file)
    if args.command == "minimize":
        small = minimize(case)
        out = args.out or args.file.with_suffix(".min.case")
        small.save(out)
        print(f"{case.size} -> {small.size} bytes: {out}")
        for index, conn in enumerate(small.conns):
            print(f"  connection {index}: {conn!r}")
        return 0
    print(f"{case.name}: {case.size} bytes, driver seed {case.driver_seed}")
    try:
        stats = run_case(case, case.driver_seed or 0, memory=True)
    except Violation as violation:
        traceback.print_exception(violation.exc or violation)
        print(f"\n{violation}")
        return 1
    print(f"no failure: {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
