"""``examples/core_loop.py`` (the README's core loop) type-checks and runs.

It runs against the local gateway: READY, a few dispatches, a deliberate
close(1000) and a clean exit 0; a failed TCP connect is retried and then
given up on; a bad token (4004) exits 1 naming the code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from adapter_scenarios import ThreadedGateway

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "core_loop.py"


def run_example(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DISCORD_TOKEN=token)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def test_the_core_loop_type_checks_under_mypy_strict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout


def test_the_core_loop_closes_and_exits_cleanly() -> None:
    with ThreadedGateway() as gateway:
        done = run_example(gateway.url, gateway.token, "--dispatches", "2")
        closed_by = gateway.server(0, "closed_by")
        close_code = gateway.server(0, "close_code")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("READY as session ")
    assert len([line for line in lines if line.startswith("dispatch ")]) >= 2
    assert lines[-2].startswith("connection closed (1000")
    assert lines[-1] == "closed"
    assert (closed_by, close_code) == ("client", 1000)


def test_the_core_loop_retries_a_failed_connect_then_gives_up() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_example(f"ws://127.0.0.1:{port}", "token", "--max-failures", "2")
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert len([e for e in errors if e.startswith("could not connect to ")]) == 2, errors
    assert errors[-1] == "giving up after 2 failed attempts"


def test_the_core_loop_exits_1_on_a_fatal_close() -> None:
    with ThreadedGateway() as gateway:
        done = run_example(gateway.url, "wrong")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("fatal close 4004")


def test_the_readme_core_loop_is_the_example() -> None:
    # The README shows examples/core_loop.py's imports and loop verbatim, so the
    # tests above (mypy --strict, the runs) cover what people copy.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using the core\n", 1)[1]
    block = section.split("```python\n", 1)[1].split("```\n", 1)[0]
    imports, loop = block.split("\n\n\ndef open_socket(", 1)
    example = EXAMPLE.read_text()
    assert imports in example
    assert "def open_socket(" + loop in example
    assert "def run(" in loop and "conn.close(1000)" in loop
