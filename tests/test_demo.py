"""The README's first command: the offline demo, and `connect`."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from discord_gateway.demo import run_connect, run_demo
from discord_gateway.testing import ServerConfig, serve

ROOT = Path(__file__).resolve().parent.parent


def test_demo_narrates_the_lifecycle() -> None:
    out = io.StringIO()
    assert run_demo(seconds=3.0, out=out) == 0
    text = out.getvalue()
    for expected in (
        "hello -> identifying",
        "READY",
        "heartbeat ACK, latency",
        "RECONNECT",
        "hello -> resuming",
        "RESUMED",
        "closing with 1000",
        "done",
    ):
        assert expected in text, expected
    assert text.count("(replayed)") == 3  # the events sent while the TCP connection was down
    assert text.count("RESUMED") == 2


def test_demo_command_runs_as_a_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "discord_gateway", "demo", "--seconds", "2.5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "RESUMED" in result.stdout


def test_connect_without_a_token_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert run_connect() == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN" in err and "demo" in err


def test_connect_against_the_local_gateways_rest_api(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, str] = {}

    async def server() -> None:
        async with serve(ServerConfig(heartbeat_interval=0.5)) as gateway:
            box["api"] = f"http://{gateway.host}:{gateway.port}/api/v10"
            box["token"] = gateway.token
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(server(),))
    thread.start()
    try:
        assert started.wait(10)
        monkeypatch.setenv("DISCORD_TOKEN", "wrong")
        assert run_connect(api_base=box["api"], seconds=1.0) == 1
        assert "HTTP 401" in capsys.readouterr().err
        monkeypatch.setenv("DISCORD_TOKEN", box["token"])
        assert run_connect(api_base=box["api"], seconds=1.0) == 0
        out = capsys.readouterr().out
        assert "1 shard(s) recommended" in out
        assert "READY" in out
    finally:
        stop.set()
        thread.join(10)
