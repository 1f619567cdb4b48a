"""Turn a hot-spot projection into a recommendation with numbers: discharge the BESS by X kW during
hours H1–H2, or shift Y kW of load, so that the projected hot-spot stays under the limit.

The smallest X is found by a scan and bisection on the physics (`transformer_health.hot_spot_with_load`): less
load through the transformer never heats it, so the projected maximum falls monotonically with X and
bisection is exact to the tolerance. Discharge beyond the local load is not counted (no reverse flow
through the transformer is assumed to help), which keeps the monotonicity true.

Windows: each run of hours projected above the limit ("episode") gets a window that starts some hours
before it (the oil must be cooled ahead, it lags by the top-oil time constant) and ends when the
episode does. The number of pre-cooling hours is chosen to need the least BESS energy. One X serves
every window; the energy bound applies to each window (the battery recharges between episodes, which
are a day apart in a heat wave).

The result is a `Proposal`: key, proposer, evidence, rationale and actions, ready for
`DecisionService.propose(**proposal.propose_kwargs())`. `SetpointAction` has no start time, so the
action carries the first window's duration and the rationale says when it starts; the caller proposes
it early (the lead time) and again as the window nears (the key folds the repeats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeagent.analytics.thermal_params import ThermalParams
from edgeagent.analytics.transformer_health import FloatArray, Projection, hot_spot_with_load
from edgeagent.decisions.recommendation import Action, Evidence, Inspection, Proposer, SetpointAction

PlanKind = Literal["bess_discharge", "load_shift"]

_SCAN_POINTS = 32


@dataclass(frozen=True, slots=True)
class BessLimits:
    """What the battery can give: discharge power and energy per window, and the point that commands it."""

    power_kw: float
    energy_kwh: float
    device: str = "bess"
    point: str = "discharge_kw"

    def __post_init__(self) -> None:
        for name in ("power_kw", "energy_kwh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                      and value > 0):
                raise ValueError(f"BessLimits.{name}: must be a finite number > 0 (got {value!r})")


@dataclass(frozen=True, slots=True)
class Site:
    """How kW map to per-unit load: the transformer's rating and the load's power factor (Q held fixed)."""

    rated_kva: float
    power_factor: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.rated_kva, bool) or not (math.isfinite(self.rated_kva) and self.rated_kva > 0):
            raise ValueError(f"Site.rated_kva: must be a finite number > 0 (got {self.rated_kva!r})")
        if not (math.isfinite(self.power_factor) and 0 < self.power_factor <= 1):
            raise ValueError(f"Site.power_factor: must be in (0, 1] (got {self.power_factor!r})")

    def load_with_change(self, load_pu: FloatArray, change_kw: FloatArray) -> FloatArray:
        """Per-unit load after adding `change_kw` of active power (negative: discharge), P floored at 0."""
        s_kva = load_pu * self.rated_kva
        p_kw = s_kva * self.power_factor
        q_kvar = s_kva * math.sqrt(1 - self.power_factor**2)
        p_new = np.maximum(p_kw + change_kw, 0.0)
        return np.asarray(np.hypot(p_new, q_kvar) / self.rated_kva, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """The solved action: `power_kw` during each (start_h, end_h) window, from now."""

    kind: PlanKind
    power_kw: float
    windows_h: tuple[tuple[float, float], ...]
    limit_name: str
    limit_c: float
    max_hot_spot_c_with: float
    max_hot_spot_c_without: float
    rebound_hours_h: tuple[float, ...] = ()

    @property
    def energy_kwh_per_window(self) -> tuple[float, ...]:
        return tuple(self.power_kw * (end - start) for start, end in self.windows_h)


@dataclass(frozen=True, slots=True)
class Proposal:
    """Everything `DecisionService.propose` takes (less ttl_s), plus the plan and the lead time."""

    key: str
    proposer: Proposer
    evidence: Evidence
    rationale: str
    actions: tuple[Action, ...]
    lead_time_h: float | None
    plan: ActionPlan | None

    def propose_kwargs(self) -> dict[str, Any]:
        return {"key": self.key, "proposer": self.proposer, "evidence": self.evidence,
                "rationale": self.rationale, "actions": self.actions}


def recommend(projection: Projection, params: ThermalParams, site: Site, *, proposer: Proposer, input_sha256: str,
              bess: BessLimits | None = None, max_shift_kw: float | None = None, quantile: str = "p90",
              tolerance_kw: float = 1.0, key_prefix: str = "transformer") -> Proposal | None:
    """A recommendation when the projected hot-spot (P90 by default) crosses a limit, None when it does not.

    Tries the lowest crossed limit first (normal, then emergency): a BESS discharge if `bess` is given,
    else (or if the BESS cannot do it) a load shift of at most `max_shift_kw`. If nothing given can hold
    the limit, the recommendation is an inspection asking to reduce load, with the numbers.
    """
    if not (math.isfinite(tolerance_kw) and tolerance_kw > 0):
        raise ValueError(f"tolerance_kw: must be a finite number > 0 (got {tolerance_kw!r})")
    if max_shift_kw is not None and not (math.isfinite(max_shift_kw) and max_shift_kw > 0):
        raise ValueError(f"max_shift_kw: must be a finite number > 0 or None (got {max_shift_kw!r})")
    hot_spot = projection.hot_spot_c(quantile)
    crossed = [(name, limit) for name, limit in projection.limits.named() if hot_spot.max() > limit]
    if not crossed:
        return None
    first_name, first_limit = crossed[0]
    lead_time_h = projection.first_crossing_h(first_limit, quantile)
    for name, limit in crossed:
        plan = None
        if bess is not None:
            plan = solve_discharge(projection, params, site, limit, bess.power_kw, bess.energy_kwh, quantile,
                                   tolerance_kw, name)
        if plan is None and max_shift_kw is not None:
            plan = solve_shift(projection, params, site, limit, max_shift_kw, quantile, tolerance_kw, name)
        if plan is not None:
            return _proposal(projection, plan, proposer, input_sha256, bess, quantile, lead_time_h, key_prefix)
    return _no_plan(projection, first_name, first_limit, proposer, input_sha256, quantile, lead_time_h, key_prefix)


def solve_discharge(projection: Projection, params: ThermalParams, site: Site, limit_c: float, power_kw: float,
                    energy_kwh: float, quantile: str = "p90", tolerance_kw: float = 1.0,
                    limit_name: str = "limit") -> ActionPlan | None:
    """The least-energy BESS plan that holds the hot-spot under `limit_c`, None if the BESS cannot."""
    best: ActionPlan | None = None
    for mask, windows in _candidate_masks(projection, params, limit_c, quantile):
        def peak(x_kw: float, mask: FloatArray = mask) -> float:
            return _peak(projection, params, site, -x_kw * mask, quantile)
        x_kw = _bisect(peak, limit_c, power_kw, tolerance_kw)
        if x_kw is None or any(x_kw * (end - start) > energy_kwh for start, end in windows):
            continue
        plan = ActionPlan("bess_discharge", x_kw, windows, limit_name, limit_c, peak(x_kw),
                          float(projection.hot_spot_c(quantile).max()))
        if best is None or sum(plan.energy_kwh_per_window) < sum(best.energy_kwh_per_window):
            best = plan
    return best


def solve_shift(projection: Projection, params: ThermalParams, site: Site, limit_c: float, max_shift_kw: float,
                quantile: str = "p90", tolerance_kw: float = 1.0, limit_name: str = "limit") -> ActionPlan | None:
    """The least-energy load shift: Y kW less during the windows, Y kW more in as many of the
    lowest-load hours outside them (energy neutral), None if no Y up to `max_shift_kw` holds the limit."""
    best: ActionPlan | None = None
    for mask, windows in _candidate_masks(projection, params, limit_c, quantile):
        free = np.flatnonzero(mask == 0)
        needed = int(np.count_nonzero(mask))
        if len(free) < needed:
            continue
        rebound_idx = np.sort(free[np.argsort(projection.load_pu[free], kind="stable")[:needed]])
        rebound = np.zeros(len(mask))
        rebound[rebound_idx] = 1.0

        def peak(y_kw: float, mask: FloatArray = mask, rebound: FloatArray = rebound) -> float:
            return _peak(projection, params, site, y_kw * (rebound - mask), quantile)
        y_kw = _bisect(peak, limit_c, max_shift_kw, tolerance_kw)
        if y_kw is None:
            continue
        plan = ActionPlan("load_shift", y_kw, windows, limit_name, limit_c, peak(y_kw),
                          float(projection.hot_spot_c(quantile).max()),
                          tuple(float(i) * projection.step_h for i in rebound_idx))
        if best is None or sum(plan.energy_kwh_per_window) < sum(best.energy_kwh_per_window):
            best = plan
    return best


def apply_plan(projection: Projection, params: ThermalParams, site: Site, plan: ActionPlan,
               power_kw: float | None = None, quantile: str = "p90") -> FloatArray:
    """The projected hot-spot with `plan` carried out (at `power_kw` instead of the plan's, if given)."""
    x_kw = plan.power_kw if power_kw is None else power_kw
    change = np.zeros(len(projection.load_pu))
    for start, end in plan.windows_h:
        change[_index(start, projection.step_h):_index(end, projection.step_h)] -= x_kw
    for hour in plan.rebound_hours_h:
        change[_index(hour, projection.step_h)] += x_kw
    return hot_spot_with_load(projection, site.load_with_change(projection.load_pu, change), params, quantile)


def _candidate_masks(projection: Projection, params: ThermalParams, limit_c: float,
                     quantile: str) -> list[tuple[FloatArray, tuple[tuple[float, float], ...]]]:
    """Discharge masks (1 in the hours with the action) for 1 … ~3 top-oil time constants of pre-cooling.

    The load of step i acts on the state at i + 1, so a window must start at least one step before its
    episode; it ends at the episode's last step. Step 0 is now: a crossing now cannot be undone and is
    not part of any episode.
    """
    over = projection.hot_spot_c(quantile) > limit_c
    over[0] = False
    episodes = _runs(over)
    step_h = projection.step_h
    max_pre = max(1, math.ceil(3 * params.top_oil_time_constant_min / 60.0 / step_h))
    out = []
    for pre in range(1, max_pre + 1):
        mask = np.zeros(len(over))
        windows = []
        for first, last in episodes:
            start = max(0, first - pre)
            mask[start:last] = 1.0
            windows.append((start * step_h, last * step_h))
        out.append((mask, _merged(windows)))
    return out


def _runs(flags: np.ndarray[Any, np.dtype[np.bool_]]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(flags) - 1))
    return runs


def _merged(windows: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    merged: list[tuple[float, float]] = []
    for start, end in windows:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _peak(projection: Projection, params: ThermalParams, site: Site, change_kw: FloatArray, quantile: str) -> float:
    """Highest projected hot-spot after now (step 0 is already fixed) with the load changed by `change_kw`."""
    hot_spot = hot_spot_with_load(projection, site.load_with_change(projection.load_pu, change_kw), params, quantile)
    return float(hot_spot[1:].max()) if len(hot_spot) > 1 else float(hot_spot[0])


def _bisect(peak: Any, limit_c: float, max_kw: float, tolerance_kw: float) -> float | None:
    """Smallest kW in [0, max_kw] with peak(kW) <= limit_c, to within `tolerance_kw`.

    A coarse scan finds the first feasible grid point, then bisection refines the step before it. The
    scan keeps a load shift right: its rebound can make the peak rise again at large kW, so the peak is
    monotone only up to its minimum (a discharge is monotone throughout)."""
    if peak(0.0) <= limit_c:
        return 0.0
    grid = [max_kw * k / _SCAN_POINTS for k in range(1, _SCAN_POINTS + 1)]
    high = next((kw for kw in grid if peak(kw) <= limit_c), None)
    if high is None:
        return None
    low = high - max_kw / _SCAN_POINTS
    while high - low > tolerance_kw:
        mid = (low + high) / 2
        if peak(mid) <= limit_c:
            high = mid
        else:
            low = mid
    return high


def _index(hour: float, step_h: float) -> int:
    return round(hour / step_h)


def _evidence_figures(projection: Projection, proposer: Proposer, quantile: str,
                      lead_time_h: float | None) -> dict[str, float | str]:
    figures: dict[str, float | str] = dict(projection.figures())
    figures["protected_quantile"] = quantile
    if lead_time_h is not None:
        figures["lead_time_h"] = lead_time_h
    if proposer.kind == "model":
        figures["model_name"] = proposer.name
        figures["model_version"] = proposer.version
        figures["model_sha256"] = proposer.sha256 or ""
    return figures


def _hours(windows: tuple[tuple[float, float], ...]) -> str:
    return ", ".join(f"{start:g}–{end:g} h" for start, end in windows)


def _proposal(projection: Projection, plan: ActionPlan, proposer: Proposer, input_sha256: str,
              bess: BessLimits | None, quantile: str, lead_time_h: float | None, key_prefix: str) -> Proposal:
    figures = _evidence_figures(projection, proposer, quantile, lead_time_h)
    figures.update({"action_kw": round(plan.power_kw, 1), "limit_c": plan.limit_c,
                    "max_hotspot_c_with_action": round(plan.max_hot_spot_c_with, 2),
                    "window_start_h": plan.windows_h[0][0], "window_end_h": plan.windows_h[0][1]})
    loss = projection.loss_of_life_p90 if quantile == "p90" else projection.loss_of_life_p50
    over_h = projection.hours_over(plan.limit_c, quantile)
    then = (f"the {quantile.upper()} hot-spot is projected to reach {plan.max_hot_spot_c_without:.1f} °C, above the "
            f"{plan.limit_name} limit of {plan.limit_c:g} °C for {over_h:g} h of the next {projection.horizon_h:g} h"
            + (f", first in {lead_time_h:g} h" if lead_time_h is not None else "")
            + f" (loss of life {loss.loss_of_life_h:.2f} h, F_EQA {loss.equivalent_aging_factor:.2f}).")
    if plan.kind == "bess_discharge":
        assert bess is not None
        what = f"Discharge the BESS by {plan.power_kw:.1f} kW during hours {_hours(plan.windows_h)} from now"
        first_start, first_end = plan.windows_h[0]
        actions: tuple[Action, ...] = (SetpointAction(bess.device, bess.point, round(plan.power_kw, 3),
                                                      duration_s=(first_end - first_start) * 3600.0),)
    else:
        rebound = ", ".join(f"{h:g}" for h in plan.rebound_hours_h)
        what = (f"Shift {plan.power_kw:.1f} kW of load out of hours {_hours(plan.windows_h)} from now "
                f"(into hours {rebound})")
        actions = (Inspection(f"{what}: the transformer hot-spot would otherwise exceed {plan.limit_c:g} °C"),)
    rationale = (f"{what}: {then} With it the projected maximum is {plan.max_hot_spot_c_with:.1f} °C "
                 f"(physics: IEEE C57.91 Clause 7).")
    return Proposal(key=f"{key_prefix}.hotspot.{plan.limit_name}", proposer=proposer,
                    evidence=Evidence(figures, input_sha256), rationale=rationale, actions=actions,
                    lead_time_h=lead_time_h, plan=plan)


def _no_plan(projection: Projection, limit_name: str, limit_c: float, proposer: Proposer, input_sha256: str,
             quantile: str, lead_time_h: float | None, key_prefix: str) -> Proposal:
    figures = _evidence_figures(projection, proposer, quantile, lead_time_h)
    peak_c = float(projection.hot_spot_c(quantile).max())
    when = f" in {lead_time_h:g} h" if lead_time_h is not None else ""
    text = (f"Reduce the transformer load: the {quantile.upper()} hot-spot is projected to reach {peak_c:.1f} °C, "
            f"above the {limit_name} limit of {limit_c:g} °C{when}, and the available BESS or load shift cannot "
            "hold it under the limit")
    return Proposal(key=f"{key_prefix}.hotspot.{limit_name}", proposer=proposer,
                    evidence=Evidence(figures, input_sha256), rationale=text + ".", actions=(Inspection(text),),
                    lead_time_h=lead_time_h, plan=None)
