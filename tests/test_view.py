"""The technician's view: export margin and active trips, in words."""

from __future__ import annotations

from edgeagent.image import PointSpec, ProcessImage, Quality, Sample
from edgeagent.safety.export_limit import BessTarget, ExportLimitConfig, ExportLimiter
from edgeagent.safety.interlocks import Condition, Interlocks, InterlockSpec, SafeSetpoint
from edgeagent.view import render, safety_lines


def limiter() -> ExportLimiter:
    return ExportLimiter(ExportLimitConfig(meter_point="pcc.W", static_kw=30.0, contract_min_kw=0.0,
                                           contract_max_kw=60.0, margin_kw=2.0,
                                           bess=BessTarget("bess", max_charge_w=50_000.0)))


def interlocks(latch: bool) -> Interlocks:
    return Interlocks([InterlockSpec(name="hot", points=("bess.T",), condition=Condition.ABOVE, limit=45.0,
                                     latch=latch, safe_action=(SafeSetpoint("bess", "WSet", 0.0),))])


def image(t: float, meter_w: float | None, temp_c: float, quality: Quality = Quality.GOOD) -> ProcessImage:
    img = ProcessImage([PointSpec(n, "", 5.0) for n in ("pcc.W", "bess.T", "bess.SoC")])
    img.write(Sample("pcc.W", meter_w, "W", quality, t, 1e9))
    img.write(Sample("bess.T", temp_c, "°C", Quality.GOOD, t, 1e9))
    img.write(Sample("bess.SoC", 50.0, "%", Quality.GOOD, t, 1e9))
    return img


def test_margin_and_no_trips() -> None:
    lim, ils = limiter(), interlocks(latch=False)
    snap = image(1.0, -25_000.0, 30.0).snapshot(1.0)
    lim(snap, ())
    ils(snap, ())
    lines = safety_lines(ils, lim)
    assert lines[0].split() == ["export", "25.00", "kW", "of", "30", "kW", "(static),", "margin", "5.00", "kW"]
    assert lines[1].strip() == "trips      none (1 interlocks armed)"


def test_over_the_limit_and_a_trip_are_shouted() -> None:
    lim, ils = limiter(), interlocks(latch=False)
    snap = image(1.0, -33_000.0, 50.0).snapshot(1.0)
    lim(snap, ())
    ils(snap, ())
    text = "\n".join(safety_lines(ils, lim))
    assert "margin  -3.00 kW  OVER THE LIMIT" in text and "TRIPPED hot" in text


def test_a_latched_trip_says_how_to_reset_it_and_fallback_is_named() -> None:
    lim, ils = limiter(), interlocks(latch=True)
    ils(image(1.0, -20_000.0, 50.0).snapshot(1.0), ())
    snap = image(2.0, None, 30.0, Quality.STALE).snapshot(2.0)
    ils(snap, ())
    lim(snap, ())
    lines = safety_lines(ils, lim)
    assert lines[0].strip().startswith("export     FALLBACK (meter_stale): limit 0 kW")
    assert "LATCHED hot (needs `edgeagent reset-trip hot`)" in lines[1]
    assert "LATCHED hot" in render(snap, "header", {"bess": "online"}, lines)
