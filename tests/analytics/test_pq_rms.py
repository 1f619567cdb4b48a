"""Urms(1/2): steady-state values, time stamps, the fractional half cycle, chunking, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.analytics.pq_rms import UrmsBlock, UrmsHalfCycle


def sine(rate_hz: float, freq_hz: float, seconds: float, peak: float = 325.0, phase: float = 0.3) -> np.ndarray:
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    return peak * np.sin(2.0 * math.pi * freq_hz * t + phase)


def feed_in_pieces(meter: UrmsHalfCycle, x: np.ndarray, cuts: list[int]) -> UrmsBlock:
    blocks = [meter.feed(x[a:b]) for a, b in zip([0, *cuts], [*cuts, x.shape[0]], strict=True)]
    return UrmsBlock(*(np.concatenate([getattr(b, name) for b in blocks]) for name in ("t_s", "urms", "half_ms")))


@pytest.mark.parametrize(("rate_hz", "freq_hz"), [(10_000.0, 50.0), (12_000.0, 60.0), (12_800.0, 50.0)])
def test_pure_sine_gives_amplitude_over_root_two_when_cycles_hold_whole_samples(rate_hz: float, freq_hz: float) -> None:
    block = UrmsHalfCycle(rate_hz, freq_hz).feed(sine(rate_hz, freq_hz, 1.0))
    assert len(block) == 2 * freq_hz - 1  # one per half cycle, the first after one full cycle
    np.testing.assert_allclose(block.urms, 325.0 / math.sqrt(2.0), rtol=1e-13)


def test_pure_sine_stays_flat_when_the_half_cycle_is_fractional() -> None:
    block = UrmsHalfCycle(10_000.0, 60.0).feed(sine(10_000.0, 60.0, 1.0))  # 83.33 samples per half cycle
    assert len(block) == 119
    np.testing.assert_allclose(block.urms, 325.0 / math.sqrt(2.0), rtol=1e-4)


def test_time_stamps_are_window_ends_every_half_cycle_from_t0() -> None:
    block = UrmsHalfCycle(10_000.0, 60.0, t0_s=100.0).feed(sine(10_000.0, 60.0, 0.5))
    expected = 100.0 + np.arange(2, 61) / 120.0
    np.testing.assert_allclose(block.t_s, expected, rtol=0, atol=1e-12)


def test_urms_is_the_rms_of_its_two_half_cycles() -> None:
    x = np.random.default_rng(3).normal(0.0, 10.0, 7_000)
    block = UrmsHalfCycle(10_000.0, 60.0).feed(x)
    np.testing.assert_allclose(block.urms[1:] ** 2, 0.5 * (block.half_ms[:-1] + block.half_ms[1:]), rtol=1e-12)


def test_a_straddling_sample_is_shared_by_the_fraction_on_each_side() -> None:
    # 60 Hz at 10 kS/s: half cycle 1 spans samples [83.33, 166.67).  A step to 1.0 at sample 100 fills
    # samples 100..165 and two thirds of sample 166: (66 + 2/3) / 83.33 = 0.8.
    x = np.zeros(400)
    x[100:] = 1.0
    block = UrmsHalfCycle(10_000.0, 60.0).feed(x)
    assert block.half_ms[0] == pytest.approx(0.8, abs=1e-12)
    assert block.half_ms[1] == pytest.approx(1.0, abs=1e-12)
    assert block.urms[0] == pytest.approx(math.sqrt(0.4), abs=1e-12)


def test_constant_input_gives_exactly_that_value_at_a_fractional_rate() -> None:
    block = UrmsHalfCycle(7_919.3, 50.0).feed(np.full(20_000, -3.0))
    np.testing.assert_allclose(block.urms, 3.0, rtol=1e-12)


@given(rate_hz=st.sampled_from([10_000.0, 10_000.0 / 3.0, 7_919.3, 3_200.0]),
       freq_hz=st.sampled_from([50.0, 60.0]),
       cuts=st.lists(st.integers(0, 6_000), max_size=25),
       seed=st.integers(0, 2**32 - 1))
def test_any_chunking_gives_the_same_output(rate_hz: float, freq_hz: float, cuts: list[int], seed: int) -> None:
    x = np.random.default_rng(seed).normal(0.0, 100.0, 6_000)
    whole = UrmsHalfCycle(rate_hz, freq_hz).feed(x)
    pieces = feed_in_pieces(UrmsHalfCycle(rate_hz, freq_hz), x, sorted(cuts))
    np.testing.assert_array_equal(pieces.t_s, whole.t_s)
    np.testing.assert_allclose(pieces.urms, whole.urms, rtol=1e-12)
    np.testing.assert_allclose(pieces.half_ms, whole.half_ms, rtol=1e-12)


def test_empty_and_tiny_feeds_return_nothing_until_a_cycle_is_complete() -> None:
    meter = UrmsHalfCycle(10_000.0, 50.0)
    assert len(meter.feed([])) == 0
    assert len(meter.feed(np.ones(199))) == 0
    block = meter.feed([1.0])
    assert len(block) == 1 and block.t_s[0] == pytest.approx(0.02)
    assert meter.samples_seen == 200


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"rate_hz": 0.0}, "rate_hz"), ({"rate_hz": -10_000.0}, "rate_hz"), ({"rate_hz": math.nan}, "rate_hz"),
    ({"rate_hz": 500.0}, "rate_hz"), ({"nominal_hz": 55.0}, "nominal_hz"), ({"t0_s": math.inf}, "t0_s"),
])
def test_invalid_parameters_name_the_parameter(kwargs: dict[str, float], name: str) -> None:
    args = {"rate_hz": 10_000.0, "nominal_hz": 50.0, "t0_s": 0.0} | kwargs
    with pytest.raises(ValueError, match=name):
        UrmsHalfCycle(args["rate_hz"], args["nominal_hz"], t0_s=args["t0_s"])


def test_bad_samples_are_refused_with_their_position() -> None:
    meter = UrmsHalfCycle(10_000.0, 50.0)
    meter.feed(np.ones(50))
    x = np.ones(10)
    x[4] = math.nan
    with pytest.raises(ValueError, match="sample 54 is not finite"):
        meter.feed(x)
    with pytest.raises(ValueError, match="one-dimensional"):
        meter.feed(np.ones((2, 3)))
