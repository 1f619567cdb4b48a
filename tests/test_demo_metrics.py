"""The scenario metrics: export over the limit from a plant trace, reaction times from write records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.demo_metrics import TraceRow, Write, export_metrics, first_write_after, read_trace, trip_metrics


def trace(exports_kw: list[float], dt: float = 0.1) -> list[TraceRow]:
    return [TraceRow(100.0 + i * dt, -1000.0 * e) for i, e in enumerate(exports_kw)]


def test_a_step_over_the_limit_and_back() -> None:
    # 1 s under, 1.5 s over by 10 kW, then under for good
    rows = trace([20.0] * 10 + [40.0] * 15 + [29.0] * 10)
    m = export_metrics(rows, 30.0)
    assert m.max_export_kw == 40.0
    assert m.seconds_over_limit == pytest.approx(1.5)
    assert m.kwh_over_limit == pytest.approx(10.0 * 1.5 / 3600.0)
    assert m.response_s == pytest.approx(1.5)
    assert not m.over_at_end


def test_response_runs_until_export_is_under_for_good() -> None:
    rows = trace([35.0] * 5 + [25.0] * 5 + [31.0] * 5 + [20.0] * 5)
    m = export_metrics(rows, 30.0)
    assert m.response_s == pytest.approx(1.5)  # 1.0 (first over) -> 2.5 s (under for good)
    assert m.seconds_over_limit == pytest.approx(1.0)


def test_still_over_at_the_end_has_no_response() -> None:
    m = export_metrics(trace([20.0, 35.0, 36.0]), 30.0)
    assert m.over_at_end and m.response_s is None


def test_never_over_has_no_response_and_nothing_over() -> None:
    m = export_metrics(trace([10.0, 29.9, 30.0]), 30.0)
    assert m.response_s is None and m.seconds_over_limit == 0.0 and m.kwh_over_limit == 0.0


def test_back_under_on_the_last_row_counts() -> None:
    m = export_metrics(trace([40.0, 40.0, 20.0]), 30.0)
    assert m.response_s == pytest.approx(0.2)


@given(st.lists(st.floats(-50, 80, allow_nan=False), min_size=1, max_size=60), st.floats(0, 60))
def test_properties(exports: list[float], limit: float) -> None:
    m = export_metrics(trace(exports), limit)
    total_s = 0.1 * (len(exports) - 1)
    assert 0.0 <= m.seconds_over_limit <= total_s + 1e-9
    assert m.kwh_over_limit >= 0.0
    assert m.over_at_end == (exports[-1] > limit)
    ever_over = any(e > limit for e in exports)
    assert (m.response_s is None) == (not ever_over or m.over_at_end)
    if m.response_s is not None:
        assert m.seconds_over_limit <= m.response_s + 1e-9


def test_read_trace_skips_a_torn_last_line_only(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    good = [json.dumps({"t_mono": 1.0 + i, "meter_w": -1000.0 * i, "bess_temp_c": 25.0}) for i in range(3)]
    path.write_text("\n".join([*good, '{"t_mono": 9, "met']), encoding="utf-8")
    rows = read_trace(path)
    assert [r.export_kw for r in rows] == [0.0, 1.0, 2.0]
    path.write_text("\n".join([good[0], "garbage", good[1]]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"trace.jsonl:2"):
        read_trace(path)
    assert read_trace(tmp_path / "missing.jsonl") == []


def test_reaction_is_sample_to_acknowledged_safe_write() -> None:
    writes = [
        Write(10.00, "bess", "WSet", -5000.0, "controller:export_limit", "normal", True),
        Write(10.30, "bess", "WSet", 0.0, "interlock:hot", "x", False),  # refused by the device
        Write(10.35, "bess", "WSet", 0.0, "interlock:hot", "x", True),
        Write(10.50, "bess", "WSet", 0.0, "interlock:hot", "x", True),
    ]
    m = trip_metrics("hot", trip_t_sample=10.2, trip_t=10.25, cleared=True, writes=writes)
    assert m.reaction_s == pytest.approx(0.15) and m.cleared
    assert trip_metrics("other", 10.2, 10.25, False, writes).reaction_s is None
    found = first_write_after(writes, 9.0, origin="controller:export_limit", reason_prefix="fallback")
    assert found is None
