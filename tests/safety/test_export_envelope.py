"""The export limit as part of the envelope: no other request (an approved recommendation) may
discharge the battery so far that export passes the limit; the limiter's own request is always in."""

from __future__ import annotations

from edgeagent import safety_wiring
from edgeagent.config_safety import SafetyConfig
from edgeagent.cycle import Command
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot
from edgeagent.safety.arbitration import Bound
from edgeagent.safety.export_limit import BessTarget, ExportLimitConfig

KEY = ("bess", "WSet")


def phases() -> safety_wiring.SafetyPhases:
    cfg = SafetyConfig(
        setpoints=(Bound("bess", "WSet", -100_000, 100_000),),
        export_limit=ExportLimitConfig(meter_point="pcc.W", static_kw=30.0, contract_min_kw=0.0,
                                       contract_max_kw=60.0, margin_kw=2.0,
                                       bess=BessTarget("bess", soc_point="bess.SoC", max_charge_w=50_000.0)),
    )
    return safety_wiring.build(cfg)


def snap(t: float, export_kw: float | None, soc: float | None = 50.0) -> Snapshot:
    img = ProcessImage([PointSpec("pcc.W", "W", 5.0), PointSpec("bess.SoC", "%", 5.0)])
    if export_kw is not None:
        img.write(Sample("pcc.W", -1000.0 * export_kw, "W", Quality.GOOD, t, 1e9 + t))
    else:
        img.write(Sample("pcc.W", None, "W", Quality.STALE, t, 1e9 + t, "no answer"))
    if soc is not None:
        img.write(Sample("bess.SoC", soc, "%", Quality.GOOD, t, 1e9 + t))
    return img.snapshot(t)


def cycle(p: safety_wiring.SafetyPhases, s: Snapshot, *extra: Command) -> tuple[Command, ...]:
    assert p.export_limit is not None and p.arbiter is not None
    return p.arbiter(s, (*p.export_limit(s, ()), *extra))


def test_a_discharge_may_only_use_the_headroom_under_the_limit() -> None:
    p = phases()
    assert p.arbiter is not None
    s = snap(0.0, 20.0)  # 20 kW export, target 28 kW: 8 kW of headroom
    cycle(p, s)
    assert p.arbiter.envelope(KEY, s) == (-100_000, 8000.0)
    wants = Command("bess", "WSet", 20_000.0, "decision:rec-1", "peak shave")
    (granted,) = [c for c in cycle(p, snap(0.1, 20.0), wants) if c.point == "WSet"]
    assert granted.value == 8000.0 and granted.origin == "decision:rec-1"


def test_over_the_limit_no_discharge_and_the_limiter_itself_is_never_clamped() -> None:
    p = phases()
    assert p.arbiter is not None and p.export_limit is not None
    for i in range(10):
        out = cycle(p, snap(i * 0.2, 40.0))
    _, hi = p.arbiter.envelope(KEY, snap(2.0, 40.0))
    own = p.export_limit.bess_request_w
    assert own < 0 and hi == own  # only as much charge as the limiter asks, or more
    assert [c.value for c in out if c.point == "WSet"] in ([], [own])


def test_without_a_meter_no_discharge_and_without_soc_no_charge() -> None:
    p = phases()
    assert p.arbiter is not None
    s = snap(0.0, None)
    cycle(p, s)
    assert p.arbiter.envelope(KEY, s)[1] <= 0.0
    s = snap(1.0, 10.0, soc=None)
    cycle(p, s)
    assert p.arbiter.envelope(KEY, s)[0] == 0.0
