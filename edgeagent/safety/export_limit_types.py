"""Values of the export-limit controller: its configuration, states and events.

Kept apart from the control law (`export_limit.py`) so config parsing, the demo and the control
socket can name these without the controller, and each file stays one job.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from edgeagent.safety.schedule import ExportSchedule


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class BessTarget:
    """The battery the controller charges to absorb export. Powers in W, ramp in W/s."""

    device: str
    point: str = "WSet"
    soc_point: str = "bess.SoC"
    soc_max_pct: float = 95.0
    max_charge_w: float = 0.0
    ramp_w_per_s: float = math.inf
    response_s: float = 0.0  # dead time + time constant with which the battery follows its setpoint

    def __post_init__(self) -> None:
        if not (math.isfinite(self.response_s) and self.response_s >= 0):
            raise ValueError(f"bess.response_s must be a finite number >= 0, got {self.response_s!r}")
        for name in ("soc_max_pct", "max_charge_w", "ramp_w_per_s"):
            value = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ValueError(f"bess.{name} must be >= 0, got {value!r}")
        if not math.isfinite(self.max_charge_w) or self.soc_max_pct > 100:
            raise ValueError("bess.max_charge_w must be finite and soc_max_pct <= 100")
        if self.ramp_w_per_s == 0:
            raise ValueError("bess.ramp_w_per_s must be > 0")


@dataclass(frozen=True, slots=True)
class PvTarget:
    """The PV inverter curtailed by WMaxLimPct. Give `rated_w` or a `rated_point` (e.g. WRtg).

    `power_point` (the inverter's output, W) lets the controller turn "absorb X W" into a cap
    directly; without it the loop still converges, only more slowly (it assumes rated output).
    """

    device: str
    point: str = "WMaxLimPct"
    rated_w: float | None = None
    rated_point: str | None = None
    power_point: str | None = None
    min_pct: float = 0.0
    ramp_pct_per_s: float = math.inf
    tau_s: float = 1.0  # how fast the inverter follows WMaxLimPct (first order), for the hand-over estimate

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tau_s) and self.tau_s >= 0):
            raise ValueError(f"pv.tau_s must be a finite number >= 0, got {self.tau_s!r}")
        if (self.rated_w is None) == (self.rated_point is None):
            raise ValueError("pv: give exactly one of rated_w and rated_point")
        if self.rated_w is not None and not (math.isfinite(self.rated_w) and self.rated_w > 0):
            raise ValueError(f"pv.rated_w must be > 0, got {self.rated_w!r}")
        if not (0.0 <= self.min_pct <= 100.0):
            raise ValueError(f"pv.min_pct must be within 0..100, got {self.min_pct!r}")
        if math.isnan(self.ramp_pct_per_s) or self.ramp_pct_per_s <= 0:
            raise ValueError("pv.ramp_pct_per_s must be > 0")


@dataclass(frozen=True, slots=True)
class ExportLimitConfig:
    """Validated configuration. Limits in kW of export (>= 0 means export allowed up to it).

    Exactly one of `static_kw` and `schedule` gives the configured limit; every limit it can
    produce, and the fallback, must lie within [contract_min_kw, contract_max_kw], because the
    contract is the envelope that neither config nor a run-time override may leave.
    """

    contract_min_kw: float
    contract_max_kw: float
    static_kw: float | None = None
    schedule: ExportSchedule | None = None
    meter_point: str = "pcc.W"
    margin_kw: float = 0.0
    fallback_kw: float | None = None
    freeze_window_s: float = 5.0
    freeze_tolerance_w: float = 0.0
    freeze_requires_motion: bool = False
    freeze_motion_w: float = 100.0
    bess: BessTarget | None = None
    pv: PvTarget | None = None
    gain: float = 2.0
    kp: float = 0.6
    pv_gain: float = 0.8
    pv_kp: float = 0.6

    def __post_init__(self) -> None:
        for name in ("contract_min_kw", "contract_max_kw", "margin_kw", "freeze_window_s",
                     "freeze_tolerance_w", "freeze_motion_w", "gain", "kp", "pv_gain", "pv_kp"):
            _finite(name, getattr(self, name))
        if self.contract_min_kw > self.contract_max_kw:
            raise ValueError("contract_min_kw must be <= contract_max_kw")
        if (self.static_kw is None) == (self.schedule is None):
            raise ValueError("give exactly one of static_kw and schedule")
        if self.static_kw is not None:
            limits: tuple[float, ...] = (self.static_kw,)
        else:
            assert self.schedule is not None
            limits = self.schedule.limits_kw()
        for kw in limits:
            _finite("limit", kw)
            if not self.contract_min_kw <= kw <= self.contract_max_kw:
                raise ValueError(f"limit {kw} kW outside contract bounds "
                                 f"[{self.contract_min_kw}, {self.contract_max_kw}] kW")
        if self.fallback_kw is not None:
            _finite("fallback_kw", self.fallback_kw)
            if not self.contract_min_kw <= self.fallback_kw <= self.contract_max_kw:
                raise ValueError(f"fallback_kw {self.fallback_kw} outside contract bounds")
        if self.margin_kw < 0:
            raise ValueError("margin_kw must be >= 0")
        if self.freeze_window_s <= 0 or self.freeze_tolerance_w < 0 or self.freeze_motion_w < 0:
            raise ValueError("freeze_window_s must be > 0, freeze tolerances >= 0")
        if self.gain <= 0 or self.kp < 0 or self.pv_gain <= 0 or self.pv_kp < 0:
            raise ValueError("gains must be > 0 and proportional gains >= 0")
        if self.bess is None and self.pv is None:
            raise ValueError("the export limiter needs a BESS, a PV inverter, or both")

    @property
    def effective_fallback_kw(self) -> float:
        return self.contract_min_kw if self.fallback_kw is None else self.fallback_kw


class State(enum.Enum):
    NORMAL = "normal"
    FALLBACK = "fallback"


class FallbackReason(enum.Enum):
    NONE = "none"
    METER_MISSING = "meter_missing"
    METER_STALE = "meter_stale"
    METER_BAD = "meter_bad"
    METER_FROZEN = "meter_frozen"


class LimitSource(enum.Enum):
    STATIC = "static"
    SCHEDULE = "schedule"
    OVERRIDE = "override"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class LimitChanged:
    t_mono: float
    old_kw: float | None
    new_kw: float
    source: LimitSource


@dataclass(frozen=True, slots=True)
class FallbackEntered:
    """`last_good_age_s`: how long before this cycle the meter's last usable sample arrived
    (None if there never was one); the fallback deadline is counted from that sample."""

    t_mono: float
    reason: FallbackReason
    limit_kw: float
    detail: str
    last_good_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class FallbackLeft:
    t_mono: float
    duration_s: float
    limit_kw: float


Event = LimitChanged | FallbackEntered | FallbackLeft


@dataclass(frozen=True, slots=True)
class Override:
    limit_kw: float
    set_wall: float
