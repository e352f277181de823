"""The gateway lifecycle: states and transitions as data (``states``), run by ``machine``."""

from .machine import Lifecycle, mermaid_diagram
from .states import TRANSITIONS, State, Trigger

__all__ = ("TRANSITIONS", "Lifecycle", "State", "Trigger", "mermaid_diagram")
