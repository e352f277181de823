"""The reconnect races the machines look for, written out once each, deterministically.

Client and local gateway in memory, time given explicitly. Each test ends with
the invariant that matters most (protocol 24): every dispatch of the session
delivered exactly once, in order.
"""

from __future__ import annotations

import contextlib
import random

from discord_gateway import CloseDiscordConnection, DiscordConnection, State
from discord_gateway.events import Dispatch, Resumed
from discord_gateway.testing import Close, GatewayServer, SendReconnect, SessionStore

from harness import INTENTS, MAIN_URL, TOKEN, new_store


class Pair:
    """One client, the gateway's session store, the current gateway connection."""

    def __init__(self) -> None:
        self.store: SessionStore = new_store()
        self.client = DiscordConnection(MAIN_URL, rng=random.Random(0))
        self.seqs: list[int] = []  # seqs of the dispatches delivered, READY included
        self.server = self._connect(0.0)
        self.server.receive_data(self.client.identify(token=TOKEN, intents=INTENTS), 0.0)
        self.pump(0.0)
        assert self.client.state is State.READY

    def _connect(self, now: float) -> GatewayServer:
        server = GatewayServer(self.store, now=now)
        server.receive_data(self.client.connect(now=now), now)
        self.server = server
        self.pump(now)
        return server

    def pump(self, now: float) -> None:
        """Deliver the gateway's bytes (one read) and the client's answers."""
        data = b"".join(self.server.data_to_send())
        if not data:
            return
        try:
            out = self.client.receive(data, now=now)
        except CloseDiscordConnection as closed:
            self.drain()
            if closed.data:
                self.server.receive_data(closed.data, now)
            return
        self.drain()
        for chunk in out:
            self.server.receive_data(chunk, now)

    def drain(self) -> None:
        for event in self.client.events():
            if isinstance(event, Dispatch) and event.seq is not None:
                self.seqs.append(event.seq)

    def resume(self, now: float) -> None:
        assert self.client.state is State.RECONNECTING and self.client.should_resume
        assert self.client.reconnect() == 0.0  # the session worked: no backoff
        self._connect(now)
        assert self.client.state is State.HELLO
        self.server.receive_data(self.client.resume(TOKEN), now)

    def assert_nothing_lost(self) -> None:
        session = self.store.sessions[self.client.session_id]  # type: ignore[index]
        assert self.seqs == list(range(1, session.seq + 1)), self.seqs
        assert self.client.sequence == session.seq


def test_a_heartbeat_falling_due_during_the_close_handshake_is_not_sent() -> None:
    """protocol 13, 30: after our close frame nothing else goes out, heartbeats included;
    the session stays resumable and the next connection resumes it."""
    pair = Pair()
    client = pair.client
    pair.server.dispatch("MESSAGE_CREATE", {"n": 1})
    pair.pump(1.0)
    heartbeat_due = client.next_deadline()
    assert heartbeat_due is not None and heartbeat_due > 2.0
    t = heartbeat_due - 1.0
    close_frame = client.close(4000, now=t)
    assert client.next_deadline() == t + 5.0  # now the close handshake's timeout
    assert client.handle_timer(heartbeat_due) == []  # the heartbeat's time: nothing sent
    pair.server.receive_data(close_frame, heartbeat_due)
    pair.pump(heartbeat_due)  # the gateway's answer completes the handshake
    assert client.state is State.RECONNECTING and client.should_resume
    pair.resume(heartbeat_due + 1.0)
    pair.pump(heartbeat_due + 1.0)
    assert client.state is State.READY
    pair.assert_nothing_lost()


def test_op7_arriving_mid_resume_loses_and_duplicates_nothing() -> None:
    """protocol 24, 25: op 7 lands between RESUME and RESUMED, in the same read as
    part of the replay. What was read is delivered once; the next resume starts
    after it; nothing is delivered twice."""
    pair = Pair()
    pair.server.dispatch("MESSAGE_CREATE", {"n": 1})  # s=2
    pair.pump(1.0)
    pair.server.receive_data(None, 1.0)  # the TCP connection drops
    with contextlib.suppress(CloseDiscordConnection):
        pair.client.receive(None, now=1.0)
    for n in range(2, 6):  # s=3..6 are sent while the client is away
        pair.store.dispatch("MESSAGE_CREATE", {"n": n}, session_id=pair.client.session_id)
    pair.resume(2.0)  # the gateway queues the replay (s=3..6) and RESUMED (s=7)
    pair.server.inject(SendReconnect(), 2.0)  # op 7, right behind them
    pair.pump(2.0)  # one read: replay, RESUMED, op 7 -> our 4000 close frame
    pair.pump(2.0)  # the gateway's answer to our close frame
    assert pair.client.state is State.RECONNECTING and pair.client.should_resume
    pair.resume(3.0)
    pair.pump(3.0)
    assert pair.client.state is State.READY
    pair.assert_nothing_lost()


def test_op7_read_with_the_replay_resumes_again_from_the_last_delivered_seq() -> None:
    """The same race with the replay, RESUMED and op 7 all in one read."""
    pair = Pair()
    pair.server.receive_data(None, 1.0)
    with contextlib.suppress(CloseDiscordConnection):
        pair.client.receive(None, now=1.0)
    pair.store.dispatch("MESSAGE_CREATE", {"n": 1}, session_id=pair.client.session_id)
    pair.resume(2.0)
    replay = b"".join(pair.server.data_to_send())  # replay + RESUMED, not read yet
    pair.server.inject(SendReconnect(), 2.0)
    op7 = b"".join(pair.server.data_to_send())
    out = pair.client.receive(replay + op7, now=2.0)  # one read; op 7 -> our close frame
    pair.drain()
    for chunk in out:
        pair.server.receive_data(chunk, 2.0)
    pair.pump(2.0)  # the gateway's answer to our close frame
    assert pair.client.state is State.RECONNECTING
    pair.resume(3.0)
    pair.pump(3.0)
    pair.assert_nothing_lost()


def test_a_close_frame_in_the_same_read_as_dispatches_keeps_them() -> None:
    """protocol 24, 52: dispatches read together with the gateway's close frame are
    delivered before CloseDiscordConnection, and the resume starts after them."""
    pair = Pair()
    for n in range(3):
        pair.server.dispatch("MESSAGE_CREATE", {"n": n})  # s=2..4
    pair.server.inject(Close(4000, "unknown error"), 1.0)
    read = b"".join(pair.server.data_to_send())
    try:
        pair.client.receive(read, now=1.0)
    except CloseDiscordConnection as closed:
        assert closed.code == 4000
        pair.server.receive_data(closed.data, 1.0)
    else:
        raise AssertionError("the close frame was not seen")
    delivered = [e for e in pair.client.events() if isinstance(e, Dispatch)]
    assert [e.seq for e in delivered] == [2, 3, 4]
    pair.seqs += [e.seq for e in delivered if e.seq is not None]
    assert pair.client.sequence == 4 and pair.client.should_resume
    pair.resume(2.0)
    pair.pump(2.0)
    assert pair.client.state is State.READY
    resumed = pair.seqs[-1]
    assert resumed == 5  # RESUMED, with nothing replayed before it
    pair.assert_nothing_lost()
    assert not any(isinstance(e, Resumed) for e in pair.client.events())  # drained once
