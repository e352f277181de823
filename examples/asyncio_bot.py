"""A minimal bot on the asyncio adapter.

With no ``DISCORD_TOKEN`` in the environment it starts the local gateway in
this process, connects to it, prints READY and three dispatches the gateway
pushes, and exits. With ``DISCORD_TOKEN`` set it connects to ``--url``
(default ``wss://gateway.discord.gg``) and prints events until Ctrl-C.

    python examples/asyncio_bot.py
    DISCORD_TOKEN=... python examples/asyncio_bot.py --intents 513
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os

from discord_gateway import Disconnected, Dispatch, Ready
from discord_gateway.adapters.asyncio import Shard
from discord_gateway.testing import LocalGateway, serve

DEMO_DISPATCHES = 3


async def run_bot(token: str, url: str, intents: int, demo: LocalGateway | None = None) -> None:
    async with Shard(token, intents=intents, url=url) as shard:
        seen = 0
        async for event in shard:
            if isinstance(event, Ready):
                print(f"READY session {event.session_id}", flush=True)
                if demo is not None:
                    for i in range(DEMO_DISPATCHES):
                        demo.dispatch("TEST", {"i": i})
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
                if demo is not None and seen == DEMO_DISPATCHES:
                    break
    print("closed", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="wss://gateway.discord.gg")
    parser.add_argument("--intents", type=int, default=513)
    args = parser.parse_args()
    token = os.environ.get("DISCORD_TOKEN")
    if token:
        await run_bot(token, args.url, args.intents)
        return
    async with serve() as gateway:
        print(f"local gateway on {gateway.url}", flush=True)
        await run_bot(gateway.token, gateway.url, args.intents, demo=gateway)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
