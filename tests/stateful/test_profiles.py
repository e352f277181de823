"""The client against every deviant-server profile, written out once each, deterministically.

The gateway machine draws profiles at random; these walk each one through the
same plain story (identify, events, a dropped connection, missed events,
resume, more events) on every transport, and end with what matters most
(protocol 24): every dispatch of the session delivered exactly once, in order,
and the client READY with the server's last seq.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from discord_gateway import CloseDiscordConnection, DiscordConnection, State
from discord_gateway.events import Dispatch, Ready, Resumed
from discord_gateway.testing import PROFILES, GatewayServer, deviations_profile

from harness import INTENTS, MAIN_URL, TOKEN, new_store

TRANSPORTS = [("json", None), ("json", "zlib-stream"), ("json", "zstd-stream"), ("etf", None)]
# bad-token-closes-4000 only changes what a wrong token gets (tests/test_server.py).
STORIES = sorted(set(PROFILES) - {"bad-token-closes-4000"})


class World:
    """One client, the server's session store, the current server connection."""

    def __init__(self, profile: str, encoding: str, compress: str | None) -> None:
        self.store = new_store()
        self.store.deviations = deviations_profile(profile)
        self.client = DiscordConnection(
            MAIN_URL, encoding=encoding, compress=compress, rng=random.Random(0)
        )
        self.events: list[object] = []
        self.now = 0.0
        self.server = self.connect()

    def connect(self) -> GatewayServer:
        self.server = GatewayServer(self.store, now=self.now)
        self.server.receive_data(self.client.connect(now=self.now), self.now)
        return self.server

    def exchange(self) -> CloseDiscordConnection | None:
        """Bytes both ways until both sides are quiet; the WebSocket's end, if it ended."""
        for _ in range(100):
            data = b"".join(self.server.data_to_send())
            if not data:
                return None
            try:
                out = self.client.receive(data, now=self.now)
            except CloseDiscordConnection as closed:
                self.events.extend(self.client.events())
                if closed.data:
                    self.server.receive_data(closed.data, self.now)
                return closed
            for event in self.client.events():
                self.events.append(event)
                if self.client.state is State.HELLO:
                    start = (
                        self.client.resume(TOKEN, now=self.now)
                        if self.client.should_resume
                        else self.client.identify(token=TOKEN, intents=INTENTS, now=self.now)
                    )
                    out.append(start)
            for chunk in out:
                self.server.receive_data(chunk, self.now)
        raise AssertionError("the two sides never stop talking")

    def reconnect(self) -> None:
        self.now += self.client.reconnect() + 1.0
        self.connect()

    def seqs(self) -> list[int | None]:
        return [e.seq for e in self.events if isinstance(e, Dispatch) and e.name != "RESUMED"]


@pytest.mark.parametrize(("encoding", "compress"), TRANSPORTS)
@pytest.mark.parametrize("profile", STORIES)
def test_every_dispatch_once_in_order_against_every_profile(
    profile: str, encoding: str, compress: str | None
) -> None:
    deviations = deviations_profile(profile)
    world = World(profile, encoding, compress)
    client = world.client
    assert world.exchange() is None
    assert client.state is State.READY  # never wedged in identifying (protocol 22)
    ready = next(e for e in world.events if isinstance(e, Ready))
    first = 0 if deviations.seq_from_zero else 1
    assert ready.seq == first and client.sequence == first
    if deviations.seq_from_zero:  # the dispatch before READY is delivered too
        assert [(e.name, e.seq) for e in world.events if isinstance(e, Dispatch)][:2] == [
            ("SESSIONS_REPLACE", 0),
            ("READY", 0),
        ]
    assert (client.resume_gateway_url is None) == deviations.no_resume_gateway_url
    for n in range(3):
        world.store.dispatch("MESSAGE_CREATE", {"n": n})
    assert world.exchange() is None
    # The TCP connection drops; three more events happen while the client is away.
    world.server.receive_data(None, world.now)
    with contextlib.suppress(CloseDiscordConnection):
        client.receive(None, now=world.now)
    assert client.state is State.RECONNECTING and client.should_resume
    for n in range(3, 6):
        world.store.dispatch("MESSAGE_CREATE", {"n": n})
    world.reconnect()
    if deviations.refuse_resume:
        # op 9 false: the client drops the session, closes, and identifies anew.
        assert isinstance(world.exchange(), CloseDiscordConnection)
        assert client.state is State.RECONNECTING and not client.should_resume
        world.reconnect()
        assert world.exchange() is None
        assert [type(e) for e in world.events if isinstance(e, Ready)] == [Ready, Ready]
    else:
        assert world.exchange() is None
        resumed = [e for e in world.events if isinstance(e, Resumed)]
        assert len(resumed) == 1  # RESUMED ends the resume whatever its s (protocol 24)
    assert client.state is State.READY
    session = world.store.sessions[client.session_id]  # type: ignore[index]
    assert client.sequence == session.seq
    if not deviations.refuse_resume:
        # protocol 24: every MESSAGE_CREATE exactly once, in order (an inclusive
        # replay's overlap dropped), and the seqs the server gave them.
        messages = [
            e for e in world.events if isinstance(e, Dispatch) and e.name == "MESSAGE_CREATE"
        ]
        assert [e.data["n"] for e in messages] == list(range(6))
        seqs = world.seqs()  # in order; only READY shares its s (with the event before it)
        assert seqs == sorted(seqs)
        assert len(seqs) == len(set(seqs)) + (1 if deviations.seq_from_zero else 0)
