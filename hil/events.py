"""Physics events: scheduled changes to the plant itself (a load that drops, a failed cooling fan).

Events act on the *physics*, so their times are plant seconds since the scenario start and
they are part of :class:`~hil.physics.PlantParams`: a run stays a pure function of the scenario
and the commands, at any speed.  (Faults in :mod:`hil.faults` are different: they act on the
*network* and are timed in wall seconds.)

An event is active on ``at_s <= t_s < at_s + duration_s`` (with a tolerance of
:data:`TIME_EPS_S`, because plant time is a sum of fixed steps: 100 steps of 0.1 s end at
9.9999999999998 s); a load step without a duration stays for the rest of the run.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

#: Tolerance on event times for the rounding of plant time (far below any step size).
TIME_EPS_S = 1e-6


class EventKind(enum.StrEnum):
    """What a physics event does."""

    LOAD_STEP = "load_step"  # the site load changes by delta_kw
    BESS_HEAT = "bess_heat"  # the battery's steady temperature rises by rise_c (e.g. a failed fan)


@dataclass(frozen=True)
class LoadStep:
    """The site load changes by ``delta_kw`` (signed: -30 = drops by 30 kW) from ``at_s``."""

    kind: ClassVar[EventKind] = EventKind.LOAD_STEP
    at_s: float
    delta_kw: float
    duration_s: float | None = None  # None: for the rest of the run

    def active(self, t_s: float) -> bool:
        t = t_s + TIME_EPS_S
        return self.at_s <= t and (self.duration_s is None or t < self.at_s + self.duration_s)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "at_s": self.at_s, "duration_s": self.duration_s, "delta_kw": self.delta_kw}


@dataclass(frozen=True)
class BessHeat:
    """The battery's steady-state temperature is ``rise_c`` higher while the event lasts."""

    kind: ClassVar[EventKind] = EventKind.BESS_HEAT
    at_s: float
    duration_s: float
    rise_c: float

    def active(self, t_s: float) -> bool:
        t = t_s + TIME_EPS_S
        return self.at_s <= t < self.at_s + self.duration_s

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "at_s": self.at_s, "duration_s": self.duration_s, "rise_c": self.rise_c}


PhysicsEvent = LoadStep | BessHeat


def load_delta_w(events: Iterable[PhysicsEvent], t_s: float) -> float:
    """Sum of the load steps active at plant time ``t_s``, in W."""
    return sum(1000.0 * e.delta_kw for e in events if isinstance(e, LoadStep) and e.active(t_s))


def heat_rise_c(events: Iterable[PhysicsEvent], t_s: float) -> float:
    """Extra steady-state battery temperature from the heat events active at ``t_s``, in °C."""
    return sum(e.rise_c for e in events if isinstance(e, BessHeat) and e.active(t_s))
