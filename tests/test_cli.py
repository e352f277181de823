"""``python -m discord_gateway``: every error a user can cause is one line and a non-zero exit.

Bad command lines exit 2 with one line naming the option and where help is;
failures while running (a port in use, a host that is not ours, trustme
missing for ``--tls``) exit 1 with one line saying what to do. No traceback,
ever. ``--help`` shows the defaults.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from discord_gateway.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "discord_gateway", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--port", "70000"], "port must be between 0 and 65535, not 70000"),
        (["serve", "--port", "-1"], "port must be between 0 and 65535, not -1"),
        (["serve", "--port", "http"], "port must be a number, not 'http'"),
        (["serve", "--heartbeat-interval", "0"], "--heartbeat-interval: must be above 0"),
        (["serve", "--heartbeat-interval", "1.5"], "must be a whole number, not '1.5'"),
        (["serve", "--session-ttl", "inf"], "--session-ttl: must be a number of seconds above 0"),
        (["demo", "--seconds", "0"], "--seconds: must be a number of seconds above 0, not 0"),
        (["connect", "--intents", "GUILDS|NOPE"], "'NOPE' is not an intent"),
        (["connect", "--seconds", "soon"], "must be a number of seconds, not 'soon'"),
        (["nothing"], "invalid choice: 'nothing'"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    line = one_line(result)
    assert expected in line
    assert line.startswith("python -m discord_gateway") and line.endswith("--help)")


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--port", str(port))
    assert result.returncode == 1
    assert one_line(result) == (
        f"python -m discord_gateway serve: cannot listen on 127.0.0.1:{port}: "
        "Address already in use (choose another --port, or 0 for a free one)"
    )


@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])
def test_a_host_we_cannot_bind_is_one_line_and_exit_1(host: str) -> None:
    result = cli("serve", "-q", "--host", host)
    assert result.returncode == 1
    assert one_line(result).startswith(
        f"python -m discord_gateway serve: cannot listen on {host}:0: "
    )


def test_tls_without_trustme_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # import trustme raises ImportError
    assert main(["serve", "-q", "--tls"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "python -m discord_gateway serve: --tls needs the trustme package: "
        "pip install 'discord-gateway[test]'\n"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--ca-file", "ca.pem"], "--ca-file needs --tls"),
        (["serve", "--token", " "], "--token must not be empty"),
    ],
)
def test_inconsistent_serve_options_are_one_line_and_exit_1(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 1
    assert capsys.readouterr().err == f"python -m discord_gateway serve: {expected}\n"


def test_connect_without_a_token_is_one_line_and_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "discord_gateway", "connect"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "DISCORD_TOKEN" in line and "python -m discord_gateway demo" in line


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (
            "serve",
            [
                "(default: 127.0.0.1)",
                "(default: 0)",
                "(default: 41250)",
                "(default: 120.0)",
                "(default: both enforced, like Discord)",
            ],
        ),
        ("demo", ["(default: 6.0)"]),
        ("connect", ["(default: 513)", "(default: https://discord.com/api/v10)"]),
    ],
)
def test_help_shows_the_defaults(command: str, defaults: list[str]) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for default in defaults:
        assert default in text, default
    assert "(default: None)" not in text and "(default: False)" not in text
