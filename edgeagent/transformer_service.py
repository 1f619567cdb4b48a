"""The transformer health task: every `every_s`, forecast 72 h of top oil, project the hot-spot, recommend.

Off the scan cycle entirely: inputs come from the hourly history (`HistoryService.hourly`), the model runs
in the forecaster's own worker thread under its timeout, and the physics, projection, plan search and
CUSUM run in this service's one worker thread under `analysis_timeout_s`. Only `propose` and the events
happen on the event loop.

Degraded, never down: when the model is missing, corrupt, mismatched, too slow or its output fails the
checks, the top oil is projected with the IEEE C57.91 Clause 7 physics alone (see `physics_top_oil_c`), and
ONE `transformer.model_unavailable` event says why; `transformer.model_restored` follows when it works
again. A run without enough history is skipped, with the reason logged once until it changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import structlog

from edgeagent.analytics.forecast import (
    ForecastInputError,
    ForecastOutputError,
    ForecastTimeout,
    ModelFileError,
    TopOilForecaster,
)
from edgeagent.analytics.thermal import IeeeClause7Model, IeeeState, LoadSeries
from edgeagent.analytics.transformer_health import (
    FloatArray,
    Projection,
    project,
    repeat_daily_profile,
    window_sha256,
)
from edgeagent.analytics.transformer_health_cusum import cooling_anomaly, cooling_recommendation
from edgeagent.analytics.transformer_health_plan import Proposal, Site, recommend
from edgeagent.config_transformer import TransformerConfig
from edgeagent.decisions.recommendation import Proposer, SetpointAction
from edgeagent.history_store import HOUR_S, HourlySeries, hour_of

log = structlog.get_logger("edgeagent.transformer")

LOOKBACK_H = 240
"""Hours of top oil read each run: the model's window (its manifest says 240)."""
HORIZON_H = 72
"""Hours projected ahead (the product horizon; the model gives 96, the first 72 are used)."""
COOLING_WINDOW_H = 72
TREND_DAYS = 3
MAX_TREND_K_PER_DAY = 3.0
PHYSICS = Proposer("rule", "transformer-physics-c57.91", "1")

Clock = Callable[[], float]
EventSink = Callable[[str, str, Mapping[str, Any]], None]


class HistoryReader(Protocol):
    async def hourly(self, point: str, since: float | datetime, until: float | datetime) -> HourlySeries: ...


class Proposing(Protocol):
    def propose(self, *, key: str, proposer: Proposer, evidence: Any, rationale: str, actions: Any,
                ttl_s: float | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Inputs:
    """One run's hourly inputs, oldest first, the last value is the hour just finished ("now")."""

    top_oil_c: FloatArray
    load_pu: FloatArray
    ambient_c: FloatArray | None
    hot_spot_c: FloatArray | None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run did: `skipped` holds the reason when it did nothing."""

    skipped: str | None = None
    source: str = ""
    projection: Projection | None = None
    proposals: tuple[Proposal, ...] = ()


class TransformerService:
    def __init__(self, cfg: TransformerConfig, history: HistoryReader, decisions: Proposing,
                 emit_event: EventSink | None = None, clock: Clock = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, analysis_timeout_s: float = 30.0,
                 model_timeout_s: float = 2.0) -> None:
        self.cfg = cfg
        self.history = history
        self.decisions = decisions
        self.emit_event = emit_event
        self.clock = clock
        self.sleep = sleep
        self.analysis_timeout_s = analysis_timeout_s
        self.model_timeout_s = model_timeout_s
        self.model_problem: str | None = None
        """Why the model is not in use now (None: it is, or none is configured)."""
        self.skip_reason: str | None = None
        self.runs = 0
        self._forecaster: TopOilForecaster | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="transformer")

    async def run(self) -> None:
        """Analyse now and every `every_s` after; a failing run is logged and the next one tries again."""
        while True:
            try:
                await self.run_once()
            except (ValueError, TimeoutError) as exc:
                log.error("transformer.run_failed", error=str(exc))
            await self.sleep(self.cfg.every_s)

    def close(self) -> None:
        if self._forecaster is not None:
            self._forecaster.close()
            self._forecaster = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_once(self) -> RunResult:
        self.runs += 1
        inputs, reason = await self._read_inputs()
        if inputs is None:
            assert reason is not None
            if reason != self.skip_reason:
                log.warning("transformer.skipped", reason=reason)
            self.skip_reason = reason
            return RunResult(skipped=reason)
        if self.skip_reason is not None:
            log.info("transformer.resumed", after=self.skip_reason)
            self.skip_reason = None
        forecast = await self._model_forecast(inputs)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.analysis_timeout_s):
            source, projection, proposals = await loop.run_in_executor(self._executor, self._analyse, inputs,
                                                                       forecast)
        figures = dict(projection.figures())
        lead = projection.first_crossing_h(self.cfg.limits.normal_c)
        if lead is not None:
            figures["lead_time_h"] = lead
        self._event("transformer.projection", "info", {**figures, "source": source})
        for proposal in proposals:
            self.decisions.propose(**self._scaled(proposal).propose_kwargs())
            log.info("transformer.proposed", key=proposal.key, lead_time_h=proposal.lead_time_h)
        return RunResult(source=source, projection=projection, proposals=tuple(proposals))

    async def _read_inputs(self) -> tuple[Inputs | None, str | None]:
        until = float(hour_of(self.clock()))
        since = until - LOOKBACK_H * HOUR_S
        cfg = self.cfg
        top_oil = await self.history.hourly(cfg.top_oil, since, until)
        if top_oil.gaps:
            return None, (f"{cfg.top_oil}: {top_oil.gaps} of the last {LOOKBACK_H} hours missing in the history "
                          f"(need all {LOOKBACK_H})")
        load = await self.history.hourly(cfg.load_point, since, until)
        if load.gaps:
            return None, f"{cfg.load_point}: {load.gaps} of the last {LOOKBACK_H} hours missing in the history"
        load_pu = load.mean if cfg.load_pu is not None else load.mean / self._rated_kva()
        ambient = hot_spot = None
        if cfg.ambient is not None:
            ambient = (await self.history.hourly(cfg.ambient, since, until)).mean
            if not np.isfinite(ambient).all():
                return None, f"{cfg.ambient}: hours missing in the history"
        if cfg.hot_spot is not None:
            hot_spot = (await self.history.hourly(cfg.hot_spot, until - HOUR_S, until)).mean
        return Inputs(top_oil.mean, np.asarray(load_pu, dtype=np.float64), ambient, hot_spot), None

    def _rated_kva(self) -> float:
        assert self.cfg.site is not None  # required with load_kva (config)
        return self.cfg.site.rated_kva

    async def _model_forecast(self, inputs: Inputs) -> tuple[FloatArray, FloatArray, Proposer] | None:
        """(P50, P90, proposer) for hours 1..HORIZON_H from the model, None when it cannot be used now."""
        if self.cfg.model is None:
            return None
        try:
            if self._forecaster is None:
                self._forecaster = await asyncio.to_thread(TopOilForecaster.load, self.cfg.model,
                                                           self.model_timeout_s)
            forecaster = self._forecaster
            result = await asyncio.to_thread(forecaster.predict, inputs.top_oil_c[-forecaster.manifest.lookback_h:])
        except ModelFileError as exc:
            if self._forecaster is not None:
                self._forecaster.close()
                self._forecaster = None
            self._model_down(str(exc))
            return None
        except (ForecastInputError, ForecastOutputError, ForecastTimeout) as exc:
            self._model_down(str(exc))
            return None
        if self.model_problem is not None:
            self._event("transformer.model_restored", "info", {"model": str(self.cfg.model),
                                                               "after": self.model_problem})
            self.model_problem = None
        manifest = forecaster.manifest
        proposer = Proposer("model", manifest.name, manifest.version, manifest.sha256)
        return result.p50_c[0, :HORIZON_H], result.p90_c[0, :HORIZON_H], proposer

    def _model_down(self, reason: str) -> None:
        if self.model_problem is None:
            self._event("transformer.model_unavailable", "warning",
                        {"model": str(self.cfg.model), "reason": reason, "fallback": "physics"})
        self.model_problem = reason

    def _analyse(self, inputs: Inputs, forecast: tuple[FloatArray, FloatArray, Proposer] | None
                 ) -> tuple[str, Projection, list[Proposal]]:
        """Runs in the worker thread: the projection and what to propose (CPU only, no I/O)."""
        cfg = self.cfg
        steps = HORIZON_H + 1  # step 0 is now (the last measured hour)
        load_day = inputs.load_pu[-24:]
        load_forecast = repeat_daily_profile(np.roll(load_day, 1), steps)
        now_c = float(inputs.top_oil_c[-1])
        if forecast is not None:
            p50_ahead, p90_ahead, proposer = forecast
            p50 = np.concatenate(([now_c], p50_ahead))
            p90 = np.concatenate(([now_c], p90_ahead))
            source = "model"
            # The model has learned normal weather; a building heat wave is outside what it saw, and
            # the physics with the measured trend sees it earlier. For a limit that protects the
            # insulation, the upper band is the worse of the two: a model may narrow a warning, never hide one.
            physics = physics_top_oil_c(inputs, load_forecast, cfg)
            if bool(np.any(physics > p90)):
                p90 = np.maximum(p90, physics)
                source = "model+physics"
        else:
            p50 = physics_top_oil_c(inputs, load_forecast, cfg)
            p90 = p50
            proposer = PHYSICS
            source = "physics"
        gradient = None
        if inputs.hot_spot_c is not None and math.isfinite(float(inputs.hot_spot_c[-1])):
            gradient = max(0.0, float(inputs.hot_spot_c[-1]) - now_c)
        projection = project(p50, p90, load_forecast, cfg.params, limits=cfg.limits, initial_gradient_k=gradient)
        sha = window_sha256(top_oil_c=inputs.top_oil_c, load_pu=inputs.load_pu)
        proposals: list[Proposal] = []
        site = cfg.site
        if site is None:
            site = Site(1.0)  # no BESS and no shift configured (config): only the "reduce load" inspection
        rec = recommend(projection, cfg.params, site, proposer=proposer, input_sha256=sha, bess=cfg.bess,
                        max_shift_kw=cfg.max_shift_kw)
        if rec is not None:
            proposals.append(rec)
        if inputs.ambient_c is not None:
            n = COOLING_WINDOW_H
            anomaly = cooling_anomaly(np.arange(n, dtype=np.float64) * 60.0, inputs.top_oil_c[-n:],
                                      inputs.load_pu[-n:], inputs.ambient_c[-n:], cfg.params)
            cooling = cooling_recommendation(anomaly, proposer=PHYSICS, input_sha256=sha)
            if cooling is not None:
                proposals.append(cooling)
        return source, projection, proposals

    def _scaled(self, proposal: Proposal) -> Proposal:
        """The BESS setpoint in its point's unit (the plan speaks kW)."""
        if self.cfg.bess_w_per_kw == 1.0:
            return proposal
        actions = tuple(replace(a, value=round(a.value * self.cfg.bess_w_per_kw, 3))
                        if isinstance(a, SetpointAction) else a for a in proposal.actions)
        return replace(proposal, actions=actions)

    def _event(self, name: str, severity: str, data: Mapping[str, Any]) -> None:
        log.info(name, severity=severity, **data)
        if self.emit_event is not None:
            self.emit_event(name, severity, data)


def physics_top_oil_c(inputs: Inputs, load_forecast_pu: FloatArray, cfg: TransformerConfig) -> FloatArray:
    """Top oil from the IEEE C57.91 Clause 7 physics alone, for the model's absence.

    The top-oil rise is started from what it is now and driven by the load forecast. The ambient is
    the measured one's last day repeated, or, without an ambient point, the ambient the measurements
    imply (measured top oil − the rise the physics gives for the measured load), held at its last
    day's profile. Either way the day-to-day trend of the last `TREND_DAYS` days is carried on (at most
    ±`MAX_TREND_K_PER_DAY`): a heat wave builds over days, and a forecast that forgets that sees it late.
    """
    model = IeeeClause7Model(cfg.params)
    n = len(inputs.top_oil_c)
    if inputs.ambient_c is not None:
        ambient = inputs.ambient_c
    else:
        time_min = np.arange(n, dtype=np.float64) * 60.0
        rise = model.simulate(LoadSeries(time_min, inputs.load_pu, np.zeros(n))).top_oil_c
        ambient = inputs.top_oil_c - rise
    steps = len(load_forecast_pu)
    trend = _daily_trend_k(ambient)
    ambient_forecast = repeat_daily_profile(np.roll(ambient[-24:], 1), steps) + trend * np.arange(steps) / 24.0
    now_rise = float(inputs.top_oil_c[-1] - ambient[-1])
    start = IeeeState(now_rise, model.ultimate_hot_spot_gradient_k(float(load_forecast_pu[0])))
    series = LoadSeries(np.arange(steps, dtype=np.float64) * 60.0, load_forecast_pu, ambient_forecast)
    return np.asarray(model.simulate(series, start).top_oil_c, dtype=np.float64)


def _daily_trend_k(ambient_c: FloatArray) -> float:
    days = min(TREND_DAYS, len(ambient_c) // 24)
    if days < 2:
        return 0.0
    means = ambient_c[-24 * days:].reshape(days, 24).mean(axis=1)
    slope = float(np.polyfit(np.arange(days, dtype=np.float64), means, 1)[0])
    return max(-MAX_TREND_K_PER_DAY, min(MAX_TREND_K_PER_DAY, slope))


__all__ = ["HORIZON_H", "LOOKBACK_H", "Inputs", "RunResult", "TransformerService", "physics_top_oil_c"]
