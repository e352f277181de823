"""A minimal bot on the trio adapter (needs the ``trio`` extra).

With no ``DISCORD_TOKEN`` in the environment it starts the local gateway in
this process (an asyncio server, so on its own loop in a thread: trio and
asyncio cannot share one), connects to it, prints READY and three dispatches
the gateway pushes, and exits. With ``DISCORD_TOKEN`` set it connects to
``--url`` (default ``wss://gateway.discord.gg``) and prints events until Ctrl-C.

    python examples/trio_bot.py
    DISCORD_TOKEN=... python examples/trio_bot.py --intents 513
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial

import trio

from discord_gateway import Disconnected, Dispatch, Ready
from discord_gateway.adapters.trio import Shard
from discord_gateway.testing import serve

DEMO_DISPATCHES = 3


@contextmanager
def local_gateway() -> Iterator[tuple[str, str, Callable[[int], None]]]:
    """The local gateway on an asyncio loop in a thread: (url, token, push(i))."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    gateway = serve()
    asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(5)

    def push(i: int) -> None:  # the gateway belongs to its loop: go through it
        loop.call_soon_threadsafe(gateway.dispatch, "TEST", {"i": i})

    try:
        yield gateway.url, gateway.token, push
    finally:
        asyncio.run_coroutine_threadsafe(gateway.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def run_bot(
    token: str, url: str, intents: int, push: Callable[[int], None] | None = None
) -> None:
    async with Shard(token, intents=intents, url=url) as shard:
        seen = 0
        async for event in shard:
            if isinstance(event, Ready):
                print(f"READY session {event.session_id}", flush=True)
                if push is not None:
                    for i in range(DEMO_DISPATCHES):
                        push(i)
            elif isinstance(event, Disconnected):  # also logged; the shard reconnects itself
                then = "resuming" if event.resumable else "identifying"
                print(
                    f"lost ({event.code}: {event.reason}), {then} in {event.delay:.1f} s",
                    flush=True,
                )
            elif isinstance(event, Dispatch):
                if event.name != "TEST":
                    print(f"dispatch {event.name}", flush=True)
                    continue
                print(f"dispatch {event.name} {json.dumps(event.data)}", flush=True)
                seen += 1
                if push is not None and seen == DEMO_DISPATCHES:
                    break
    print("closed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="wss://gateway.discord.gg")
    parser.add_argument("--intents", type=int, default=513)
    args = parser.parse_args()
    token = os.environ.get("DISCORD_TOKEN")
    if token:
        trio.run(run_bot, token, args.url, args.intents)
        return
    with local_gateway() as (url, local_token, push):
        print(f"local gateway on {url}", flush=True)
        trio.run(partial(run_bot, local_token, url, args.intents, push))


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        main()
