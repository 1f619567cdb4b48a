"""Sag/swell/interruption detection on the Urms(1/2) stream, DC-bus sags and the thermal delta.

The signals come from ``hil.waveforms.Feeder``, an implementation independent of the detector,
whose events carry their exact onset, duration and residual.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.analytics.pq_events import (
    DcSagDetector,
    EventFlag,
    Ieee1159Category,
    PqDetector,
    PqEvent,
    PqKind,
    PqMonitor,
    PqSettings,
    Reference,
    thermal_delta_c,
)
from edgeagent.analytics.pq_rms import UrmsBlock
from hil.waveforms import Feeder, FeederEvent, Label

NOMINAL_V = 230.0
HARMONICS = ((3, 0.03), (5, 0.04), (7, 0.02))


def run(feeder: Feeder, seconds: float, monitor: PqMonitor | None = None, *, chunk_s: float = 0.1,
        seed: int = 0) -> tuple[list[PqEvent], PqMonitor]:
    monitor = monitor or PqMonitor(feeder.rate_hz, feeder.nominal_hz, NOMINAL_V)
    events = [event for chunk in feeder.chunks(seconds, chunk_s=chunk_s, seed=seed) for event in monitor.feed(chunk)]
    return events, monitor


# Durations (in cycles or seconds) kept more than a cycle away from the IEEE 1159 class limits,
# because the measured duration may differ from the truth by up to one cycle.  From 1.5 cycles on, one
# Urms(1/2) window always lies wholly inside the event (shorter ones: see the test after this one).
DURATION_CLASSES = {
    Ieee1159Category.INSTANTANEOUS: ("cycles", 1.5, 28.5),
    Ieee1159Category.MOMENTARY: ("cycles", 31.5, None),  # up to 3 s minus a cycle
    Ieee1159Category.TEMPORARY: ("s", 3.05, 6.0),
}
# Residuals 0.02 pu clear of the thresholds, so that noise cannot decide the kind.
RESIDUALS = {Label.SAG: (0.12, 0.88), Label.SWELL: (1.12, 1.8), Label.INTERRUPTION: (0.0, 0.08)}


@st.composite
def rms_events(draw: st.DrawFn) -> tuple[FeederEvent, float, Ieee1159Category]:
    nominal_hz = draw(st.sampled_from([50.0, 60.0]))
    label = draw(st.sampled_from([Label.SAG, Label.SWELL, Label.INTERRUPTION]))
    wanted = draw(st.sampled_from(list(DURATION_CLASSES)))
    unit, low, high = DURATION_CLASSES[wanted]
    if unit == "cycles":
        top = high if high is not None else 3.0 * nominal_hz - 1.5
        duration_s = draw(st.floats(low, top)) / nominal_hz
    else:
        duration_s = draw(st.floats(low, high))
    onset_s = 1.0 + draw(st.floats(0.0, 1.0, exclude_max=True)) / nominal_hz  # any phase of the cycle
    residual = draw(st.floats(*RESIDUALS[label]))
    # A phase jump distorts the half cycle it falls in; only from 3 cycles on do whole half cycles on the
    # event level always lie next to both edges (see pq_events' docstring).  Beyond about 20 degrees the
    # jump alone can pull a 0.97 pu Urms(1/2) under 0.9 pu: a second, real Urms(1/2) event.
    jump = draw(st.floats(-math.pi / 9, math.pi / 9)) if duration_s * nominal_hz >= 3.0 else 0.0
    expected = wanted
    if label is Label.INTERRUPTION and wanted is Ieee1159Category.INSTANTANEOUS:
        expected = Ieee1159Category.MOMENTARY  # IEEE 1159 has no instantaneous interruption
    return FeederEvent(label, onset_s, duration_s, residual, jump), nominal_hz, expected


@settings(max_examples=50)
@given(case=rms_events(), phase=st.floats(0.0, 2.0 * math.pi), level_pu=st.floats(0.97, 1.03),
       chunk_s=st.sampled_from([0.0137, 0.1, 1.0]), seed=st.integers(0, 1000))
def test_one_event_with_its_kind_category_onset_duration_and_residual(
        case: tuple[FeederEvent, float, Ieee1159Category], phase: float, level_pu: float, chunk_s: float,
        seed: int) -> None:
    truth, nominal_hz, category = case
    feeder = Feeder(nominal_hz=nominal_hz, phase_rad=phase, level_pu=level_pu, harmonics=HARMONICS[:2],
                    freq_offset_hz=0.1, snr_db=40.0, events=(truth,))
    events, monitor = run(feeder, truth.end_s + 1.0, chunk_s=chunk_s, seed=seed)
    assert len(events) == 1, events
    event = events[0]
    period_s = 1.0 / nominal_hz
    assert event.kind.value == truth.kind.value
    assert event.category is category
    assert abs(event.start_s - truth.start_s) <= 0.5 * period_s
    assert abs(event.duration_s - truth.duration_s) <= period_s
    assert event.residual_pu == pytest.approx(truth.residual_pu, abs=0.02)
    assert event.reference_v == NOMINAL_V and not event.flags
    assert monitor.detector.ongoing is None


@pytest.mark.parametrize(("label", "residual_pu", "kind"), [
    (Label.SAG, 0.3, PqKind.SAG), (Label.SWELL, 1.6, PqKind.SWELL), (Label.INTERRUPTION, 0.0, PqKind.INTERRUPTION),
])
@pytest.mark.parametrize("offset_cycles", [0.0, 0.25, 0.5, 0.75])
def test_a_deep_one_cycle_event_is_found_at_any_phase(label: Label, residual_pu: float, kind: PqKind,
                                                       offset_cycles: float) -> None:
    # No one-cycle window need lie inside it; its depth and the half cycles still give it away.
    feeder = Feeder(snr_db=40.0, events=(FeederEvent(label, 1.0 + offset_cycles / 50.0, 0.02, residual_pu),))
    events, _ = run(feeder, 2.0)
    assert len(events) == 1
    assert events[0].kind is kind
    assert events[0].start_s == pytest.approx(1.0 + offset_cycles / 50.0, abs=0.01)
    assert events[0].duration_s == pytest.approx(0.02, abs=0.02)
    assert events[0].residual_pu == pytest.approx(residual_pu, abs=0.02)


def test_a_sag_longer_than_a_minute_is_sustained() -> None:
    feeder = Feeder(rate_hz=3_200.0, snr_db=40.0, events=(FeederEvent(Label.SAG, 2.0, 65.0, 0.85),))
    events, _ = run(feeder, 69.0, chunk_s=5.0)
    assert [(e.kind, e.category) for e in events] == [(PqKind.SAG, Ieee1159Category.SUSTAINED)]
    assert events[0].duration_s == pytest.approx(65.0, abs=0.02)


def test_an_interruption_during_a_sag_makes_the_whole_event_an_interruption() -> None:
    feeder = Feeder(snr_db=40.0, events=(FeederEvent(Label.SAG, 1.0, 0.2, 0.5),
                                         FeederEvent(Label.INTERRUPTION, 1.2, 0.1, 0.02),
                                         FeederEvent(Label.SAG, 1.3, 0.2, 0.5)))
    events, _ = run(feeder, 3.0)
    assert len(events) == 1
    assert events[0].kind is PqKind.INTERRUPTION and events[0].category is Ieee1159Category.MOMENTARY
    assert events[0].start_s == pytest.approx(1.0, abs=0.01)
    assert events[0].duration_s == pytest.approx(0.5, abs=0.02)
    assert events[0].residual_pu == pytest.approx(0.02, abs=0.02)


def test_hysteresis_keeps_a_sag_open_until_the_voltage_is_back_above_threshold_plus_hysteresis() -> None:
    # 0.85 pu for 0.2 s, then 0.91 pu (above the 0.9 threshold, below 0.92) for 0.5 s.
    feeder = Feeder(snr_db=50.0, events=(FeederEvent(Label.SAG, 1.0, 0.2, 0.85),
                                         FeederEvent(Label.SAG, 1.2, 0.5, 0.91)))
    with_hysteresis, _ = run(feeder, 3.0)
    without, _ = run(feeder, 3.0, PqMonitor(10_000.0, 50.0, NOMINAL_V, PqSettings(hysteresis_pu=0.0)))
    assert [round(e.duration_s, 1) for e in with_hysteresis] == [0.7]
    assert [round(e.duration_s, 1) for e in without] == [0.2]


def test_a_swell_straight_into_a_sag_gives_two_events_in_order() -> None:
    feeder = Feeder(snr_db=40.0, events=(FeederEvent(Label.SWELL, 1.0, 0.3, 1.3),
                                         FeederEvent(Label.SAG, 1.3, 0.4, 0.6)))
    events, _ = run(feeder, 3.0)
    assert [e.kind for e in events] == [PqKind.SWELL, PqKind.SAG]
    assert [e.start_s for e in events] == pytest.approx([1.0, 1.3], abs=0.01)
    assert [e.residual_pu for e in events] == pytest.approx([1.3, 0.6], abs=0.02)


def test_the_detector_goes_straight_from_a_swell_into_a_sag_on_one_value() -> None:
    # Urms(1/2) values every half cycle with each half cycle at that level: the edges fall on the grid.
    urms = np.array([230.0] * 10 + [300.0] * 10 + [115.0] * 10 + [230.0] * 10)
    t_s = 0.02 + 0.01 * np.arange(40)
    events = PqDetector(NOMINAL_V).feed(UrmsBlock(t_s, urms, urms**2))
    assert [e.kind for e in events] == [PqKind.SWELL, PqKind.SAG]
    assert [e.start_s for e in events] == pytest.approx([0.11, 0.21], abs=1e-9)
    assert [e.duration_s for e in events] == pytest.approx([0.1, 0.1], abs=1e-9)
    assert [e.residual_pu for e in events] == pytest.approx([300.0 / 230.0, 0.5], abs=1e-9)


def test_a_block_with_non_finite_values_is_refused() -> None:
    block = UrmsBlock(np.array([0.02, 0.03]), np.array([230.0, math.nan]), np.array([230.0**2, 230.0**2]))
    with pytest.raises(ValueError, match="finite"):
        PqDetector(NOMINAL_V).feed(block)


def test_no_events_on_ten_minutes_of_clean_noisy_signal_with_frequency_drift_and_harmonics() -> None:
    feeder = Feeder(snr_db=30.0, harmonics=HARMONICS, freq_drift_hz=0.4, freq_drift_period_s=45.0,
                    level_drift_pu=0.04, level_drift_period_s=200.0)
    events, monitor = run(feeder, 600.0, chunk_s=10.0, seed=11)
    assert events == []
    assert monitor.detector.ongoing is None
    assert monitor.rms.samples_seen == 6_000_000


def test_the_sliding_reference_follows_a_slow_drift_without_events() -> None:
    # The level falls to 0.88 pu at t = 300 s and is back at 1.0 at 600 s: a sag against the nominal.
    feeder = Feeder(rate_hz=4_000.0, snr_db=40.0, level_drift_pu=-0.12, level_drift_period_s=1_200.0)
    sliding = PqMonitor(4_000.0, 50.0, NOMINAL_V, PqSettings(reference=Reference.SLIDING))
    nominal = PqMonitor(4_000.0, 50.0, NOMINAL_V)
    references = []
    sliding_events, nominal_events = [], []
    for chunk in feeder.chunks(600.0, chunk_s=10.0):
        sliding_events += sliding.feed(chunk)
        nominal_events += nominal.feed(chunk)
        references.append(sliding.detector.reference_v)
    assert sliding_events == [] and sliding.detector.ongoing is None
    assert [e.kind for e in nominal_events] == [PqKind.SAG]
    lowest = min(references) / NOMINAL_V
    assert 0.88 < lowest < 0.92  # it went down with the voltage (lagging a little)


def test_the_sliding_reference_is_frozen_during_an_event() -> None:
    feeder = Feeder(rate_hz=4_000.0, snr_db=40.0, events=(FeederEvent(Label.SAG, 5.0, 20.0, 0.5),))
    monitor = PqMonitor(4_000.0, 50.0, NOMINAL_V, PqSettings(reference=Reference.SLIDING))
    after_each_second = []
    events = []
    for chunk in feeder.chunks(27.0, chunk_s=1.0):
        events += monitor.feed(chunk)
        after_each_second.append((monitor.detector.reference_v, monitor.detector.ongoing))
    before = after_each_second[4][0]  # at t = 5 s, just before the sag
    assert before == pytest.approx(NOMINAL_V, rel=1e-3)
    for reference_v, ongoing in after_each_second[5:25]:  # up to t = 25 s
        assert ongoing is not None and ongoing.reference_v == before
        assert reference_v == before
    assert [(e.kind, e.reference_v) for e in events] == [(PqKind.SAG, before)]
    assert after_each_second[-1][0] != before  # following the voltage again


def test_the_ongoing_event_is_visible_before_it_ends() -> None:
    feeder = Feeder(snr_db=40.0, events=(FeederEvent(Label.SWELL, 1.0, 2.0, 1.25),))
    monitor = PqMonitor(10_000.0, 50.0, NOMINAL_V)
    chunks = feeder.chunks(4.0, chunk_s=0.5)
    assert [monitor.feed(next(chunks)) for _ in range(4)] == [[], [], [], []]  # up to t = 2 s
    live = monitor.detector.ongoing
    assert live is not None and live.kind is PqKind.SWELL
    assert live.start_s == pytest.approx(1.0, abs=0.02)
    assert live.duration_s == pytest.approx(1.0, abs=0.03)
    assert live.residual_pu == pytest.approx(1.25, abs=0.02)
    ended = [event for chunk in chunks for event in monitor.feed(chunk)]
    assert len(ended) == 1 and ended[0].duration_s == pytest.approx(2.0, abs=0.02)
    assert monitor.detector.ongoing is None


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"sag_pu": 1.2}, "sag_pu"), ({"swell_pu": 0.95}, "swell_pu"), ({"interruption_pu": 0.95}, "interruption_pu"),
    ({"interruption_pu": -0.1}, "interruption_pu"), ({"hysteresis_pu": 0.2}, "hysteresis_pu"),
    ({"hysteresis_pu": -0.01}, "hysteresis_pu"), ({"sliding_tau_s": 0.0}, "sliding_tau_s"),
    ({"reference": "sliding"}, "reference"),
])
def test_invalid_settings_name_the_parameter(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PqSettings(**kwargs)  # type: ignore[arg-type]


def test_invalid_detector_and_monitor_parameters_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="nominal_hz"):
        PqDetector(NOMINAL_V, 55.0)
    with pytest.raises(ValueError, match="nominal_v"):
        PqDetector(0.0)
    with pytest.raises(ValueError, match="rate_hz"):
        PqMonitor(0.0, 50.0, NOMINAL_V)
    with pytest.raises(ValueError, match="initial_reference_v"):
        PqDetector(NOMINAL_V, initial_reference_v=math.nan)


# ---------------------------------------------------------------------------------------------- DC bus

def feed_dc(detector: DcSagDetector, volts: list[float], dt_s: float = 0.1) -> list[PqEvent]:
    out = [detector.update(i * dt_s, v) for i, v in enumerate(volts)]
    return [event for event in out if event is not None]


def test_a_dc_sag_more_than_5_percent_under_nominal_is_flagged_high_entropy() -> None:
    detector = DcSagDetector(48.0)
    events = feed_dc(detector, [48.0] * 10 + [45.0] * 20 + [47.9] * 5)
    assert len(events) == 1
    event = events[0]
    assert event.kind is PqKind.DC_SAG and event.flags == frozenset({EventFlag.HIGH_ENTROPY})
    assert event.start_s == pytest.approx(1.0) and event.duration_s == pytest.approx(2.0)
    assert event.residual_pu == pytest.approx(45.0 / 48.0) and event.category is None


def test_a_dc_dip_of_4_percent_is_no_event_and_hysteresis_holds_a_sag_open() -> None:
    assert feed_dc(DcSagDetector(48.0), [48.0] * 5 + [46.1] * 10 + [48.0] * 5) == []
    detector = DcSagDetector(48.0)
    # 45.0 V starts it; 46.3 V (3.5 % under) is inside the hysteresis band; 46.6 V (2.9 % under) ends it.
    events = feed_dc(detector, [48.0] * 5 + [45.0] * 5 + [46.3] * 10 + [46.6] * 3)
    assert [round(e.duration_s, 6) for e in events] == [1.5]


def test_the_dc_sliding_reference_follows_a_slow_drift_and_freezes_in_a_sag() -> None:
    drift = [48.0 - 4.0 * i / 18_000 for i in range(18_001)]  # 48 V to 44 V over 30 min, a reading per 0.1 s
    nominal = DcSagDetector(48.0)
    assert feed_dc(nominal, drift) == []
    assert nominal.ongoing is not None  # against the nominal it is a sag (still going on)
    assert nominal.ongoing.start_s == pytest.approx(0.05 * 48.0 / 4.0 * 1_800.0, abs=0.2)
    sliding = DcSagDetector(48.0, reference=Reference.SLIDING)
    assert feed_dc(sliding, drift) == []
    assert sliding.reference_v == pytest.approx(44.0 + 4.0 / 1_800.0 * 60.0, abs=0.01)  # a ramp lags by rate * tau
    sliding.update(1_800.1, 40.0)
    ongoing = sliding.ongoing
    assert ongoing is not None and ongoing.flags == frozenset({EventFlag.HIGH_ENTROPY})
    frozen = sliding.reference_v
    sliding.update(1_800.2, 40.0)
    assert sliding.reference_v == frozen


def test_dc_bad_readings_are_refused() -> None:
    detector = DcSagDetector(48.0)
    detector.update(1.0, 48.0)
    with pytest.raises(ValueError, match="bus_v"):
        detector.update(2.0, math.nan)
    with pytest.raises(ValueError, match="t_s"):
        detector.update(1.0, 48.0)
    with pytest.raises(ValueError, match="sag_fraction"):
        DcSagDetector(48.0, sag_fraction=1.5)
    with pytest.raises(ValueError, match="hysteresis_fraction"):
        DcSagDetector(48.0, hysteresis_fraction=0.06)


@pytest.mark.parametrize(("hot_c", "cold_c", "expected"), [
    (80.5, 25.0, 55.5), (-5.0, 10.0, -15.0), (math.nan, 25.0, None), (80.0, None, None), (None, 1.0, None),
    (math.inf, 1.0, None),
])
def test_thermal_delta_only_when_both_temperatures_are_finite(hot_c: float | None, cold_c: float | None,
                                                              expected: float | None) -> None:
    assert thermal_delta_c(hot_c, cold_c) == expected
