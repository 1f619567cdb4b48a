"""The transformer health task: a heat wave in the history → a recommendation with lead time; a corrupt
model → one event and the physics takes over; too little history → a reason, no proposal; config mistakes."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from edgeagent import config, safety_wiring
from edgeagent.analytics.thermal import IeeeClause7Model, LoadSeries
from edgeagent.analytics.thermal_params import PRESETS
from edgeagent.config_decisions import DecisionsConfig
from edgeagent.config_history import HistoryConfig
from edgeagent.config_safety import SafetyConfig
from edgeagent.decisions.recommendation import SetpointAction
from edgeagent.decisions.service import DecisionService
from edgeagent.decisions.trust import TrustStore
from edgeagent.history import HistoryService
from edgeagent.history_store import HistoryStore, HourRow
from edgeagent.transformer_service import TransformerService

MODELS = Path(__file__).resolve().parent.parent / "models"
MANIFEST = "transformer-topoil-1.0.0.manifest.json"
T0 = 1_750_000_000 // 3600 * 3600
HOURS = 240

BASE = """
[site]
id = "t"
node = "n"
[storage]
dir = "{state}"
[devices.xfmr]
kind = "modbus"
host = "127.0.0.1"
port = 1502
points = [{{ name = "top_oil_c", address = 1 }}, {{ name = "load_pu", address = 2 }},
          {{ name = "ambient_c", address = 3 }}]
[devices.bess]
kind = "modbus"
host = "127.0.0.1"
port = 1503
points = [{{ name = "WSet", address = 1, writable = true, table = "holding" }}]
"""

TRANSFORMER = """
[transformer]
top_oil = "xfmr.top_oil_c"
load_pu = "xfmr.load_pu"
ambient = "xfmr.ambient_c"
rated_kva = 1000
bess_setpoint = "bess.WSet"
bess_setpoint_unit = "W"
bess_power_kw = 400
bess_energy_kwh = 2000
{model}
[transformer.thermal]
preset = "onan_distribution"
"""


def heat_wave(hours: int) -> dict[str, np.ndarray]:
    """Five mild days, then an ambient rising 2.5 K a day: the hot-spot peaks 119 °C on the last day in the
    history, 121.7 °C the day after (hour 43 ahead, by the same physics)."""
    t = np.arange(hours, dtype=np.float64)
    hod = t % 24
    ambient = 20.2 + 2.5 * np.maximum(0.0, t / 24 - 5) + 7 * np.sin(2 * np.pi * (hod - 9) / 24)
    load = 0.75 + 0.35 * np.exp(-(((hod - 17) / 3.0) ** 2))
    trace = IeeeClause7Model(PRESETS["onan_distribution"]).simulate(LoadSeries(t * 60.0, load, ambient))
    return {"xfmr.top_oil_c": trace.top_oil_c, "xfmr.load_pu": load, "xfmr.ambient_c": ambient}


def fill(state: Path, hours: int) -> float:
    """Write `hours` of the heat wave ending now; returns the clock (Unix s) just after the last hour."""
    start = T0 - hours * 3600
    rows = [HourRow(point, start + i * 3600, float(v), float(v), float(v), 60)
            for point, values in heat_wave(hours).items() for i, v in enumerate(values)]
    with HistoryStore(state / "history.sqlite") as store:
        store.merge_live(rows)
    return T0 + 60.0


class Harness:
    def __init__(self, state: Path, model: Path | None = None) -> None:
        model_line = f'model = "{model}"' if model is not None else ""
        text = BASE.format(state=state) + TRANSFORMER.format(model=model_line)
        self.cfg = config.parse(text, str(state / "site.toml"))
        assert self.cfg.transformer is not None
        self.now = 0.0
        self.history = HistoryService(state / "history.sqlite", HistoryConfig(), clock=lambda: self.now)
        self.decisions = DecisionService(site="t", node="n", state_dir=state, trust=TrustStore(),
                                         cfg=DecisionsConfig(), safety=safety_wiring.build(SafetyConfig()),
                                         device_online=lambda d: True, clock=lambda: self.now, audit_fsync=False)
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.service = TransformerService(self.cfg.transformer, self.history, self.decisions,
                                          emit_event=lambda n, s, d: self.events.append((n, s, dict(d))),
                                          clock=lambda: self.now)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [d for n, _, d in self.events if n == name]

    def close(self) -> None:
        self.service.close()
        self.history.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path


async def test_heat_wave_recommends_a_discharge_a_day_ahead(state: Path) -> None:
    h = Harness(state)
    h.now = fill(state, HOURS)
    try:
        result = await h.service.run_once()
    finally:
        h.close()
    assert result.skipped is None and result.source == "physics"
    open_recs = h.decisions.engine.open()
    assert len(open_recs) == 1
    rec = open_recs[0]
    assert rec.key == "transformer.hotspot.normal"
    figures = rec.evidence.figures
    assert 120.0 < float(figures["max_hotspot_c_projected_p90"]) < 126.0  # the truth is 121.7 °C
    assert float(figures["lead_time_h"]) >= 24.0
    (action,) = rec.actions
    assert isinstance(action, SetpointAction) and (action.device, action.point) == ("bess", "WSet")
    assert 0 < action.value <= 400_000  # W: the plan's kW times 1000, within the BESS's power
    assert action.value == pytest.approx(float(figures["action_kw"]) * 1000, abs=100)
    (projection,) = h.named("transformer.projection")
    assert projection["source"] == "physics" and projection["lead_time_h"] == figures["lead_time_h"]


async def test_corrupt_model_one_event_physics_projection_then_restored(state: Path) -> None:
    models = state / "models"
    models.mkdir()
    for name in (MANIFEST, "transformer-topoil-1.0.0.onnx"):
        shutil.copy(MODELS / name, models / name)
    onnx = models / "transformer-topoil-1.0.0.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(good[:-100] + bytes(100))
    h = Harness(state, Path("models") / MANIFEST)  # relative to the config file
    h.now = fill(state, HOURS)
    try:
        first = await h.service.run_once()
        second = await h.service.run_once()
        down = h.named("transformer.model_unavailable")
        onnx.write_bytes(good)
        third = await h.service.run_once()
    finally:
        h.close()
    assert len(down) == 1 and "sha256 mismatch" in down[0]["reason"]
    # with the model back, its band is widened by the physics on this heat wave (see the next test)
    assert (first.source, second.source, third.source) == ("physics", "physics", "model+physics")
    assert [p["source"] for p in h.named("transformer.projection")] == ["physics", "physics", "model+physics"]
    assert len(h.named("transformer.model_restored")) == 1
    assert len(h.named("transformer.model_unavailable")) == 1


async def test_with_the_model_a_heat_wave_it_did_not_learn_is_still_caught_a_day_ahead(state: Path) -> None:
    """The shipped model alone projects 117.5 °C here (under the limit); the physics with the measured
    trend sees the crossing. The upper band is the worse of the two, so the warning stands."""
    models = state / "models"
    models.mkdir()
    for name in (MANIFEST, "transformer-topoil-1.0.0.onnx"):
        shutil.copy(MODELS / name, models / name)
    h = Harness(state, Path("models") / MANIFEST)
    h.now = fill(state, HOURS)
    try:
        result = await h.service.run_once()
    finally:
        h.close()
    assert result.source == "model+physics"
    (rec,) = h.decisions.engine.open()
    assert rec.key == "transformer.hotspot.normal" and float(rec.evidence.figures["lead_time_h"]) >= 24.0
    assert rec.proposer.kind == "model" and rec.proposer.sha256  # the model's identity stays on the record


async def test_too_little_history_skips_with_one_reason(state: Path) -> None:
    h = Harness(state)
    h.now = fill(state, 100)
    try:
        with capture_logs() as logs:
            first = await h.service.run_once()
            second = await h.service.run_once()
    finally:
        h.close()
    assert first.skipped is not None and "xfmr.top_oil_c" in first.skipped and "140 of the last 240" in first.skipped
    assert second.skipped == first.skipped
    assert [e for e in logs if e["event"] == "transformer.skipped"] == [
        {"event": "transformer.skipped", "reason": first.skipped, "log_level": "warning"}]
    assert len(h.decisions.engine.open()) == 0 and h.events == []


def test_config_mistakes_name_their_key_paths(state: Path) -> None:
    text = BASE.format(state=state) + """
[transformer]
top_oil = "xfmr.top_oil"
load_pu = "xfmr.load_pu"
load_kva = "xfmr.load_pu"
bess_setpoint = "bess.WSet"
every_s = 5
[transformer.thermal]
preset = "onan_distribution"
exponent_n = "high"
[transformer.limits]
normal_c = 130
emergency_c = 125
"""
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, "site.toml")
    problems = "\n".join(err.value.problems)
    assert "transformer.top_oil: no such point; did you mean 'xfmr.top_oil_c'?" in problems
    assert "transformer.load_pu: give exactly one of load_pu" in problems
    assert "transformer.bess_power_kw: is required with bess_setpoint" in problems
    assert "transformer.rated_kva: is required with a BESS" in problems
    assert "transformer.every_s: must be at least 60" in problems
    assert "transformer.thermal.exponent_n: must be a number" in problems
    lines = {p.split(": ")[1]: p.split(": ")[0] for p in err.value.problems}
    assert lines["transformer.every_s"].startswith("site.toml:")  # with the line of the key


def test_config_limits_and_history_points(state: Path) -> None:
    text = BASE.format(state=state) + """
[history]
points = ["xfmr.top_oil_c", "xfmr.load_pu"]
[transformer]
top_oil = "xfmr.top_oil_c"
load_pu = "xfmr.load_pu"
ambient = "xfmr.ambient_c"
[transformer.thermal]
preset = "no_such"
[transformer.limits]
normal_c = 130
emergency_c = 125
"""
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, "site.toml")
    problems = "\n".join(err.value.problems)
    assert "transformer.ambient: is not kept by [history] points" in problems
    assert "transformer.thermal.preset: unknown preset 'no_such'" in problems
    assert "transformer.limits.emergency_c: must be above normal_c (130 °C)" in problems


def test_config_parsed(state: Path) -> None:
    text = BASE.format(state=state) + TRANSFORMER.format(model=f'model = "m/{MANIFEST}"')
    cfg = config.parse(text, str(state / "site.toml")).transformer
    assert cfg is not None
    assert cfg.model == state / "m" / MANIFEST
    assert cfg.params == PRESETS["onan_distribution"]
    assert cfg.bess is not None and (cfg.bess.device, cfg.bess.point, cfg.bess_w_per_kw) == ("bess", "WSet", 1000.0)
    assert cfg.every_s == 900 and cfg.limits.normal_c == 120


async def test_daemon_runs_the_service_and_stops_cleanly(state: Path) -> None:
    from edgeagent.daemon import Daemon
    from tests.helpers import eventually

    cfg = config.parse(BASE.format(state=state) + TRANSFORMER.format(model=""), str(state / "site.toml"))
    daemon = Daemon(cfg, history_clock=lambda: T0 + 60.0)
    assert daemon.transformer is not None
    transformer = daemon.transformer
    run = asyncio.create_task(daemon.run())
    await eventually(lambda: transformer.runs >= 1, what="a transformer run")
    daemon.request_stop()
    await asyncio.wait_for(run, 10)
    assert transformer.skip_reason is not None and "missing in the history" in transformer.skip_reason
