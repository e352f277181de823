"""Smoke test of ``benchmarks/idle_peers.py``: each client reaches READY for 2 shards.

Shapes only (every shard READY on the gateway's count, before and after the
window; a memory figure); the figures are measured by the script, never
asserted here.
"""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import idle_peers


@pytest.mark.parametrize("client", idle_peers.CLIENTS)
def test_each_client_reaches_ready_and_is_measured(client: str) -> None:
    module = {"discord.py": "discord", "hikari": "hikari"}.get(client)
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{client} (in the test extra) is not installed on this Python")
    [result] = idle_peers.main(["--shards", "2", "--seconds", "1", "--only", client])
    assert "error" not in result, result
    assert result["client"] == client and result["shards"] == 2
    assert result["ready"] == result["ready_after"] == 2
    assert result["memory_per_shard"] > 0 and result["cpu"] >= 0
    assert result["heartbeats"] >= 0 and result["seconds"] >= 1
