"""Process image: quality, age, staleness by max age, history rings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.image import HistoryRing, PointSpec, ProcessImage, Quality, Sample


def image() -> ProcessImage:
    return ProcessImage([PointSpec("pcc.W", "W", 2.0), PointSpec("bess.SoC", "%", 5.0)], history_len=4)


def test_points_start_stale_with_a_reason() -> None:
    snap = image().snapshot()
    assert snap["pcc.W"].quality is Quality.STALE
    assert snap["pcc.W"].sample.reason == "no reading yet"
    assert snap.value("pcc.W") is None


def test_good_sample_turns_stale_after_max_age() -> None:
    img = image()
    img.write(Sample("pcc.W", 1500.0, "W", Quality.GOOD, 100.0, 1e9))
    fresh = img.snapshot(101.9)
    assert fresh["pcc.W"].good and fresh.value("pcc.W") == 1500.0
    assert fresh["pcc.W"].age_s == pytest.approx(1.9)
    old = img.snapshot(102.1)
    assert old["pcc.W"].quality is Quality.STALE and old.value("pcc.W") is None


def test_mark_stale_keeps_last_value_for_diagnosis() -> None:
    img = image()
    img.write(Sample("pcc.W", 42.0, "W", Quality.GOOD, 10.0, 1e9))
    img.mark_stale(["pcc.W"], "connection refused")
    sample = img.latest("pcc.W")
    assert (sample.value, sample.quality, sample.reason) == (42.0, Quality.STALE, "connection refused")


def test_unknown_point_is_refused() -> None:
    with pytest.raises(KeyError):
        image().write(Sample("nope", 1.0, "", Quality.GOOD, 0.0, 0.0))


def test_only_good_numeric_samples_enter_history() -> None:
    img = image()
    img.write(Sample("pcc.W", 1.0, "W", Quality.GOOD, 1.0, 1.0))
    img.write(Sample("pcc.W", None, "W", Quality.BAD, 2.0, 2.0, "not implemented"))
    img.write(Sample("pcc.W", 3.0, "W", Quality.GOOD, 3.0, 3.0))
    t, v = img.history("pcc.W").window()
    assert t.tolist() == [1.0, 3.0] and v.tolist() == [1.0, 3.0]


@given(st.integers(min_value=1, max_value=16), st.lists(st.floats(-1e6, 1e6), max_size=60))
def test_ring_keeps_the_latest_values_in_order(capacity: int, values: list[float]) -> None:
    ring = HistoryRing(capacity)
    for i, v in enumerate(values):
        ring.append(float(i), v)
    t, v = ring.window()
    expected = values[-capacity:] if values else []
    assert len(ring) == len(expected)
    np.testing.assert_array_equal(v, np.array(expected, dtype=float))
    assert list(t) == sorted(t)
