"""tools/cite_protocol.py: the ``spec N`` -> ``protocol N`` rename and its check.

The rename itself is run by the lead at merge time (other branches edit the cited
files); until then ``test_no_old_citations_left`` is an expected failure.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cite_protocol", ROOT / "tools/cite_protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cite_protocol"] = module
    spec.loader.exec_module(module)
    return module


cite = _load()
PROTOCOL = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
RULES, SECTIONS = cite.defined_rules(PROTOCOL)

SOURCE = '''\
"""Module docstring (spec J), rules spec 34, 58 and spec 47-51."""

#: Spec H, one row per code.
TABLE = {}  # spec 3: 10 and 9 are available


def f(x):
    """Spec 28 [hist]: wait first; see ``/work/shared/spec/CHECKLIST.md``."""
    if x:
        raise ValueError("token must be a str (spec 17)")
    message = f"over {x} (spec 42)"
    "an attribute docstring, spec 6, 22, 30."
    return spec_check(x, "spec 31, table H")  # spec 31, table H
'''

EXPECTED = '''\
"""Module docstring (protocol J), rules protocol 34, 58 and protocol 47-51."""

#: Protocol H, one row per code.
TABLE = {}  # protocol 3: 10 and 9 are available


def f(x):
    """Protocol 28 [hist]: wait first; see ``docs/protocol.md``."""
    if x:
        raise ValueError("token must be a str (spec 17)")
    message = f"over {x} (spec 42)"
    "an attribute docstring, protocol 6, 22, 30."
    return spec_check(x, "spec 31, table H")  # protocol 31, table H
'''


def test_rewrite_changes_comments_and_docstrings_only() -> None:
    # Messages (the raise, the f-string, a call's argument) are left alone: users
    # see them, and they must lose the number, not rename it.
    assert cite.rewrite_python(SOURCE) == EXPECTED


def test_rewrite_is_idempotent() -> None:
    assert cite.rewrite_python(EXPECTED) == EXPECTED


def test_rewrite_markdown_whole() -> None:
    text = "The zombie rule (spec 13) and specs 33, 34; spec H.\n"
    assert cite.rewrite_text(text) == (
        "The zombie rule (protocol 13) and protocol 33, 34; protocol H.\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "the spec says",  # no number
        "spec: str",  # benchmarks/run.py's format spec
        'r" \\(spec \\d+\\)"',  # a pattern, not a citation
        "spec Inc.",  # a word, not a section letter
        "specification 12",
    ],
)
def test_rewrite_leaves_non_citations(text: str) -> None:
    assert cite.rewrite_text(text) == text


def test_cited_expands_ranges_and_sections() -> None:
    assert list(cite.cited("47-51, 3, H")) == [47, 48, 49, 50, 51, 3, "H"]


def _check(text: str, python: bool = True) -> list[str]:
    return [f.message for f in cite.check_text("x.py", text, RULES, SECTIONS, python)]


def test_check_passes_known_citations() -> None:
    assert _check("# protocol 13, 30: fine\n# protocol 47-51 and protocol H\n") == []
    assert _check("raise RemoteProtocolError('no number here')\n") == []


def test_check_reports_old_citations_by_kind() -> None:
    prose, message = _check('# spec 13\nraise ValueError("bad (spec 17)")\n')
    assert "run tools/cite_protocol.py" in prose
    assert "not a docstring" in message


def test_check_reports_unknown_rules_and_sections() -> None:
    assert _check("# protocol 61\n") == [
        "'protocol 61' cites 61, which docs/protocol.md does not define"
    ]
    assert _check("# protocol 59-62\n") == [
        "'protocol 59-62' cites 61, 62, which docs/protocol.md does not define"
    ]
    assert _check("See protocol 0 and protocol M.\n", python=False) == [
        "'protocol 0' cites 0, which docs/protocol.md does not define"
    ]


def test_check_reports_the_old_checklist_path() -> None:
    assert _check("# see shared/spec/CHECKLIST.md\n") == [
        "names the old checklist: use docs/protocol.md"
    ]


def test_check_line_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""Doc."""\n\nX = 1\n# protocol 99\n', encoding="utf-8")
    assert cite.main(["--check", str(bad)]) == 1
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("bad.py:4: 'protocol 99' cites 99, which docs/protocol.md does not define")
    )


def test_main_rewrites_in_place(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(SOURCE, encoding="utf-8")
    assert cite.main([str(tmp_path)]) == 0
    assert source.read_text(encoding="utf-8") == EXPECTED
    assert cite.main(["--check", str(source)]) == 1  # the two messages are left


def test_protocol_md_numbers_every_rule_once() -> None:
    # The numbering is the checklist's the code has always cited: 1-60, A-N.
    numbers = [int(n) for n in re.findall(r"^### (\d+)\. ", PROTOCOL, re.MULTILINE)]
    assert numbers == list(range(1, 61))
    assert sorted(SECTIONS) == list("ABCDEFGHIJKLMN")
    for number in numbers:  # each rule has a stable anchor: protocol.md#rule-13
        assert re.search(rf"^### {number}\. .*\{{#rule-{number}\}}$", PROTOCOL, re.MULTILINE)


def test_protocol_md_links_every_rule_to_discord() -> None:
    rules = re.split(r"^### ", PROTOCOL, flags=re.MULTILINE)[1:]
    for rule in rules:
        assert "https://discord.com/developers/docs/" in rule, rule.splitlines()[0]


def _findings() -> list[str]:
    paths = [ROOT / p for p in cite.DEFAULT_PATHS if (ROOT / p).exists()]
    rules, sections = RULES, SECTIONS
    return [
        str(finding)
        for file in cite.iter_files(paths)
        for finding in cite.check_text(
            file.relative_to(ROOT).as_posix(),
            file.read_text(encoding="utf-8"),
            rules,
            sections,
            file.suffix == ".py",
        )
    ]


def test_every_protocol_citation_exists() -> None:
    # Holds before the rename (there are none yet) and after it.
    assert [f for f in _findings() if "does not define" in f] == []


def test_no_old_citations_left() -> None:
    assert _findings() == []
