"""The README's first command: the offline demo, and `connect`."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from discord_gateway.demo import brief_json, run_connect, run_demo
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
        "finished",
    ):
        assert expected in text, expected
    # the events sent while the TCP connection was down
    assert len([line for line in text.splitlines() if line.endswith("(replayed)")]) == 3
    assert text.count("RESUMED   s=") == 2


def _timeline(text: str) -> list[tuple[str, str]]:
    """(kind, text) of each timestamped line."""
    lines = []
    for line in text.splitlines():
        match = re.match(r" *\d+\.\d{3}s  (\S+) +(.*)$", line)
        if match:
            lines.append((match[1], match[2]))
    return lines


def test_demo_opens_with_a_paragraph_and_a_legend() -> None:
    out = io.StringIO()
    run_demo(seconds=2.5, out=out)
    intro = out.getvalue().split("\n\n", 2)
    assert intro[0].startswith("discord-gateway demo:")
    assert "RESUME" in intro[1] and "replays every event" in intro[1]
    legend = intro[2].split("\n\n", 1)[0]
    for term in ("op 7", "4000", "s=N", "1006", "(replayed)", "state", "server", "lost"):
        assert term in legend, term


def test_demo_prints_each_cause_before_its_effect() -> None:
    out = io.StringIO()
    run_demo(seconds=2.5, out=out)
    timeline = _timeline(out.getvalue())
    kinds = [kind for kind, _ in timeline]
    for i, (kind, text) in enumerate(timeline):
        if kind == "state" and text == "connecting -> hello":
            assert "HELLO" in kinds[:i] and kinds[:i][::-1].index("HELLO") < 3, timeline[i - 3 : i]
        if kind == "state" and text == "identifying -> ready":
            assert "READY" in kinds[i - 4 : i]  # READY (and what came with it), then the state
        if kind == "state" and text == "ready -> closing":
            # The cause is the last line before it; a heartbeat ACK read in the
            # same piece of the stream may be narrated between them.
            cause = [k for k, _ in timeline[:i] if k != "heartbeat"][-1]
            assert cause in ("RECONNECT", "demo"), timeline[i - 3 : i + 1]
    # A lost connection is described, and the library's own warning is not repeated.
    lost = [text for kind, text in timeline if kind == "lost"]
    assert lost[0].startswith("4000 (reconnect requested); resuming the session in")
    assert lost[1].startswith("1006 (the connection was lost); resuming the session in")
    assert not [t for _, t in timeline if t.startswith("lost the connection to the gateway")]
    # It ends finished: the session closed, then the summary, then the last word.
    assert ("state", "closing -> closed") in timeline
    assert timeline[-1] == ("demo", "finished: the session is over and the bot has stopped")
    assert timeline[-2][1].startswith("summary: ")


def test_demo_summary_matches_what_the_local_gateway_logged() -> None:
    out = io.StringIO()
    run_demo(seconds=2.5, out=out)
    timeline = _timeline(out.getvalue())
    server = [text for kind, text in timeline if kind == "server"]
    opened = [t for t in server if re.match(r"connection #\d+: opened", t)]
    resumed = [re.search(r"replaying (\d+)", t) for t in server if "resumed session" in t]
    identified = [t for t in server if "identified, new session" in t]
    summary = re.fullmatch(
        r"summary: (\d+) events delivered, (\d+) reconnects, (\d+) resumes, lost: (\d+)",
        timeline[-2][1],
    )
    assert summary is not None, timeline[-2]
    delivered, reconnects, resumes, lost = map(int, summary.groups())
    assert reconnects == len(opened) - 1 == 2
    assert resumes == len(resumed) == 2
    assert lost == 0
    # Every event the bot got is a dispatch line, READY or RESUMED - and each
    # replayed one the gateway said it replayed is among them.
    shown = [k for k, _ in timeline if k in ("dispatch", "READY", "RESUMED")]
    assert delivered == len(shown)
    replayed = sum(int(m[1]) for m in resumed if m is not None)
    assert replayed == len([t for k, t in timeline if t.endswith("(replayed)")]) == 3
    assert len(identified) == 1


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"content": "hi"}, '{"content": "hi"}'),
        (
            {"id": "961969618123483218", "guild_id": "961969618123483218", "name": "x" * 80},
            '{"id": "961969618123483218", "guild_id": "...", ...}',
        ),
        ({"long": "y" * 100}, '{"long": "..."}'),
        ({"nested": {"a": ["z" * 90]}}, '{"nested": {...}}'),
        (["q" * 100], "[...]"),
    ],
)
def test_brief_json_never_cuts_inside_a_value(data: object, shown: str) -> None:
    assert brief_json(data) == shown


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


def test_connect_exits_non_zero_with_one_line_on_a_fatal_close() -> None:
    # The local gateway refuses privileged intents (4014): `connect` must print
    # one line saying so and exit 1, not a traceback and exit 0.
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, str] = {}

    async def server() -> None:
        config = ServerConfig(heartbeat_interval=0.5, allowed_intents=0)
        async with serve(config) as gateway:
            box["api"] = f"http://{gateway.host}:{gateway.port}/api/v10"
            box["token"] = gateway.token
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(server(),))
    thread.start()
    try:
        assert started.wait(10)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "discord_gateway",
                "connect",
                "--api-base",
                box["api"],
                "--intents",
                str(1 | 1 << 15),  # GUILDS | MESSAGE_CONTENT (privileged)
                "--seconds",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DISCORD_TOKEN": box["token"]},
        )
    finally:
        stop.set()
        thread.join(10)
    assert result.returncode == 1, result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("connect: the gateway closed with fatal code 4014")
    assert "MESSAGE_CONTENT" in errors[0] and "Privileged Gateway Intents" in errors[0]
