"""The optional compiled build (setup.py, ``DISCORD_GATEWAY_COMPILE=1``).

Its behaviour is the whole suite's business: ``benchmarks/compiled_suite.sh``
runs every test against the compiled package. These tests guard the build
itself: the compiled run really imports the compiled modules, and the default
build stays pure Python, without Cython or a compiler.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    """The module names setup.py's ``COMPILED`` lists (read, not run)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED" for target in node.targets
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return [path.removesuffix(".py").replace("/", ".") for path in paths]
    raise AssertionError("setup.py has no COMPILED list")


@pytest.mark.skipif(
    not os.environ.get("DISCORD_GATEWAY_EXPECT_COMPILED"),
    reason="only in the compiled build's run (benchmarks/compiled_suite.sh)",
)
@pytest.mark.parametrize("name", compiled_modules())
def test_the_compiled_build_is_what_runs(name: str) -> None:
    """The compiled suite must not silently test a module's pure-Python source."""
    module = importlib.import_module(name)
    assert not str(module.__file__).endswith(".py"), module.__file__


def documented(name: str) -> list[tuple[str, str]]:
    """(qualified name, docstring) of the functions and classes in a module's source."""
    tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text())
    found = []

    def walk(nodes: list[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc is not None:
                    found.append((prefix + node.name, doc))
                if isinstance(node, ast.ClassDef):
                    walk(node.body, prefix + node.name + ".")

    walk(tree.body, "")
    return found


@pytest.mark.parametrize("name", compiled_modules())
def test_compiled_functions_keep_their_docstrings(name: str) -> None:
    """``help()`` and documentation tools see the same text in both builds."""
    module = importlib.import_module(name)
    for qualname, doc in documented(name):
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
        obj = getattr(obj, "fget", obj)  # a property: its getter's docstring
        # Compared cleaned: Python 3.13 strips docstrings' indentation when it
        # compiles a module, which a C extension's docstrings keep.
        assert obj.__doc__ is not None and doc is not None, qualname
        assert inspect.cleandoc(obj.__doc__) == inspect.cleandoc(doc), qualname


def run_setup(monkeypatch: pytest.MonkeyPatch, switch: str | None) -> dict[str, Any]:
    """Run setup.py with Cython unimportable; return what it passed to setup()."""
    # A venv of Python 3.12+ has no setuptools; pip brings its own to a build.
    setuptools = pytest.importorskip("setuptools")

    passed: dict[str, Any] = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: passed.update(kwargs))
    for name in ("Cython", "Cython.Build"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    if switch is None:
        monkeypatch.delenv("DISCORD_GATEWAY_COMPILE", raising=False)
    else:
        monkeypatch.setenv("DISCORD_GATEWAY_COMPILE", switch)
    runpy.run_path(str(ROOT / "setup.py"))
    return passed


@pytest.mark.parametrize("switch", [None, "", "0"])
def test_the_default_build_is_pure_python_without_cython(
    monkeypatch: pytest.MonkeyPatch, switch: str | None
) -> None:
    """``pip install .`` / ``pip install -e .`` must never need Cython or a compiler."""
    assert run_setup(monkeypatch, switch) == {"ext_modules": []}


def test_the_compile_switch_needs_cython(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch really selects the compiled build (the test above is not vacuous),
    and without Cython it says how to build instead of failing on an import."""
    with pytest.raises(SystemExit, match="--no-build-isolation"):
        run_setup(monkeypatch, "1")
