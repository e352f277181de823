"""The ``transitions.Machine`` built from ``states.TRANSITIONS``, and the diagram.

One Machine serves every connection: a Machine per connection costs ~31 KiB,
while a model costs next to nothing. We never ``add_model()`` (that would keep
every connection alive in ``Machine.models`` forever); instead each trigger
is fired through ``machine.events[name].trigger(model)``, which works on any
object carrying a ``state`` attribute. ``MachineError`` becomes
:class:`LocalProtocolError` here and nowhere else.
"""

from __future__ import annotations

import logging

from transitions import Machine, MachineError

from ..errors import LocalProtocolError
from .states import INITIAL_STATE, TRANSITIONS, State, Trigger

__all__ = ("Lifecycle", "mermaid_diagram")


def _quiet_transitions() -> None:
    """Keep ``transitions`` below INFO unless the user asked for it.

    It logs every trigger at INFO ("Finished processing state HELLO enter
    callbacks"), a dozen lines per connection, all of them ours to tell. Its
    ``transitions`` logger goes to WARNING, but only if nobody set a level on
    it: ``logging.getLogger("transitions").setLevel(logging.INFO)`` (before or
    after importing us) brings the lines back. The root logger is not touched.
    """
    log = logging.getLogger("transitions")
    if log.level == logging.NOTSET:
        log.setLevel(logging.WARNING)


def _build_machine() -> Machine:
    return Machine(
        model=None,
        states=list(State),
        initial=INITIAL_STATE,
        transitions=[
            {
                "trigger": t.trigger.value,
                "source": list(t.sources),
                "dest": t.dest,
            }
            for t in TRANSITIONS
        ],
        auto_transitions=False,
        send_event=False,
        queued=False,
    )


_quiet_transitions()
_MACHINE = _build_machine()
_EVENTS = {trigger: _MACHINE.events[trigger.value] for trigger in Trigger}


class Lifecycle:
    """The private model object ``transitions`` moves between states."""

    __slots__ = ("state",)

    def __init__(self, state: State = INITIAL_STATE) -> None:
        self.state = state

    def fire(self, trigger: Trigger) -> State:
        """Fire ``trigger``; return the previous state.

        Raises :class:`LocalProtocolError` (state unchanged) when the table has
        no transition for ``(self.state, trigger)``.
        """
        before = self.state
        try:
            _EVENTS[trigger].trigger(self)
        except MachineError as exc:
            raise LocalProtocolError(
                f"can't fire {trigger.value!r} in state {before.value!r}"
            ) from exc
        return before


def mermaid_diagram() -> str:
    """The lifecycle as a mermaid ``stateDiagram-v2``, generated from the table."""
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL_STATE.value}"]
    for transition in TRANSITIONS:
        for source in transition.sources:
            lines.append(
                f"    {source.value} --> {transition.dest.value}: {transition.trigger.value}"
            )
    lines.append(f"    {State.CLOSED.value} --> [*]")
    return "\n".join(lines) + "\n"
