"""The server side of the end-to-end benchmark, in its own process (its own core).

Prints ``URL TOKEN`` on one line, waits for one session to be READY, then
dispatches N realistic small events (benchmarks.corpus) as fast as the local
gateway frames them, and serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.corpus import small_messages
from discord_gateway.testing import ServerConfig, serve


async def main(count: int) -> None:
    messages = [
        m for m in small_messages(min(count, 20_000)) if m.get("op") == 0 and m.get("t") != "READY"
    ]
    # Every captured event is replayed as is, to a peer that identifies with few
    # intents: no filtering, so both clients read the same payloads.
    async with serve(ServerConfig(heartbeat_interval=41.25, filter_by_intents=False)) as gateway:
        print(gateway.url, gateway.token, flush=True)
        await gateway.wait_for(lambda: bool(gateway.store.sessions), timeout=30)
        await asyncio.sleep(0.05)
        for i in range(count):
            message = messages[i % len(messages)]
            gateway.dispatch(message["t"], message["d"])
            if i % 500 == 499:
                await asyncio.sleep(0)  # let the transport flush
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
