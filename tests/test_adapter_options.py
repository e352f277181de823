"""Every adapter's ``Shard(...)`` and ``ShardManager(...)`` refuse bad options when built.

No socket is opened here: a bad option must raise ``ConfigurationError`` in
the constructor, not after connecting.
"""

from __future__ import annotations

import random
import ssl
from typing import Any

import pytest

from discord_gateway import ConfigurationError, DiscordConnection
from discord_gateway.adapters import asyncio as asyncio_adapter
from discord_gateway.adapters import threading as threading_adapter
from discord_gateway.adapters import trio as trio_adapter
from discord_gateway.adapters._base import HEARTBEAT_GRID
from discord_gateway.adapters.manager import ShardManager

SHARDS = [
    pytest.param(asyncio_adapter.Shard, id="asyncio"),
    pytest.param(threading_adapter.Shard, id="threading"),
    pytest.param(trio_adapter.Shard, id="trio"),
]

BAD: list[Any] = [
    pytest.param({"encoding": "etf", "compress": True}, id="etf-with-payload-compression"),
    pytest.param({"shard": (3, 2)}, id="shard-id-not-below-count"),
    pytest.param({"shard": (0, 0)}, id="shard-count-zero"),
    pytest.param({"shard": (-1, 2)}, id="shard-id-negative"),
    pytest.param({"shard": (0.0, 2)}, id="shard-id-float"),
    pytest.param({"shard": (True, 2)}, id="shard-id-bool"),
    pytest.param({"shard": (0, 1, 2)}, id="shard-triple"),
    pytest.param({"shard": "0,1"}, id="shard-str"),
    pytest.param({"heartbeat_grid": -1.0}, id="heartbeat-grid-negative"),
    pytest.param({"heartbeat_grid": "1"}, id="heartbeat-grid-str"),
    pytest.param({"intents": -1}, id="intents-negative"),
    pytest.param({"intents": 1.5}, id="intents-float"),
    pytest.param({"intents": True}, id="intents-bool"),
    pytest.param({"intents": "513"}, id="intents-str"),
    pytest.param({"intents": 1 << 40}, id="intents-unknown-bits"),
    pytest.param({"token": ""}, id="token-empty"),
    pytest.param({"url": "http://gateway.discord.gg"}, id="url-http"),
    pytest.param({"url": "wss://"}, id="url-no-host"),
    pytest.param({"url": 12}, id="url-not-str"),
    pytest.param({"compress": "gzip"}, id="compress-unknown"),
    pytest.param({"encoding": "xml"}, id="encoding-unknown"),
    pytest.param({"connect_timeout": 0}, id="connect-timeout-zero"),
    pytest.param({"connect_timeout": float("nan")}, id="connect-timeout-nan"),
    pytest.param({"connect_timeout": 1e300}, id="connect-timeout-huge"),
    pytest.param({"hello_timeout": -1.0}, id="hello-timeout-negative"),
    pytest.param({"close_timeout": float("inf")}, id="close-timeout-inf"),
    pytest.param({"ready_timeout": 0}, id="ready-timeout-zero"),
    pytest.param({"resume_timeout": "60"}, id="resume-timeout-str"),
    pytest.param({"large_threshold": 10}, id="large-threshold-small"),
    pytest.param({"presence": {"status": "sleepy"}}, id="presence-bad-status"),
    pytest.param({"properties": ["os"]}, id="properties-list"),
    pytest.param({"ssl_context": "yes"}, id="ssl-context-str"),
    pytest.param({"dispatch_handled": 1}, id="dispatch-handled-int"),
    pytest.param({"rng": 4}, id="rng-int"),
    pytest.param({"headers": {"X-Bad\n": "v"}}, id="header-name-newline"),
    pytest.param({"headers": "X-A: b"}, id="headers-str"),
    pytest.param({"max_pending_events": 0}, id="max-pending-zero"),
    pytest.param({"max_pending_events": True}, id="max-pending-bool"),
    pytest.param({"max_failed_attempts": 0}, id="max-failed-zero"),
    pytest.param({"max_payload_size": 10}, id="max-payload-tiny"),
    pytest.param({"intens": 1}, id="unknown-option"),
]


def build(cls: Any, **options: Any) -> Any:
    options.setdefault("token", "t0ken")
    options.setdefault("intents", 513)
    token = options.pop("token")
    return cls(token, **options)


@pytest.mark.parametrize("options", BAD)
@pytest.mark.parametrize("cls", SHARDS)
def test_a_bad_option_is_refused_when_the_shard_is_built(cls: Any, options: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(cls, **options)
    assert "spec" not in str(caught.value)  # users see no internal numbers


@pytest.mark.parametrize("options", BAD)
def test_a_bad_option_is_refused_when_the_manager_is_built(options: Any) -> None:
    options = dict(options)
    options.pop("shard", None)  # the manager sets each shard's shard itself
    if not options:
        options = {"shard_count": 0}
    with pytest.raises(ConfigurationError):
        build(ShardManager, **options)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"shard_count": 0}, id="count-zero"),
        pytest.param({"shard_count": 2.0}, id="count-float"),
        pytest.param({"shard_count": 2, "shard_ids": [2]}, id="id-not-below-count"),
        pytest.param({"shard_ids": [0, 0]}, id="ids-repeated"),
        pytest.param({"shard_ids": [-1]}, id="id-negative"),
        pytest.param({"shard_ids": "01"}, id="ids-str"),
        pytest.param({"max_concurrency": 0}, id="concurrency-zero"),
        pytest.param({"api_base": "ftp://x"}, id="api-base"),
        pytest.param({"shard": (0, 1)}, id="shard-is-the-managers"),
    ],
)
def test_the_managers_own_options_are_checked_when_built(options: Any) -> None:
    with pytest.raises(ConfigurationError):
        build(ShardManager, **options)


def test_an_unknown_option_names_the_likely_one() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'close_timeout'"):
        build(threading_adapter.Shard, close_timout=1.0)


@pytest.mark.parametrize("cls", SHARDS)
def test_every_documented_option_is_still_accepted(cls: Any) -> None:
    shard = build(
        cls,
        url="wss://gateway.discord.gg/?v=10",
        shard=[1, 4],
        compress="zlib-stream",
        encoding="json",
        properties={"os": "linux"},
        presence={"status": "idle"},
        large_threshold=100,
        ssl_context=ssl.create_default_context(),
        connect_timeout=3,
        hello_timeout=4.0,
        close_timeout=1.0,
        dispatch_handled=True,
        rng=random.Random(1),
        headers={"X-Trace": "1"},
        ready_timeout=10.0,
        resume_timeout=20.0,
        max_payload_size=1 << 20,
        max_pending_events=5,
        max_failed_attempts=None,
        fast_frames=False,
        heartbeat_grid=0.25,
    )
    assert shard.options.shard == (1, 4)  # normalised to a tuple
    assert shard.connection.state.value == "connecting"  # built, not connected


@pytest.mark.parametrize("fast_frames", [True, False])
@pytest.mark.parametrize("cls", SHARDS)
def test_fast_frames_reaches_every_connection(cls: Any, fast_frames: bool) -> None:
    shard = build(cls, fast_frames=fast_frames)
    assert shard.connection._fast_frames is fast_frames
    # and each reconnection's new core connection, built from the same options
    assert shard.options.new_connection()._fast_frames is fast_frames
    assert build(cls).options.new_connection()._fast_frames is True  # the core's default


@pytest.mark.parametrize("cls", [*SHARDS, pytest.param(ShardManager, id="manager")])
def test_fast_frames_is_checked_by_the_core(cls: Any) -> None:
    with pytest.raises(ConfigurationError, match="fast_frames must be True or False"):
        build(cls, fast_frames=1)


@pytest.mark.parametrize("grid", [0.0, 0.25, 2])
@pytest.mark.parametrize("cls", SHARDS)
def test_heartbeat_grid_reaches_every_connection(cls: Any, grid: float) -> None:
    shard = build(cls, heartbeat_grid=grid)
    assert shard.connection._heartbeat_grid == grid
    assert shard.options.new_connection()._heartbeat_grid == grid


@pytest.mark.parametrize("cls", SHARDS)
def test_shards_put_heartbeats_on_a_grid_by_default(cls: Any) -> None:
    # The core times heartbeats exactly unless told; every adapter (and so every
    # ShardManager shard) uses one grid.
    assert DiscordConnection("wss://g")._heartbeat_grid == 0.0
    shard = build(cls)
    assert shard.options.heartbeat_grid == HEARTBEAT_GRID > 0
    assert shard.connection._heartbeat_grid == HEARTBEAT_GRID


@pytest.mark.parametrize("cls", [*SHARDS, pytest.param(ShardManager, id="manager")])
def test_heartbeat_grid_is_checked_by_the_core(cls: Any) -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_grid must be a number of seconds"):
        build(cls, heartbeat_grid=float("nan"))
