"""The adapters' shared recovery driver, without sockets: a wsproto peer and virtual time.

Each test walks the loop every adapter runs (``next_attempt``, ``connect``,
``receive``/``timer``, ``connection_lost``) against ``tests/peer.py``'s server
end, so the decisions (backoff, RESUME or IDENTIFY, ``Disconnected`` events,
giving up) are checked once, for all three adapters.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

from discord_gateway import (
    AuthenticationFailed,
    ConnectionFailed,
    Disconnected,
    GatewayClosed,
    Ready,
    Resumed,
)
from discord_gateway.adapters._base import MAX_FAILED_ATTEMPTS, ShardOptions
from discord_gateway.adapters._driver import Driver, EventBound, Step
from discord_gateway.connection import BACKOFF_CAP

from peer import Peer

HELLO = {"op": 10, "d": {"heartbeat_interval": 41250}}


def ready(seq: int = 1) -> dict[str, Any]:
    data = {"session_id": "abc", "resume_gateway_url": "wss://gateway.discord.gg", "v": 10}
    return {"op": 0, "s": seq, "t": "READY", "d": data}


def new_driver(**options: Any) -> Driver:
    options.setdefault("compress", None)
    options.setdefault("rng", random.Random(0))
    return Driver(ShardOptions.build("t0ken", 513, "wss://gateway.discord.gg", options))


class Wire:
    """One connection between a driver and a wsproto peer, in virtual time."""

    def __init__(self, driver: Driver, now: float = 0.0) -> None:
        attempt = driver.next_attempt()
        assert attempt is not None
        self.driver = driver
        self.now = now + attempt.delay
        self.peer = Peer()
        self.steps: list[Step] = []
        step = driver.connect(self.now)
        self.to_peer(step)
        self.alive = step.alive

    def to_peer(self, step: Step) -> None:
        self.steps.append(step)
        for chunk in step.out:
            if self.peer.request is None:
                self.deliver(self.peer.accept(chunk))
            else:
                reply = self.peer.feed(chunk)
                if reply and step.alive:
                    self.deliver(reply)

    def deliver(self, data: bytes) -> Step:
        step = self.driver.receive(data, self.now)
        self.alive = step.alive
        self.to_peer(step)
        return step

    def send(self, *payloads: dict[str, Any] | str) -> Step:
        return self.deliver(b"".join(self.peer.send(p) for p in payloads))

    def close(self, code: int, reason: str = "") -> Step:
        return self.deliver(self.peer.close(code, reason))

    def timer(self, at: float) -> Step:
        self.now = at
        step = self.driver.timer(at)
        self.alive = step.alive
        self.to_peer(step)
        return step

    def events(self) -> list[Any]:
        return [event for step in self.steps for event in step.events]

    def client_ops(self) -> list[Any]:
        return self.peer.ops()


def session(driver: Driver) -> Wire:
    wire = Wire(driver)
    wire.send(HELLO)
    wire.send(ready())
    assert wire.steps[-1].ready
    return wire


def test_a_lost_connection_is_a_disconnected_event_logged_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = new_driver()
    wire = session(driver)
    wire.close(4000, "unknown error")
    assert not wire.alive
    with caplog.at_level(logging.WARNING, "discord_gateway"):
        (lost,) = driver.connection_lost()
    assert isinstance(lost, Disconnected)
    assert (lost.code, lost.reason, lost.resumable, lost.delay, lost.attempt) == (
        4000,
        "unknown error",
        True,
        0.0,
        1,
    )
    assert lost.payload == {
        "op": None,
        "d": {
            "code": 4000,
            "reason": "unknown error",
            "resumable": True,
            "delay": 0.0,
            "attempt": 1,
        },
    }
    assert lost["d"]["resumable"] is True  # 0.4.0-style access works too
    (record,) = [r for r in caplog.records if "lost the connection" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "4000" in record.getMessage() and "resuming" in record.getMessage()


def test_after_a_resumable_loss_the_next_connection_resumes_else_identifies() -> None:
    driver = new_driver()
    wire = session(driver)
    wire.close(4000)
    driver.connection_lost()
    second = Wire(driver)
    second.send(HELLO)
    assert second.client_ops() == [6]  # RESUME
    second.send({"op": 0, "s": 2, "t": "RESUMED", "d": {}})
    assert any(isinstance(e, Resumed) for e in second.events())
    second.close(4009, "session timed out")  # the session is gone
    (lost,) = driver.connection_lost()
    assert not lost.resumable
    third = Wire(driver)
    third.send(HELLO)
    assert third.client_ops() == [2]  # IDENTIFY


def test_the_same_close_right_after_every_upgrade_gives_up_with_the_causes() -> None:
    # A server that wants a User-Agent closes 4002 before HELLO, every time.
    driver = new_driver()
    seen: list[Disconnected] = []
    for _ in range(MAX_FAILED_ATTEMPTS):
        wire = Wire(driver)
        wire.close(4002, "missing User-Agent")
        events = driver.connection_lost()
        seen += [e for e in events if isinstance(e, Disconnected)]
    assert [e.attempt for e in seen] == [1, 2, 3, 4]
    assert all(e.delay > 0 for e in seen)  # backoff: no session ever started
    assert driver.finished and driver.next_attempt() is None
    error = driver.error
    assert isinstance(error, ConnectionFailed) and isinstance(error, GatewayClosed)
    assert error.code == 4002
    assert len(error.causes) == MAX_FAILED_ATTEMPTS
    assert all("4002" in cause and "missing User-Agent" in cause for cause in error.causes)
    assert "gave up after 5 failed attempts" in str(error)
    assert "spec" not in str(error)


def test_a_bad_token_answered_with_4000_gives_up_after_identify() -> None:
    driver = new_driver(max_failed_attempts=2)
    for _ in range(2):
        wire = Wire(driver)
        wire.send(HELLO)
        assert wire.client_ops() == [2]
        wire.close(4000, "bad token")
        driver.connection_lost()
    assert isinstance(driver.error, ConnectionFailed)
    assert driver.error.causes == ("the gateway closed with 4000 (bad token)",) * 2


def test_network_failures_are_retried_for_ever_with_capped_backoff() -> None:
    driver = new_driver()
    delays = []
    for _ in range(40):
        attempt = driver.next_attempt()
        assert attempt is not None
        (lost,) = driver.connect_failed(ConnectionRefusedError(111, "refused"), "h", 443)
        assert isinstance(lost, Disconnected) and lost.code is None
        assert "could not connect to h:443" in (lost.reason or "")
        delays.append(lost.delay)
    assert not driver.finished
    assert lost.attempt == 40
    assert max(delays) <= BACKOFF_CAP and max(delays) > 10


def test_network_failures_neither_count_nor_reset_protocol_failures() -> None:
    driver = new_driver(max_failed_attempts=3)
    for kind in ["protocol", "net", "net", "protocol", "net", "protocol"]:
        assert not driver.finished
        if kind == "net":
            assert driver.next_attempt() is not None
            driver.connect_failed(TimeoutError(), "h", 443)
        else:
            Wire(driver).close(4002)
            driver.connection_lost()
    assert isinstance(driver.error, ConnectionFailed)


def test_a_lost_transport_before_ready_is_an_outage_not_a_failure() -> None:
    driver = new_driver(max_failed_attempts=1)
    wire = Wire(driver)
    wire.send(HELLO)
    step = driver.lost(wire.now)  # EOF: no close frame
    assert not step.alive
    (lost,) = driver.connection_lost()
    assert lost.code == 1006 and not driver.finished


def test_ready_and_resumed_reset_the_count() -> None:
    driver = new_driver(max_failed_attempts=2)
    Wire(driver).close(4002)
    driver.connection_lost()
    wire = session(driver)  # READY: the count starts again
    wire.close(4000)
    driver.connection_lost()
    for _ in range(5):
        failed = Wire(driver)  # a RESUME that the gateway refuses
        failed.send(HELLO)
        failed.close(4002)
        (lost,) = driver.connection_lost()
        assert lost.resumable and lost.attempt == 2  # the loss after READY was 1
        resumed = Wire(driver)
        resumed.send(HELLO)
        assert resumed.client_ops() == [6]
        resumed.send({"op": 0, "s": 2, "t": "RESUMED", "d": {}})  # resets the count
        resumed.close(4000)
        (lost,) = driver.connection_lost()
        assert lost.attempt == 1
    assert not driver.finished


def test_max_failed_attempts_none_never_gives_up() -> None:
    driver = new_driver(max_failed_attempts=None)
    for _ in range(20):
        Wire(driver).close(4002)
        assert driver.connection_lost()
    assert not driver.finished


def test_no_hello_in_time_counts() -> None:
    driver = new_driver(max_failed_attempts=1, hello_timeout=5.0)
    wire = Wire(driver)
    assert wire.timer(wire.now + 1.0).alive  # not due yet: nothing noted
    assert not wire.timer(wire.now + 5.0).alive
    assert driver.connection_lost() == []
    assert isinstance(driver.error, ConnectionFailed)
    assert driver.error.causes == ("no HELLO in time after the upgrade",)


def test_no_ready_in_time_counts() -> None:
    driver = new_driver(max_failed_attempts=1, ready_timeout=3.0)
    wire = Wire(driver)
    wire.send(HELLO)
    wire.timer(wire.now + 3.0)  # closes resumably; the peer echoes the close
    assert not wire.alive
    assert driver.connection_lost() == []
    assert isinstance(driver.error, ConnectionFailed)
    assert driver.error.causes == ("no READY in time (or heartbeat ACKs missed)",)


def test_a_decoder_failure_on_every_attempt_counts() -> None:
    driver = new_driver(max_failed_attempts=2)
    for _ in range(2):
        wire = Wire(driver)
        step = wire.send("{not json")
        assert step.alive  # closing: our close frame went out, the peer echoes it
        assert not wire.alive
        driver.connection_lost()
    assert isinstance(driver.error, ConnectionFailed)
    assert all(c.startswith("bad data from the gateway") for c in driver.error.causes)


@pytest.mark.parametrize(("status", "counts"), [(401, True), (404, True), (503, False)])
def test_a_refused_upgrade_counts_unless_the_service_is_down(status: int, counts: bool) -> None:
    driver = new_driver(max_failed_attempts=1)
    assert driver.next_attempt() is not None
    driver.connect(0.0)
    response = f"HTTP/1.1 {status} No\r\ncontent-length: 0\r\n\r\n".encode()
    assert not driver.receive(response, 0.0).alive
    lost = driver.connection_lost()
    assert driver.finished is counts
    assert (lost == []) is counts


def test_a_fatal_close_stops_with_its_named_error_and_the_servers_reason() -> None:
    driver = new_driver()
    wire = Wire(driver)
    wire.send(HELLO)
    wire.close(4004, "Authentication failed.")
    assert driver.connection_lost() == []
    assert driver.finished and isinstance(driver.error, AuthenticationFailed)
    assert driver.error.reason == "Authentication failed."


def test_closing_ends_without_a_disconnected_event() -> None:
    driver = new_driver()
    wire = session(driver)
    driver.closing = True
    wire.to_peer(driver.step(lambda now: [driver.conn.close(1000, now=now)], wire.now))
    assert not wire.alive
    assert driver.connection_lost() == []
    assert driver.finished and driver.error is None and driver.next_attempt() is None


def test_an_unexpected_exception_from_a_core_call_drops_the_socket_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = new_driver(max_failed_attempts=1)
    Wire(driver)

    def broken(now: float) -> list[bytes]:
        raise ValueError("a bug")

    step = driver.step(broken, 0.0)
    assert not step.alive
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert driver.connection_lost() == []
    assert isinstance(driver.error, ConnectionFailed)


def test_a_failure_while_reading_was_paused_is_never_counted() -> None:
    # A consumer that stalls makes the connection a zombie: not the gateway's fault.
    driver = new_driver(max_failed_attempts=1, max_pending_events=2)
    wire = Wire(driver)
    wire.send(HELLO)
    assert driver.bound.after_put(2)
    wire.close(4002)
    (lost,) = driver.connection_lost()
    assert isinstance(lost, Disconnected) and not driver.finished


def test_the_event_bound_pauses_once_per_episode_and_resumes_at_half(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound = EventBound(10)
    with caplog.at_level(logging.INFO, "discord_gateway"):
        assert [bound.after_put(n) for n in (5, 9, 10, 11, 12)] == [False] * 2 + [True] + [
            False
        ] * 2
        assert [bound.after_get(n) for n in (11, 8, 6, 5, 4)] == [False] * 3 + [True, False]
        assert bound.after_put(10) and bound.pauses == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "max_pending_events" in warnings[0].getMessage()


def test_ready_flag_follows_the_session() -> None:
    driver = new_driver()
    wire = Wire(driver)
    wire.send(HELLO)
    assert not wire.steps[-1].ready
    wire.send(ready())
    assert wire.steps[-1].ready and driver.ready
    assert [type(e) for e in wire.events()].count(Ready) == 1
    wire.close(4000)
    assert not driver.ready


def test_identify_waits_for_the_gate_when_asked() -> None:
    driver = Driver(
        ShardOptions.build("t0ken", 1, "wss://gateway.discord.gg", {"compress": None}),
        gate_identify=True,
    )
    wire = Wire(driver)
    step = wire.send(HELLO)
    assert step.identify_due and wire.client_ops() == []
    wire.to_peer(driver.greet(wire.now))
    assert wire.client_ops() == [2]
    identify = wire.peer.received[0]
    assert json.dumps(identify["d"]["token"]) == '"t0ken"'


def test_hello_and_op7_in_one_read_greet_on_the_next_connection_not_this_one() -> None:
    # A fast gateway (or a slow reader) puts HELLO and op 7 in one read: the
    # core is closing before the driver sees HELLO. Greeting then would be
    # refused by the core (and killed the shard); the next connection greets.
    driver = new_driver()
    wire = Wire(driver)
    wire.send(HELLO, {"op": 7, "d": None})
    # Only our close frame went out, and the peer's answer ended the socket.
    assert wire.client_ops() == [("close", 4000)]
    assert not wire.alive
    (lost,) = driver.connection_lost()
    assert isinstance(lost, Disconnected)
    second = Wire(driver)
    second.send(HELLO)
    assert second.client_ops() == [2]  # IDENTIFY
