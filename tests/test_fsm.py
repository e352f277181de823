"""The lifecycle table: exhaustive (state, trigger) checks and the generated diagram."""

from __future__ import annotations

import gc
import pathlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import MachineError

from discord_gateway import DiscordConnection, LocalProtocolError, State
from discord_gateway.fsm import TRANSITIONS, Lifecycle, Trigger, mermaid_diagram
from discord_gateway.fsm.machine import _MACHINE, _build_machine
from discord_gateway.fsm.states import transition_table

from peer import Link

ROOT = pathlib.Path(__file__).parent.parent
TABLE = transition_table()


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_every_state_trigger_pair_follows_the_table_or_raises(
    state: State, trigger: Trigger
) -> None:
    model = Lifecycle(state)
    if (state, trigger) in TABLE:
        assert model.fire(trigger) is state
        assert model.state is TABLE[(state, trigger)]
    else:
        with pytest.raises(LocalProtocolError, match=state.value):
            model.fire(trigger)
        assert model.state is state


@given(st.lists(st.sampled_from(list(Trigger)), max_size=50))
def test_no_trigger_sequence_leaves_the_table(triggers: list[Trigger]) -> None:
    # The invariant (h2's best test): whatever is fired, the model is always in
    # one of the table's states, and only moves along the table's edges.
    model = Lifecycle()
    for trigger in triggers:
        before = model.state
        try:
            model.fire(trigger)
        except LocalProtocolError:
            assert model.state is before
        else:
            assert model.state is TABLE[(before, trigger)]
        assert model.state in State


def test_only_reconnect_leaves_closed_and_every_state_is_reachable() -> None:
    # Issue 12: closed is also where the user's close(1000) ends, and reconnect()
    # may start afresh from there; after a fatal code the connection refuses it.
    assert [t.trigger for t in TRANSITIONS if State.CLOSED in t.sources] == [Trigger.RECONNECT]
    reachable = {State.CONNECTING}
    for _ in State:
        reachable |= {dest for (src, _t), dest in TABLE.items() if src in reachable}
    assert reachable == set(State)


def test_the_machine_built_from_the_table_follows_it() -> None:
    # _MACHINE is built once, at import; build one more to check the build itself.
    machine = _build_machine()
    assert machine.models == []  # no model registered: nothing kept alive
    assert set(machine.states) == {state.name for state in State}
    # Only the table's triggers: no `to_<state>` auto transitions around the table.
    assert set(machine.events) == {trigger.value for trigger in Trigger}
    for state in State:
        for trigger in Trigger:
            model = Lifecycle(state)
            if (state, trigger) in TABLE:
                assert machine.events[trigger.value].trigger(model)
                assert model.state is TABLE[(state, trigger)]
            else:
                with pytest.raises(MachineError):
                    machine.events[trigger.value].trigger(model)
                assert model.state is state


def test_one_machine_serves_every_connection() -> None:
    # A Machine per connection costs ~31 KiB; models are never registered, so
    # closed connections are not kept alive by the shared Machine.
    conns = [DiscordConnection("wss://g") for _ in range(100)]
    for conn in conns:
        conn.connect()
    assert _MACHINE.models == []
    del conns
    gc.collect()


def test_committed_diagram_is_not_stale() -> None:
    committed = (ROOT / "docs" / "lifecycle.mmd").read_text()
    assert committed == mermaid_diagram(), (
        "run: python -m discord_gateway diagram > docs/lifecycle.mmd"
    )


def test_readme_embeds_the_diagram() -> None:
    readme = (ROOT / "README.md").read_text()
    assert mermaid_diagram().strip() in readme


def test_diagram_has_every_edge() -> None:
    diagram = mermaid_diagram()
    for (source, trigger), dest in TABLE.items():
        assert f"{source.value} --> {dest.value}: {trigger.value}" in diagram


# -- The same rule through the public API --------------------------------------


def in_state(state: State) -> DiscordConnection:
    """A connection driven (through a real peer) into ``state``."""
    link = Link()
    conn = link.conn
    if state is State.CONNECTING:
        return conn
    if state is State.CLOSED:
        link.deliver(link.peer.close(4004))
        return conn
    if state is State.RECONNECTING:
        link.deliver(link.peer.close(4000))
        return conn
    link.hello()
    if state is State.CLOSING:
        conn.close(4000, now=0.0)
        return conn
    if state is State.HELLO:
        return conn
    if state is State.RESUMING:
        link.identify()
        link.ready()
        link.deliver(link.peer.close(4000))
        conn.reconnect()
        link = Link(conn)
        link.hello()
        link.client(conn.resume("t"))
        return conn
    link.identify()
    if state is State.READY:
        link.ready()
    return conn


CALLS: dict[str, Callable[[DiscordConnection], object]] = {
    "connect": lambda c: c.connect(),
    "identify": lambda c: c.identify(token="t", intents=1),
    "resume": lambda c: c.resume("t"),
    "heartbeat": lambda c: c.heartbeat(now=0.0),
    "send_command": lambda c: c.send_command(3, {"status": "online"}),
    "close": lambda c: c.close(4000, now=0.0),
    "reconnect": lambda c: c.reconnect(),
}

# Which API calls each state allows, and where they lead (None: state unchanged).
ALLOWED: dict[State, dict[str, State | None]] = {
    State.CONNECTING: {"close": State.CLOSING, "reconnect": State.CONNECTING},
    State.HELLO: {
        "identify": State.IDENTIFYING,
        "heartbeat": None,
        "close": State.CLOSING,
        "reconnect": State.CONNECTING,
    },
    State.IDENTIFYING: {
        "heartbeat": None,
        "send_command": None,
        "close": State.CLOSING,
        "reconnect": State.CONNECTING,
    },
    State.RESUMING: {
        "heartbeat": None,
        "send_command": None,
        "close": State.CLOSING,
        "reconnect": State.CONNECTING,
    },
    State.READY: {
        "heartbeat": None,
        "send_command": None,
        "close": State.CLOSING,
        "reconnect": State.CONNECTING,
    },
    State.CLOSING: {"reconnect": State.CONNECTING},
    State.RECONNECTING: {"reconnect": State.CONNECTING},
    State.CLOSED: {},
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("call", list(CALLS))
def test_every_api_call_in_every_state(state: State, call: str) -> None:
    conn = in_state(state)
    assert conn.state is state
    allowed = ALLOWED[state]
    if call in allowed:
        CALLS[call](conn)
        assert conn.state is (allowed[call] or state)
    else:
        with pytest.raises(LocalProtocolError):
            CALLS[call](conn)
        assert conn.state is state


def test_connect_is_allowed_once_in_connecting() -> None:
    conn = DiscordConnection("wss://g")
    assert conn.connect()
    assert conn.state is State.CONNECTING
