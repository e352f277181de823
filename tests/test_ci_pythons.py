"""The Pythons we claim are the Pythons CI runs: pyproject's classifiers, its
``requires-python`` and the versions in ``.ci/run`` agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_classifiers_list_exactly_the_versions_ci_runs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    claimed = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', pyproject)
    ci = (ROOT / ".ci" / "run").read_text()
    default = re.search(r"^DEFAULT=(3\.\d+)$", ci, re.M)
    others = re.search(r"^OTHERS=\(([\d. ]+)\)$", ci, re.M)
    assert default is not None and others is not None
    tested = sorted([default[1], *others[1].split()], key=lambda v: int(v.split(".")[1]))
    assert claimed == tested
    minimum = re.search(r'^requires-python = ">=(3\.\d+)"$', pyproject, re.M)
    assert minimum is not None and minimum[1] == tested[0]
