"""Build script for the optional compiled build; everything else is in pyproject.toml.

By default this builds the pure-Python package and needs neither Cython nor a
C compiler. With ``DISCORD_GATEWAY_COMPILE=1`` the modules listed in
``COMPILED`` are compiled to C extensions with Cython (a build-time-only
requirement) from the same ``.py`` files, which ship beside them::

    pip install "setuptools>=77" "cython>=3.0"
    DISCORD_GATEWAY_COMPILE=1 pip install --no-build-isolation .

The compiled modules behave exactly like the pure-Python ones (CI runs the test
suite against both, ``benchmarks/compiled_suite.sh``); the pure-Python package
is the fallback and the default.
"""

from __future__ import annotations

import os

from setuptools import setup

#: Compiled (benchmarks/README.md, "Compiled build"): the per-read and
#: per-event path - the connection's receive loop, the frame parser, the
#: codec and its inflaters, the events. Cython compiles them in pure-Python
#: mode, so the ``.py`` files stay the single source and the fallback.
COMPILED = [
    "discord_gateway/_fastframes.py",
    "discord_gateway/codec.py",
    "discord_gateway/connection.py",
    "discord_gateway/events.py",
    "discord_gateway/_zstd.py",
]

#: Python semantics, nothing else: annotations are not enforced (a wrong
#: argument must reach our own checks and raise ConfigurationError or
#: InvalidCommand, not TypeError), functions stay introspectable with their
#: own docstrings (no embedsignature: it rewrites ``__doc__``), Python
#: ints keep their size and indexing keeps its bounds checks and negative
#: indices (Cython's defaults), and no C types are inferred where that could
#: change a result.
DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,
    "binding": True,
    "infer_types": None,
}

ext_modules = []
if os.environ.get("DISCORD_GATEWAY_COMPILE", "") not in ("", "0"):
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        raise SystemExit(
            "DISCORD_GATEWAY_COMPILE=1 needs Cython in the build environment: "
            'pip install "setuptools>=77" "cython>=3.0", then '
            "DISCORD_GATEWAY_COMPILE=1 pip install --no-build-isolation ."
        ) from exc

    # The generated C goes to build/, never beside the sources (nor into the wheel).
    ext_modules = cythonize(
        COMPILED, compiler_directives=DIRECTIVES, build_dir="build/cython", quiet=True
    )

setup(ext_modules=ext_modules)
