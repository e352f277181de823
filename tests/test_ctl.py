"""``python -m discord_gateway ctl``: driving a running local gateway from outside."""

from __future__ import annotations

import json
import socket

import pytest

from discord_gateway import Dispatch
from discord_gateway.__main__ import main
from discord_gateway.adapters.threading import Shard
from discord_gateway.testing.pytest_plugin import GatewayFixture

RESUME = 6


def ctl(gateway_url: str, *args: str) -> int:
    return main(["ctl", "--url", gateway_url, *args])


def test_ctl_pushes_injects_and_lists(
    discord_gateway: GatewayFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = discord_gateway.url
    # GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT: the message's content arrives
    with Shard(discord_gateway.token, intents=513 | 1 << 15, url=url) as shard:
        assert ctl(url, "wait-ready", "--timeout", "5") == 0
        assert ctl(url, "message", "hi from ctl") == 0
        pushed = json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])
        assert pushed["name"] == "MESSAGE_CREATE" and pushed["seqs"]
        for event in shard:
            if isinstance(event, Dispatch) and event.name == "MESSAGE_CREATE":
                assert event.data["content"] == "hi from ctl"
                break
        assert ctl(url, "dispatch", "CUSTOM_EVENT", '{"x": 1}') == 0
        for event in shard:
            if isinstance(event, Dispatch) and event.name == "CUSTOM_EVENT":
                assert event.data == {"x": 1}
                break
        capsys.readouterr()
        assert ctl(url, "fault", "reconnect") == 0
        assert json.loads(capsys.readouterr().out)["connection"] == 1
        discord_gateway.wait_for(lambda: any(r.op == RESUME for r in discord_gateway.commands()))
        assert ctl(url, "sessions") == 0
        [session] = json.loads(capsys.readouterr().out)
        assert session["connected"] and session["connection"] == 2  # ctl's HTTP is not counted
        assert ctl(url, "connections") == 0
        assert [c["index"] for c in json.loads(capsys.readouterr().out)] == [1, 2]
        assert ctl(url, "push", "member_join", '{"user": "bob"}') == 0
        assert json.loads(capsys.readouterr().out)["data"]["user"]["username"] == "bob"
        assert ctl(url, "requests") == 0
        assert json.loads(capsys.readouterr().out) == []


def test_ctl_says_what_went_wrong(
    discord_gateway: GatewayFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = discord_gateway.url
    assert ctl(url, "fault", "reset") == 1  # nobody connected
    assert "no live WebSocket connection" in capsys.readouterr().err
    assert ctl(url, "dispatch", "X", "{not json") == 1
    assert "not JSON" in capsys.readouterr().err
    assert ctl(url, "push", "message", '{"nope": 1}') == 1
    assert "message:" in capsys.readouterr().err
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert ctl(f"ws://127.0.0.1:{port}/", "sessions") == 1
    assert "is `python -m discord_gateway serve` running?" in capsys.readouterr().err
    assert main(["ctl", "--url", "", "sessions"]) == 1
    assert "--url" in capsys.readouterr().err
