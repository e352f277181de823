#!/bin/sh
# Build the Cython-compiled variant (setup.py, DISCORD_GATEWAY_COMPILE=1) in its
# own virtualenv and run the test suite against it.
#
#   sh benchmarks/compiled_suite.sh [pytest args...]    # from anywhere; ~4-5 min
#
# VENV (default .venv-compiled) and PYTHON (default python3) may be set. The
# suite runs from the installed, compiled package, never from the source tree:
# pytest's console script (not ``python -m``, which puts the working directory
# first on sys.path) with the ``pythonpath = ["."]`` of pyproject.toml replaced
# by a directory holding only links to benchmarks/ and tests/ (which some tests
# import), and DISCORD_GATEWAY_EXPECT_COMPILED=1 makes
# tests/test_compiled_build.py fail if any module setup.py compiles was
# imported from its pure-Python source.
set -eu
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-compiled}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "setuptools>=77" "cython>=3.0"
# The test extra (pure build), then the package itself again, compiled.
"$VENV/bin/pip" install -q ".[test]"
DISCORD_GATEWAY_COMPILE=1 "$VENV/bin/pip" install -q --no-build-isolation --no-deps \
    --force-reinstall .
rm -rf build discord_gateway.egg-info
SHIM=$(mktemp -d)
trap 'rm -rf "$SHIM"' EXIT
ln -s "$PWD/benchmarks" "$SHIM/benchmarks"
ln -s "$PWD/tests" "$SHIM/tests"
DISCORD_GATEWAY_EXPECT_COMPILED=1 "$VENV/bin/pytest" -q -x -p no:cacheprovider \
    -o pythonpath="$SHIM" "$@"
