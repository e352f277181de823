"""Messages shown to users cite no internal numbers ("protocol 18", "protocol 31").

Comments and docstrings cite the protocol rules they implement by number; the
words a user reads - exception messages, log lines, the reasons a shard gives
up - say what went wrong and what to do instead. This test reads the package's
source with ``ast`` and fails on any string literal inside a ``raise``, a
logging call or an exception's construction that mentions ``spec <n>``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import discord_gateway

PACKAGE = Path(discord_gateway.__file__).parent
# "protocol 18" and, once the citations are renamed after docs/protocol.md, "protocol 18".
_CITATION = re.compile(r"\b(spec|protocol|rule)s? \d|\(spec\b|checklist", re.IGNORECASE)
_LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def _strings(node: ast.AST) -> list[str]:
    return [
        sub.value
        for sub in ast.walk(node)
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str)
    ]


def _user_facing(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every literal in a raise, a log call or an ``...Error(...)`` call."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found += [(node.lineno, s) for s in _strings(node.exc)]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _LOG_METHODS or name.endswith(("Error", "Failed", "Closed", "_note")):
                found += [(node.lineno, s) for arg in node.args for s in _strings(arg)]
                found += [(node.lineno, s) for kw in node.keywords for s in _strings(kw.value)]
    return found


def test_the_walker_finds_a_citation_in_a_raise_and_a_log_line() -> None:
    # The walker itself must be able to fail.
    tree = ast.parse(
        'raise InvalidCommand(f"limit is required (spec {47})")\n'
        'LOG.warning("deprecated (spec 3): use %d", 10)\n'
        'def f():\n    """Docstrings may cite spec 3."""\n'
    )
    hits = [text for _, text in _user_facing(tree) if _CITATION.search(text)]
    assert hits == ["limit is required (spec ", "deprecated (spec 3): use %d"]


def test_no_message_shown_to_users_cites_a_spec_item() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, text in _user_facing(tree):
            if _CITATION.search(text):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}")
    assert not offenders, "\n".join(offenders)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _table_descriptions(tree: ast.AST) -> set[int]:
    """The lifecycle table's descriptions: documentation of the table, citing rules on purpose."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Transition":
            found |= {id(sub) for sub in ast.walk(node) if isinstance(sub, ast.Constant)}
    return found


def test_no_string_in_the_package_cites_a_spec_item_outside_docs() -> None:
    # Wider than the walker above: a message may be built in a variable first
    # (``reason = "..."; raise LocalProtocolError(f"...{reason}")``).
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _docstrings(tree) | _table_descriptions(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and _CITATION.search(node.value)
            ):
                offenders.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}"
                )
    assert not offenders, "\n".join(offenders)
