"""The sans-I/O core with your own socket loop: what every adapter does, in one page.

Blocking sockets, one connection at a time. It connects (retrying a failed
TCP connect or a refused upgrade with the core's backoff), identifies or
resumes after HELLO, heartbeats on the core's deadlines, prints READY and the
first dispatches, then closes with 1000 and exits cleanly. A fatal close code
(a bad token: 4004) ends it with exit status 1.

    DISCORD_TOKEN=... python examples/core_loop.py --intents 513
    DISCORD_TOKEN=... python examples/core_loop.py --url ws://127.0.0.1:8765 --dispatches 3
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import time

import certifi

from discord_gateway import (
    CloseDiscordConnection,
    ConnectionRejected,
    DiscordConnection,
    Dispatch,
    Event,
    Hello,
    Intents,
    Ready,
    RemoteProtocolError,
)


def open_socket(conn: DiscordConnection) -> socket.socket:
    """TCP (and TLS for wss://) to where the core says: the resume URL or the original."""
    host, port = conn.destination
    sock = socket.create_connection((host, port), timeout=10)
    if conn.secure:
        context = ssl.create_default_context(cafile=certifi.where())
        return context.wrap_socket(sock, server_hostname=host)
    return sock


def run(
    url: str, token: str, intents: int, *, dispatches: int = 3, max_failures: int | None = None
) -> int:
    """Connect, print READY and ``dispatches`` dispatches, close with 1000; the exit status."""
    conn = DiscordConnection(url, compress="zlib-stream")
    seen = 0
    failures = 0  # connections in a row that never got a session started

    def handle(sock: socket.socket, events: list[Event]) -> None:
        nonlocal seen, failures
        for event in events:
            if isinstance(event, Hello):  # RESUME if the session survives, else IDENTIFY
                if conn.should_resume:
                    sock.sendall(conn.resume(token))
                else:
                    sock.sendall(conn.identify(token=token, intents=intents))
            elif isinstance(event, Ready):
                failures = 0
                print(f"READY as session {event.session_id}", flush=True)
            elif isinstance(event, Dispatch):
                seen += 1
                print(f"dispatch {event.name} (s={event.seq})", flush=True)
                if seen >= dispatches and not conn.closing:
                    sock.sendall(conn.close(1000))  # 1000 ends the session; then we exit

    while conn.should_reconnect():  # False after our close(1000) or a fatal close code
        delay = conn.reconnect()  # 0 the first time, then backoff with jitter
        if max_failures is not None and failures >= max_failures:
            print(f"giving up after {failures} failed attempts", file=sys.stderr)
            return 1
        time.sleep(delay)
        try:
            sock = open_socket(conn)
        except OSError as exc:  # refused, unreachable, DNS, TLS: retry with backoff
            failures += 1
            print(f"could not connect to {conn.destination}: {exc}", file=sys.stderr)
            continue
        try:
            sock.sendall(conn.connect())  # the HTTP upgrade request
            while True:
                deadline = conn.next_deadline()  # heartbeat, HELLO or close timeout
                sock.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
                data: bytes | None
                try:
                    data = sock.recv(65536)  # b"": the peer went away
                except TimeoutError:
                    data = None  # nothing before the deadline: handle_timer() below
                if data is not None:
                    try:
                        outgoing = conn.receive(data)
                    except RemoteProtocolError as err:  # garbage: the core is closing (4000)
                        outgoing = [err.data]
                    for chunk in outgoing:
                        sock.sendall(chunk)
                for chunk in conn.handle_timer():
                    sock.sendall(chunk)
                handle(sock, list(conn.events()))
        except CloseDiscordConnection as closed:  # the WebSocket is closed: so is the socket
            if closed.data:
                sock.sendall(closed.data)
            print(f"connection closed ({closed.code}: {closed.reason or 'no reason'})", flush=True)
            if conn.state.value != "closed" and seen == 0:
                failures += 1
        except ConnectionRejected as rejected:  # an HTTP answer instead of the upgrade
            failures += 1
            print(f"the gateway refused the upgrade: HTTP {rejected.code}", file=sys.stderr)
        except OSError as exc:  # reset, broken pipe: reconnect() counts it as lost
            print(f"connection lost: {exc}", file=sys.stderr)
        finally:
            sock.close()
        handle(sock, list(conn.events()))  # events that came with the close
    if conn.fatal_close_code is not None:
        print(f"fatal close {conn.fatal_close_code}: {conn.fatal_close_reason}", file=sys.stderr)
        return 1
    print("closed", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="wss://gateway.discord.gg")
    parser.add_argument("--intents", type=int, default=int(Intents.GUILDS | Intents.GUILD_MESSAGES))
    parser.add_argument("--dispatches", type=int, default=3)
    parser.add_argument("--max-failures", type=int, default=None)
    args = parser.parse_args()
    token = os.environ.get("DISCORD_TOKEN")
    if not token:
        print("set DISCORD_TOKEN to your bot's token", file=sys.stderr)
        return 2
    return run(
        args.url, token, args.intents, dispatches=args.dispatches, max_failures=args.max_failures
    )


if __name__ == "__main__":
    sys.exit(main())
