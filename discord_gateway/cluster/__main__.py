"""``python -m discord_gateway.cluster node|worker``: one gateway process or one
worker of a bot spread over processes (needs the ``redis`` extra).

``node`` runs a :class:`ClusterNode` until SIGTERM/SIGINT (then hands its shards
on: resumable close, sessions saved, leases given up). ``worker`` prints every
event its consumer group gives it as one JSON line. ``cluster-demo`` in
``python -m discord_gateway`` starts both against the local gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from ..testing import DEFAULT_TOKEN


def _node(args: argparse.Namespace) -> int:
    from ._node import ClusterNode

    async def run() -> None:
        node = ClusterNode(
            args.redis,
            args.token or os.environ.get("DISCORD_TOKEN") or DEFAULT_TOKEN,
            intents=args.intents,
            shard_count=args.shards,
            url=args.url,
            max_concurrency=args.max_concurrency,
            prefix=args.prefix,
            lease=args.lease,
            node_id=args.node_id,
            save_interval=args.save_interval,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with node:
            print(f"node {node.node_id} started (pid {os.getpid()})", flush=True)
            await stop.wait()
        print(f"node {node.node_id} stopped: shards handed on", flush=True)

    asyncio.run(run())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ._redis import consume

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def read() -> None:
            async for event in consume(args.redis, args.group, args.consumer, prefix=args.prefix):
                line = {
                    "worker": args.consumer,
                    "id": event.id,
                    "shard": event.shard_id,
                    "session": event.session_id,
                    "seq": event.seq,
                    "t": event.name,
                }
                print(json.dumps(line), flush=True)

        task = loop.create_task(read())
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m discord_gateway.cluster")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--prefix", default="discord_gateway", help="Redis key prefix")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run a gateway process that claims shards")
    node.add_argument("--url", required=True, help="the gateway URL (ws:// or wss://)")
    node.add_argument("--token", help="bot token (default: $DISCORD_TOKEN, or the local one)")
    node.add_argument("--intents", type=int, default=513)
    node.add_argument("--shards", type=int, required=True, help="the bot's shard count")
    node.add_argument("--max-concurrency", type=int, default=1)
    node.add_argument("--lease", type=float, default=10.0, help="seconds (default 10)")
    node.add_argument("--save-interval", type=float, default=1.0)
    node.add_argument("--node-id")
    worker = sub.add_parser("worker", help="print the events of a consumer group")
    worker.add_argument("--group", default="workers")
    worker.add_argument("--consumer", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(process)d %(name)s %(message)s",
        stream=sys.stderr,
    )
    return _node(args) if args.command == "node" else _worker(args)


if __name__ == "__main__":
    raise SystemExit(main())
