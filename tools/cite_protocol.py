"""Rewrite ``spec N`` citations to ``protocol N`` and check that every citation exists.

The code and the tests used to cite the rules they implement as ``spec N``: item N
of a checklist kept outside the repository. ``docs/protocol.md`` now holds the same
rules under the same numbers (and the same section letters, A-N), so the rename is
mechanical: ``spec 13`` becomes ``protocol 13``, ``spec 34, 58`` becomes
``protocol 34, 58``, ``spec 47-51`` becomes ``protocol 47-51``, ``spec H`` becomes
``protocol H``, and the checklist's path becomes ``docs/protocol.md``.

Only comments and docstrings (any string that is a statement of its own) of Python
files are rewritten, and Markdown files whole. Every other string is left alone:
it may be a message users see, and those should cite no number at all; ``--check``
reports them instead, to be reworded by hand.

Usage (from the repository root)::

    python tools/cite_protocol.py            # rewrite in place, list the files changed
    python tools/cite_protocol.py --check    # exit 1 if a citation is stale or unknown
    python tools/cite_protocol.py --check discord_gateway/connection.py  # some files only

``--check`` fails on: any ``spec N`` citation left (in a comment, a docstring, a
message or a Markdown file); a ``protocol N`` (or ``protocol X``) citation of a rule
(or section) that ``docs/protocol.md`` does not define; any mention of the old
checklist's file. A rewrite that makes a line longer than ruff's ``line-length`` is
reported as a warning (the rewrite adds four characters per citation).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
#: What is scanned when no paths are given (relative to the repository root).
DEFAULT_PATHS = (
    "discord_gateway",
    "tests",
    "examples",
    "benchmarks",
    "tools",
    "docs",
    "README.md",
    "CHANGELOG.md",
)
#: Files that quote old citations on purpose (this script, its tests, and the
#: test that the message walker catches them).
SKIPPED = frozenset(
    {"tools/cite_protocol.py", "tests/test_cite_protocol.py", "tests/test_user_messages.py"}
)
SKIPPED_DIRS = frozenset({".venv", "venv", "site", "__pycache__", ".git", "mutants", "build"})

# One cited rule (13), range of rules (47-51) or section (H). A section letter must
# stand alone: "spec H [obs]" and "spec I)" cite sections, "spec Inc" would not.
_REF = r"(?:\d+(?:\s?[-\u2013]\s?\d+)?|[A-N](?![\w'-]))"
_REFS = rf"{_REF}(?:,\s?{_REF})*"
SPEC_CITATION = re.compile(rf"\b(?P<word>[Ss]pecs?) (?P<refs>{_REFS})")
PROTOCOL_CITATION = re.compile(rf"\b[Pp]rotocol (?P<refs>{_REFS})")
CHECKLIST_PATH = re.compile(r"(?:/work/)?(?:shared/)?spec/CHECKLIST\.md")
_RULE_HEADING = re.compile(r"^### (\d+)\. ", re.MULTILINE)
_SECTION_HEADING = re.compile(r"^## ([A-Z])\. ", re.MULTILINE)


@dataclass(frozen=True)
class Finding:
    """One problem ``--check`` reports."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def defined_rules(text: str) -> tuple[frozenset[int], frozenset[str]]:
    """The rule numbers and section letters that ``docs/protocol.md`` defines."""
    rules = frozenset(int(n) for n in _RULE_HEADING.findall(text))
    sections = frozenset(_SECTION_HEADING.findall(text))
    return rules, sections


def cited(refs: str) -> Iterator[int | str]:
    """Every rule number (ranges expanded) and section letter in a citation's refs."""
    for ref in re.split(r",\s?", refs):
        ref = ref.strip()
        if ref.isalpha():
            yield ref
            continue
        bounds = [int(n) for n in re.split(r"\s?[-\u2013]\s?", ref)]
        yield from range(bounds[0], bounds[-1] + 1)


def _replace_citation(match: re.Match[str]) -> str:
    word = "Protocol" if match["word"][0] == "S" else "protocol"
    return f"{word} {match['refs']}"


def rewrite_text(text: str) -> str:
    """Rewrite every old citation in prose (a comment, a docstring, Markdown)."""
    text = SPEC_CITATION.sub(_replace_citation, text)
    return CHECKLIST_PATH.sub("docs/protocol.md", text)


def _line_starts(source: str) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def prose_spans(source: str) -> list[tuple[int, int]]:
    """Character spans of the comments and docstrings of Python source.

    A docstring is any string literal that is a statement of its own (module,
    class, function and attribute docstrings alike): it is never shown to users
    as a message. f-strings are never docstrings.
    """
    starts = _line_starts(source)

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    spans: list[tuple[int, int]] = []
    line: list[tokenize.TokenInfo] = []
    skip = {tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            spans.append((offset(token.start), offset(token.end)))
        elif token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if line and all(t.type == tokenize.STRING for t in line):
                spans.extend((offset(t.start), offset(t.end)) for t in line)
            line = []
        elif token.type not in skip:
            line.append(token)
    return spans


def rewrite_python(source: str) -> str:
    """Rewrite the old citations in the comments and docstrings of Python source."""
    out: list[str] = []
    done = 0
    for start, end in prose_spans(source):
        out.append(source[done:start])
        out.append(rewrite_text(source[start:end]))
        done = end
    out.append(source[done:])
    return "".join(out)


def rewrite_file(path: Path) -> bool:
    """Rewrite one file in place; True when it changed."""
    text = path.read_text(encoding="utf-8")
    new = rewrite_python(text) if path.suffix == ".py" else rewrite_text(text)
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def check_text(
    name: str, text: str, rules: frozenset[int], sections: frozenset[str], python: bool
) -> list[Finding]:
    """What ``--check`` reports for one file's text."""
    prose = prose_spans(text) if python else [(0, len(text))]
    starts = _line_starts(text)

    def line_of(index: int) -> int:
        lo, hi = 0, len(starts) - 1
        while lo < hi:  # the last line start <= index
            mid = (lo + hi + 1) // 2
            if starts[mid] <= index:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def in_prose(index: int) -> bool:
        return any(start <= index < end for start, end in prose)

    findings: list[Finding] = []
    for match in SPEC_CITATION.finditer(text):
        where = line_of(match.start())
        if in_prose(match.start()):
            message = f"{match[0]!r} cites the old checklist: run tools/cite_protocol.py"
        else:
            message = (
                f"{match[0]!r} is in a string that is not a docstring (a message?): "
                "messages users see cite no rule numbers; reword it by hand"
            )
        findings.append(Finding(name, where, message))
    for match in PROTOCOL_CITATION.finditer(text):
        unknown = [
            ref
            for ref in cited(match["refs"])
            if (ref not in sections if isinstance(ref, str) else ref not in rules)
        ]
        if unknown:
            findings.append(
                Finding(
                    name,
                    line_of(match.start()),
                    f"{match[0]!r} cites {', '.join(map(str, unknown))}, "
                    "which docs/protocol.md does not define",
                )
            )
    for match in CHECKLIST_PATH.finditer(text):
        findings.append(
            Finding(name, line_of(match.start()), "names the old checklist: use docs/protocol.md")
        )
    return findings


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The ``.py`` and ``.md`` files under the given paths, minus the skipped ones."""
    for path in paths:
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in candidates:
            if file.suffix not in (".py", ".md") or not file.is_file():
                continue
            relative = _relative(file)
            if relative in SKIPPED or SKIPPED_DIRS.intersection(Path(relative).parts):
                continue
            yield file


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _line_length() -> int:
    """ruff's ``line-length`` from pyproject.toml (100 when it is not set)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r"^line-length\s*=\s*(\d+)", text, re.MULTILINE)
    return int(found[1]) if found else 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, change nothing")
    parser.add_argument(
        "paths", nargs="*", type=Path, help=f"files or folders (default: {' '.join(DEFAULT_PATHS)})"
    )
    args = parser.parse_args(argv)
    paths = args.paths or [ROOT / p for p in DEFAULT_PATHS if (ROOT / p).exists()]
    files = list(iter_files(paths))
    if args.check:
        rules, sections = defined_rules(PROTOCOL_MD.read_text(encoding="utf-8"))
        findings = [
            finding
            for file in files
            for finding in check_text(
                _relative(file),
                file.read_text(encoding="utf-8"),
                rules,
                sections,
                file.suffix == ".py",
            )
        ]
        for finding in findings:
            print(finding)
        print(f"{len(findings)} problem(s) in {len(files)} files", file=sys.stderr)
        return 1 if findings else 0
    limit = _line_length()
    changed = 0
    for file in files:
        if file.resolve() == PROTOCOL_MD.resolve() or not rewrite_file(file):
            continue
        changed += 1
        print(_relative(file))
        if file.suffix == ".py":
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if len(line) > limit and "protocol" in line.lower():
                    print(
                        f"  warning: {_relative(file)}:{number}: {len(line)} > {limit} characters",
                        file=sys.stderr,
                    )
    print(f"{changed} file(s) rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
