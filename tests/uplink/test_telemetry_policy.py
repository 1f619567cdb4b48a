"""Telemetry by exception: deadbands, quality changes, integrity snapshots, rate cap."""

from __future__ import annotations

import itertools

from edgeagent.image import PointSpec, ProcessImage, Quality, Sample
from edgeagent.uplink.telemetry import TelemetryConfig, TelemetryPolicy


def image() -> ProcessImage:
    return ProcessImage([PointSpec("pcc.W", "W", 10.0), PointSpec("bess.SoC", "%", 10.0)])


def put(img: ProcessImage, point: str, value: float, t: float, quality: Quality = Quality.GOOD) -> None:
    img.write(Sample(point, value, "", quality, t, 1e9 + t, "" if quality is Quality.GOOD else "why"))


def names(batch: object) -> list[str]:
    assert batch is not None
    return [name for name, _ in batch.points]  # type: ignore[attr-defined]


def test_first_batch_is_an_integrity_snapshot_then_only_changes_beyond_deadband() -> None:
    img = image()
    put(img, "pcc.W", 1000.0, 0.0)
    put(img, "bess.SoC", 50.0, 0.0)
    policy = TelemetryPolicy(TelemetryConfig(integrity_s=100, min_interval_s=0, deadbands={"pcc.W": 50}))
    first = policy.select(img.snapshot(0.1), 0.1)
    assert first is not None and first.kind == "integrity" and names(first) == ["pcc.W", "bess.SoC"]
    put(img, "pcc.W", 1040.0, 1.0)  # inside the 50 W deadband
    assert policy.select(img.snapshot(1.1), 1.1) is None
    put(img, "pcc.W", 1060.0, 2.0)
    put(img, "bess.SoC", 50.5, 2.0)  # default deadband 0: any change counts
    batch = policy.select(img.snapshot(2.1), 2.1)
    assert batch is not None and batch.kind == "change" and names(batch) == ["pcc.W", "bess.SoC"]


def test_deadband_is_measured_from_the_last_reported_value_not_the_last_sample() -> None:
    img = image()
    put(img, "pcc.W", 1000.0, 0.0)
    policy = TelemetryPolicy(TelemetryConfig(integrity_s=100, min_interval_s=0, default_deadband=50))
    policy.select(img.snapshot(0.0), 0.0)
    for i, value in enumerate([1030.0, 1045.0, 1049.0, 1051.0], start=1):
        put(img, "pcc.W", value, float(i))
        batch = policy.select(img.snapshot(float(i)), float(i))
        assert (batch is not None) == (value == 1051.0)


def test_quality_change_is_always_reported_and_stale_values_are_not_news() -> None:
    img = image()
    put(img, "pcc.W", 1000.0, 0.0)
    policy = TelemetryPolicy(TelemetryConfig(integrity_s=100, min_interval_s=0, default_deadband=1e9))
    policy.select(img.snapshot(0.0), 0.0)
    img.mark_stale(["pcc.W"], "meter offline")
    batch = policy.select(img.snapshot(1.0), 1.0)
    assert batch is not None and names(batch) == ["pcc.W"]
    assert batch.points[0][1].quality is Quality.STALE
    assert policy.select(img.snapshot(2.0), 2.0) is None


def test_integrity_snapshot_repeats_and_rate_cap_holds() -> None:
    img = image()
    policy = TelemetryPolicy(TelemetryConfig(integrity_s=10, min_interval_s=2))
    kinds = []
    for t in range(0, 25):
        put(img, "pcc.W", float(t), float(t))  # changes every second
        batch = policy.select(img.snapshot(float(t)), float(t))
        kinds.append(batch.kind if batch else None)
    assert [t for t, k in enumerate(kinds) if k == "integrity"] == [0, 10, 20]
    changes = [t for t, k in enumerate(kinds) if k == "change"]
    assert all(b - a >= 2 for a, b in itertools.pairwise(changes))
    assert len(changes) >= 8
