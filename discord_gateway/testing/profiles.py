"""Deviant-server profiles: the ways real Discord-compatible servers differ from Discord.

The local gateway behaves like Discord by default. Independently written
gateway servers (self-hosted Discord replacements, test doubles of other bot
libraries) do not, and a client that only ever met our well-behaved server
wedged or looped against them. Each flag of :class:`Deviations` is one such
behaviour, seen on a real server; :data:`PROFILES` names them (one preset per
flag, ``"discord"`` for none, ``"all"`` for every one at once).

Pass a profile to ``SessionStore(deviations=...)``, ``GatewayServer(deviations=...)``
or ``serve(deviations=...)`` (a :class:`Deviations` or a preset's name), or
``python -m discord_gateway serve --profile NAME`` (repeatable: the flags add up).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ("PROFILES", "Deviations", "deviations_profile")

#: The dispatch a ``seq_from_zero`` server sends before READY.
PRE_READY_EVENT = "SESSIONS_REPLACE"


@dataclass(frozen=True, slots=True)
class Deviations:
    """How the local gateway departs from Discord (all off: it behaves like Discord).

    ``seq_from_zero``: number dispatches from 0, and send one dispatch
    (``SESSIONS_REPLACE``) *before* READY; both it and READY carry ``s: 0``,
    the next dispatch is 1 (Discord: READY is the first dispatch, ``s: 1``).

    ``resumed_reuses_seq``: RESUMED carries the session's last seq (on a quick
    resume, the client's own last ``s``) instead of a new one.

    ``refuse_resume``: every RESUME is answered with op 9 ``d: false`` (the
    session is dropped) and the connection stays open, waiting for IDENTIFY.

    ``zstd_frame_per_message``: with ``compress=zstd-stream``, every message is a
    complete zstd frame of its own (Discord: one frame for the whole connection,
    flushed after each message).

    ``bad_token_closes_4000``: a bad token in IDENTIFY or RESUME is closed with
    4000 (unknown error) instead of 4004 (authentication failed).

    ``require_user_agent``: an upgrade request without a ``User-Agent`` header is
    accepted, then closed with 4002 at once, before HELLO.

    ``bare_control_payloads``: payloads other than dispatches carry only ``op``
    and ``d`` (Discord sends ``"s": null, "t": null``).

    ``no_resume_gateway_url``: READY has no ``resume_gateway_url``.

    ``inclusive_replay``: RESUME replays from the client's seq *inclusive*: the
    last event the client already had is sent again first (unless it was READY
    or RESUMED), then the ones it missed.
    """

    seq_from_zero: bool = False
    resumed_reuses_seq: bool = False
    refuse_resume: bool = False
    zstd_frame_per_message: bool = False
    bad_token_closes_4000: bool = False
    require_user_agent: bool = False
    bare_control_payloads: bool = False
    no_resume_gateway_url: bool = False
    inclusive_replay: bool = False

    def __or__(self, other: Deviations) -> Deviations:
        """Both sets of deviations at once."""
        return Deviations(
            **{
                f.name: getattr(self, f.name) or getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The flags that are on."""
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name))


def _presets() -> dict[str, Deviations]:
    presets = {"discord": Deviations()}
    for f in dataclasses.fields(Deviations):
        presets[f.name.replace("_", "-")] = Deviations(**{f.name: True})
    presets["all"] = Deviations(**{f.name: True for f in dataclasses.fields(Deviations)})
    return presets


#: Named presets: ``"discord"`` (no deviation), one per flag (the flag's name with
#: dashes: ``"seq-from-zero"``, ``"inclusive-replay"``, ...) and ``"all"``.
PROFILES: Mapping[str, Deviations] = MappingProxyType(_presets())


def deviations_profile(names: str | Iterable[str]) -> Deviations:
    """The union of the named presets (``"seq-from-zero"`` or several names)."""
    if isinstance(names, str):
        names = [names]
    combined = Deviations()
    for name in names:
        if name not in PROFILES:
            raise ValueError(
                f"unknown server profile {name!r}; choose from {', '.join(sorted(PROFILES))}"
            )
        combined |= PROFILES[name]
    return combined
