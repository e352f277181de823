"""Build script for the optional compiled build; everything else is in pyproject.toml.

By default this builds the pure-Python package. With ``DISCORD_GATEWAY_COMPILE=1``
the modules listed in ``COMPILED`` are compiled to C extensions with mypyc,
which ships with mypy::

    pip install "setuptools>=77" "mypy>=1.10"
    DISCORD_GATEWAY_COMPILE=1 pip install --no-build-isolation .

The compiled modules behave exactly like the pure-Python ones (CI runs the test
suite against both, ``benchmarks/compiled_suite.sh``); the pure-Python package
is the fallback and the default.
"""

from __future__ import annotations

import os

from setuptools import setup

#: Compiled: the data-frame fast path (its byte-level parsing is ~4x faster
#: compiled). Not compiled, and why (benchmarks/README.md, "Compiled build"):
#: connection.py and codec.py - mypyc checks every annotated argument at run
#: time, so a wrong option or command argument would raise TypeError instead
#: of ConfigurationError / InvalidCommand (the error contract), and codec.py
#: defines its JSON functions conditionally, which mypyc refuses; events.py
#: builds Dispatch through slot descriptors, which native classes do not have.
COMPILED = ["discord_gateway/_fastframes.py"]

ext_modules = []
if os.environ.get("DISCORD_GATEWAY_COMPILE", "") not in ("", "0"):
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3", debug_level="0")

setup(ext_modules=ext_modules)
