"""Export-limit controller: keeps measured export at the PCC under the active limit.

Synchronous, deterministic, no I/O and no await (DESIGN.md principle 1): a Phase of the scan
cycle whose output depends only on the snapshot, its configuration and its own small state.

Sign conventions: meter W > 0 = import, W < 0 = export, so ``export_kw = -W / 1000``.
BESS setpoint W > 0 = discharge, < 0 = charge. PV limit is WMaxLimPct (% of the inverter's WRtg).

Control law (NORMAL)
    An integral loop on the export error ``e = export - (limit - margin)`` (W) produces the total
    power to absorb ``A``; a small proportional term on ``e`` (clamped to be non-negative, i.e.
    only in the absorbing direction) speeds up the first reaction to a step. ``A`` is allocated
    to BESS charge first, up to ``max_charge_w`` (0 when SoC >= soc_max_pct or the SoC is not
    GOOD), and the rest to PV curtailment: ``WMaxLimPct = 100 * (P_base - rest) / rated`` with
    ``P_base`` the PV output seen before curtailment began (held while curtailing, so that the
    lag of the inverter does not feed back into the estimate). Both outputs are ramp-limited,
    then the integrator is reset to what the ramped outputs actually absorb (back-calculation),
    so it cannot grow while the actuators are saturated or ramping (anti-windup). The integrator
    only advances on a new meter sample, with the sample interval as dt, so the loop gain does
    not depend on how often the meter answers.

Fallback (meter not GOOD, missing, or frozen)
    The limit becomes ``fallback_kw`` (default: contract_min_kw, the most restrictive), in the
    same cycle. Without a measurement the controller acts open-loop, assuming the worst case that
    the site load is zero: the PV is capped so that its output alone cannot exceed the fallback
    export (``100 * fallback_w / rated``, never above the cap already in force), and the BESS
    is never released (its charge setpoint is kept, never reduced towards discharge); if the
    PV's ``min_pct`` floor keeps the PV above the fallback, the BESS is asked to charge the
    excess when its SoC allows. Ramp limits do not apply to moves in the safe direction in
    FALLBACK: being safe now outweighs smoothness.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from edgeagent.cycle import Command
from edgeagent.image import Quality, Snapshot
from edgeagent.safety.export_limit_types import (
    BessTarget,
    Event,
    ExportLimitConfig,
    FallbackEntered,
    FallbackLeft,
    FallbackReason,
    LimitChanged,
    LimitSource,
    Override,
    PvTarget,
    State,
)

ORIGIN = "controller:export_limit"
_MAX_DT_S = 0.5  # a longer gap between samples integrates as if it were this long



class ExportLimiter:
    """The export-limit Phase ("export_limit"). See the module docstring for the control law.

    It owns the BESS setpoint (within [-max_charge_w, 0]) and the PV WMaxLimPct (within
    [min_pct, 100]) and writes both every cycle, so a device revert timeout never lapses while
    the daemon lives.
    """

    name = "export_limit"

    def __init__(self, config: ExportLimitConfig) -> None:
        self.config = config
        self.state = State.NORMAL
        self.reason = FallbackReason.NONE
        self.limit_kw: float | None = None
        self.limit_source: LimitSource | None = None
        self.export_kw: float | None = None
        self._events: list[Event] = []
        self._override: Override | None = None
        self._absorb_w = 0.0  # integrator: total power to absorb, W, >= 0
        self._bess_w = 0.0  # last BESS setpoint, W (<= 0)
        self._pv_pct = 100.0  # last WMaxLimPct
        self._pv_est_pct = 100.0  # where the inverter's output cap is by now (lags _pv_pct)
        self._pv_base_w: float | None = None
        self._last_t: float | None = None
        self._last_sample_t: float | None = None
        self._fallback_since = 0.0
        self._last_good_t: float | None = None  # t_mono of the meter's last usable sample
        # freeze detection: reference value of the meter and the plant's state when it last moved
        self._frz_value: float | None = None
        self._frz_t = 0.0
        self._frz_plant: tuple[float, float, float | None] = (0.0, 100.0, None)
        self._rated_w_cache: float | None = None
        self._bumpless = False  # on leaving FALLBACK, start the integrator from what is applied
        #: (device, point), snapshot -> (lo, hi) the arbiter will grant; set by the wiring
        self.envelope: Callable[[tuple[str, str], Snapshot], tuple[float, float]] | None = None

    @property
    def bess_request_w(self) -> float:
        """The BESS setpoint the limiter asks for now (W, <= 0: charge), 0 without a battery."""
        return self._bess_w if self.config.bess is not None else 0.0

    @property
    def margin_kw(self) -> float:
        return self.config.margin_kw

    @property
    def override(self) -> Override | None:
        return self._override

    # -- run-time limit -------------------------------------------------------------------------

    def set_limit(self, kw: float, now_wall: float) -> str | None:
        """Set a run-time limit. Returns None when accepted, else the reason for refusing.

        Refusing (not clamping) a value outside the contract keeps the caller honest: the caller
        asked for something the contract does not allow and must be told, not silently obeyed.
        """
        c = self.config
        if not isinstance(kw, int | float) or isinstance(kw, bool) or not math.isfinite(kw):
            return f"limit must be a finite number of kW, got {kw!r}"
        if not c.contract_min_kw <= kw <= c.contract_max_kw:
            return f"limit {kw} kW outside contract bounds [{c.contract_min_kw}, {c.contract_max_kw}] kW"
        self._override = Override(float(kw), now_wall)
        return None

    def clear_limit(self) -> None:
        """Drop the run-time limit; the schedule or static limit applies again."""
        self._override = None

    def drain_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- the phase ------------------------------------------------------------------------------

    def _configured_limit(self, t_wall: float) -> tuple[float, LimitSource]:
        c = self.config
        if self._override is not None:
            return self._override.limit_kw, LimitSource.OVERRIDE
        if c.schedule is not None:
            return c.schedule.limit_at(t_wall), LimitSource.SCHEDULE
        assert c.static_kw is not None
        return c.static_kw, LimitSource.STATIC

    def _rated_w(self, snapshot: Snapshot) -> float | None:
        pv = self.config.pv
        if pv is None:
            return None
        if pv.rated_w is not None:
            return pv.rated_w
        assert pv.rated_point is not None
        rated = snapshot.value(pv.rated_point)
        return rated if rated is not None and math.isfinite(rated) and rated > 0 else None

    def _bess_avail_w(self, snapshot: Snapshot) -> float:
        """Charge power the BESS can take now: 0 when full or its SoC is unknown, and never more
        than the envelope grants (an interlock that pins or bounds the setpoint, e.g. too hot to
        charge), so the controller shifts to PV curtailment instead of asking in vain."""
        b = self.config.bess
        if b is None:
            return 0.0
        soc = snapshot.value(b.soc_point)
        if soc is None or not math.isfinite(soc) or soc >= b.soc_max_pct:
            return 0.0
        if self.envelope is not None:
            lowest, _ = self.envelope((b.device, b.point), snapshot)
            return min(b.max_charge_w, max(0.0, -lowest))
        return b.max_charge_w

    def _meter(self, snapshot: Snapshot) -> tuple[float | None, float, FallbackReason, str]:
        """(meter W, sample t_mono, fault reason, detail). W is None on any fault."""
        point = self.config.meter_point
        if point not in snapshot:
            return None, 0.0, FallbackReason.METER_MISSING, f"{point} not in the process image"
        view = snapshot[point]
        if not view.good:
            reason = FallbackReason.METER_BAD if view.quality is Quality.BAD else FallbackReason.METER_STALE
            return None, view.sample.t_mono, reason, view.sample.reason or view.quality.value
        w = snapshot.value(point)
        if w is None or not math.isfinite(w):
            return None, view.sample.t_mono, FallbackReason.METER_BAD, f"non-numeric value {view.value!r}"
        return w, view.sample.t_mono, FallbackReason.NONE, ""

    def _frozen(self, w: float, t_sample: float, pv_w: float | None) -> bool:
        """True when the meter repeats one value (within freeze_tolerance_w) for freeze_window_s
        while its sample timestamps advance (a frozen timestamp is caught as STALE by the image).

        By default identical readings alone count: a real meter's last digits always move, and
        the dangerous case (a gateway caching a pre-load-drop reading) changes nothing the
        controller can observe, so waiting for evidence of motion would hide exactly that case.
        For coarse meters on quiet sites (a steady 0 W at night), `freeze_requires_motion`
        demands evidence as well: the controller's own setpoints or the PV output changed by
        more than freeze_motion_w since the value last moved, yet the meter did not follow.
        """
        c = self.config
        rated = self._rated_w_cache
        plant = (self._bess_w, self._pv_pct, pv_w)
        if self._frz_value is None or abs(w - self._frz_value) > c.freeze_tolerance_w:
            self._frz_value, self._frz_t, self._frz_plant = w, t_sample, plant
            return False
        if t_sample - self._frz_t < c.freeze_window_s:
            return False
        if not c.freeze_requires_motion:
            return True
        b0, p0, pv0 = self._frz_plant
        moved = abs(self._bess_w - b0) > c.freeze_motion_w
        if rated is not None and abs(self._pv_pct - p0) * rated / 100.0 > c.freeze_motion_w:
            moved = True
        if pv_w is not None and pv0 is not None and abs(pv_w - pv0) > c.freeze_motion_w:
            moved = True
        return moved

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        c = self.config
        t = snapshot.t_mono
        dt_cycle = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), _MAX_DT_S)
        self._last_t = t
        rated = self._rated_w(snapshot)
        self._rated_w_cache = rated
        pv_w = snapshot.value(c.pv.power_point) if c.pv is not None and c.pv.power_point else None
        bess_avail = self._bess_avail_w(snapshot)
        # what the BESS cannot take, it is not taking: the integrator must not count on it
        self._bess_w = max(self._bess_w, -bess_avail)
        if c.pv is not None:
            # the cap the inverter has reached by now (it follows with lag tau_s), seen that much
            # earlier as the battery needs to respond, so a hand-over meets in the middle
            tau = max(c.pv.tau_s - (c.bess.response_s if c.bess is not None else 0.0), 0.0)
            k = 1.0 if tau <= 0.0 else 1.0 - math.exp(-dt_cycle / tau)
            self._pv_est_pct += (self._pv_pct - self._pv_est_pct) * k

        w, t_sample, reason, detail = self._meter(snapshot)
        if w is not None and self._frozen(w, t_sample, pv_w):
            reason = FallbackReason.METER_FROZEN
            detail = f"{c.meter_point} unchanged at {w} W for {t_sample - self._frz_t:.1f} s while the plant moved"
        self.export_kw = None if reason is not FallbackReason.NONE or w is None else -w / 1000.0
        if reason is FallbackReason.NONE:
            self._last_good_t = t_sample

        # state transitions (same cycle as the fault is seen)
        if reason is not FallbackReason.NONE and self.state is State.NORMAL:
            self.state, self.reason, self._fallback_since = State.FALLBACK, reason, t
            age = None if self._last_good_t is None else round(t - self._last_good_t, 3)
            self._events.append(FallbackEntered(t, reason, c.effective_fallback_kw, detail, age))
        elif reason is not FallbackReason.NONE:
            self.reason = reason
        elif self.state is State.FALLBACK:
            self.state, self.reason = State.NORMAL, FallbackReason.NONE
            self._events.append(FallbackLeft(t, t - self._fallback_since, self._configured_limit(snapshot.t_wall)[0]))
            self._last_sample_t = t_sample  # the first good sample after a gap is not integrated
            self._bumpless = True

        if self.state is State.FALLBACK:
            limit, source = c.effective_fallback_kw, LimitSource.FALLBACK
        else:
            limit, source = self._configured_limit(snapshot.t_wall)
        if limit != self.limit_kw or source is not self.limit_source:
            if limit != self.limit_kw:
                self._events.append(LimitChanged(t, self.limit_kw, limit, source))
            self.limit_kw, self.limit_source = limit, source

        if self.state is State.FALLBACK:
            self._fallback_outputs(limit, rated, bess_avail)
        else:
            assert w is not None
            self._normal_outputs(limit, -w, t_sample, dt_cycle, rated, pv_w, bess_avail)
        return self._commands()

    def _pv_absorb(self, pct: float, rated: float | None) -> float:
        """What a PV cap of `pct` takes off the PV's uncurtailed output, W (>= 0)."""
        if rated is None or pct >= 100.0 or self._pv_base_w is None:
            return 0.0
        return max(0.0, self._pv_base_w - pct * rated / 100.0)

    def _normal_outputs(self, limit_kw: float, export_w: float, t_sample: float, dt_cycle: float,
                        rated: float | None, pv_w: float | None, bess_avail: float) -> None:
        c = self.config
        error_w = export_w - (limit_kw - c.margin_kw) * 1000.0
        # PV output before curtailment: tracked while uncurtailed, held while curtailing
        if rated is not None:
            if min(self._pv_pct, self._pv_est_pct) >= 99.5 or self._pv_base_w is None:
                self._pv_base_w = rated if pv_w is None else min(max(pv_w, 0.0), rated)
            elif pv_w is not None and pv_w > self._pv_base_w:
                self._pv_base_w = min(pv_w, rated)
        pv_avail = 0.0
        if c.pv is not None and rated is not None and self._pv_base_w is not None:
            pv_avail = max(0.0, self._pv_base_w - c.pv.min_pct * rated / 100.0)
        top = bess_avail + pv_avail
        if self._bumpless:
            # the loop takes over from the fallback outputs and releases them through the
            # integrator (at the loop's pace) instead of jumping back to its pre-fault state
            self._bumpless = False
            self._absorb_w = -self._bess_w + self._pv_absorb(self._pv_pct, rated)

        # gain scheduling: the PV's 1 s-class lag needs a slower loop than the BESS's 0.2 s
        on_pv = self._absorb_w >= bess_avail and pv_avail > 0.0
        if self._last_sample_t is None or t_sample > self._last_sample_t:
            dt = 0.0 if self._last_sample_t is None else min(t_sample - self._last_sample_t, _MAX_DT_S)
            self._last_sample_t = t_sample
            self._absorb_w += (c.pv_gain if on_pv else c.gain) * dt * error_w
        self._absorb_w = min(max(self._absorb_w, 0.0), top)
        kp = c.pv_kp if on_pv else c.kp
        want = min(max(self._absorb_w + kp * max(error_w, 0.0), 0.0), top)

        # PV carries, in the long run, what the BESS cannot; the BESS covers the rest of `want` given
        # what the PV is absorbing *now* (its output lags its cap). When the BESS comes back after a
        # trip, it then takes over only as fast as the PV releases, instead of over-absorbing at once.
        pv_need = max(want - bess_avail, 0.0)
        pct_want = 100.0
        if c.pv is not None and rated is not None and pv_need > 0.0 and self._pv_base_w is not None:
            pct_want = 100.0 * (self._pv_base_w - pv_need) / rated
        pv_now = self._pv_absorb(self._pv_est_pct, rated)
        bess_want = -min(max(want - pv_now, 0.0), bess_avail)
        self._apply(bess_want, pct_want, dt_cycle, ramp_safe=True)
        # back-calculation: the integrator holds what the (ramped, clamped) outputs really absorb
        # (the PV counts with the larger of its command and where it really is: a released cap
        # still absorbs until the inverter has ramped back up)
        pv_applied = max(self._pv_absorb(self._pv_pct, rated), self._pv_absorb(self._pv_est_pct, rated))
        self._absorb_w = min(self._absorb_w, -self._bess_w + pv_applied)

    def _fallback_outputs(self, limit_kw: float, rated: float | None, bess_avail: float) -> None:
        c = self.config
        bess_want = self._bess_w  # never release the BESS without a measurement
        pct_want = self._pv_pct
        if c.pv is not None and rated is not None:
            pct_cap = 100.0 * max(limit_kw, 0.0) * 1000.0 / rated
            pct_want = min(pct_want, pct_cap)
            excess_w = (c.pv.min_pct - pct_want) * rated / 100.0
            if excess_w > 0.0:
                bess_want = min(bess_want, -min(excess_w, bess_avail))
        # safe-direction moves (more charge, lower cap) are unramped; the others cannot happen here
        self._apply(bess_want, pct_want, 0.0, ramp_safe=False)

    def _apply(self, bess_want: float, pct_want: float, dt: float, *, ramp_safe: bool) -> None:
        """Clamp to the actuator bounds and ramp-limit; NaN can never reach an output."""
        b, p = self.config.bess, self.config.pv
        if b is not None and math.isfinite(bess_want):
            target = min(max(bess_want, -b.max_charge_w), 0.0)
            if ramp_safe or target > self._bess_w:
                step = math.inf if math.isinf(b.ramp_w_per_s) else b.ramp_w_per_s * dt
                target = min(max(target, self._bess_w - step), self._bess_w + step)
            self._bess_w = min(max(target, -b.max_charge_w), 0.0)
        if p is not None and math.isfinite(pct_want):
            target = min(max(pct_want, p.min_pct), 100.0)
            if ramp_safe or target > self._pv_pct:
                step = math.inf if math.isinf(p.ramp_pct_per_s) else p.ramp_pct_per_s * dt
                target = min(max(target, self._pv_pct - step), self._pv_pct + step)
            self._pv_pct = min(max(target, p.min_pct), 100.0)

    def _commands(self) -> tuple[Command, ...]:
        c = self.config
        why = f"{self.state.value}: limit {self.limit_kw} kW ({self.limit_source.value if self.limit_source else '-'})"
        out: list[Command] = []
        if c.bess is not None:
            out.append(Command(c.bess.device, c.bess.point, self._bess_w, ORIGIN, why))
        if c.pv is not None:
            out.append(Command(c.pv.device, c.pv.point, self._pv_pct, ORIGIN, why))
        return tuple(out)


__all__ = [
    "ORIGIN",
    "BessTarget",
    "Event",
    "ExportLimitConfig",
    "ExportLimiter",
    "FallbackEntered",
    "FallbackLeft",
    "FallbackReason",
    "LimitChanged",
    "LimitSource",
    "Override",
    "PvTarget",
    "State",
]
