"""Shards across processes and machines (docs: "Running across processes and machines").

Without Redis: :class:`SessionStore` (a protocol) and :class:`MemorySessionStore`,
which ``ShardManager(session_store=...)`` uses to RESUME after a restart inside
one process. With the ``redis`` extra (``pip install 'discord-gateway[redis]'``):

* :class:`RedisIdentifyScheduler`: one identify queue for every process
  (``ShardManager(scheduler=...)``);
* :class:`RedisSessionStore`: sessions that outlive the process;
* :class:`RedisEventSink` and :func:`consume`: dispatches to Redis Streams,
  read by workers in a consumer group; :func:`send_command` back to a shard;
* :class:`ClusterNode`: a gateway process that claims shards with leases,
  takes over a dead process's shards and RESUMEs them.

Importing ``discord_gateway`` never imports ``redis``; the Redis names here are
imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import (
    DEFAULT_MAX_SESSION_AGE,
    DEFAULT_SAVE_INTERVAL,
    EventSink,
    IdentifyQueue,
    MemorySessionStore,
    SavedSession,
    SessionStore,
    ShardHooks,
)

if TYPE_CHECKING:
    from ._node import RESUMABLE_CLOSE_CODE, ClusterNode
    from ._redis import (
        COMMAND_OPCODES,
        NotShardOwner,
        RedisEventSink,
        RedisIdentifyScheduler,
        RedisSessionStore,
        StreamEvent,
        consume,
        send_command,
    )

__all__ = (
    "COMMAND_OPCODES",
    "DEFAULT_MAX_SESSION_AGE",
    "DEFAULT_SAVE_INTERVAL",
    "RESUMABLE_CLOSE_CODE",
    "ClusterNode",
    "EventSink",
    "IdentifyQueue",
    "MemorySessionStore",
    "NotShardOwner",
    "RedisEventSink",
    "RedisIdentifyScheduler",
    "RedisSessionStore",
    "SavedSession",
    "SessionStore",
    "ShardHooks",
    "StreamEvent",
    "consume",
    "send_command",
)

_REDIS_NAMES = {
    "COMMAND_OPCODES": "._redis",
    "NotShardOwner": "._redis",
    "RedisEventSink": "._redis",
    "RedisIdentifyScheduler": "._redis",
    "RedisSessionStore": "._redis",
    "StreamEvent": "._redis",
    "consume": "._redis",
    "send_command": "._redis",
    "ClusterNode": "._node",
    "RESUMABLE_CLOSE_CODE": "._node",
}


def __getattr__(name: str) -> Any:
    module_name = _REDIS_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name, __name__)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("redis", "hiredis"):
            raise
        raise ImportError(
            f"discord_gateway.cluster.{name} needs the redis client: "
            "pip install 'discord-gateway[redis]'"
        ) from exc
    return getattr(module, name)
