"""Each example runs against the in-process local gateway and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("adapter", ["asyncio", "threading", "trio"])
def test_example_bot_runs_against_the_local_gateway(adapter: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{adapter}_bot.py")],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("local gateway on ws://127.0.0.1:")
    assert lines[1].startswith("READY session ")
    tests = [line for line in lines if line.startswith("dispatch TEST")]
    assert tests == [f'dispatch TEST {{"i": {i}}}' for i in range(3)]
    assert lines[-1] == "closed"
