"""The disturbance generator (hil.waveforms): reproducibility, parameter ranges, exact ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.waveforms import HARSH, LABELS, Feeder, FeederEvent, Generator, Label, Options, to_arrays

RATE_HZ = 10_000.0
AMPLITUDE_LABELS = (Label.SAG, Label.SWELL, Label.INTERRUPTION)


def undisturbed(window_params: dict[str, float], t_s: np.ndarray, jump: np.ndarray | float = 0.0) -> np.ndarray:
    theta = 2.0 * math.pi * window_params["freq_hz"] * t_s + window_params["phase_rad"] + jump
    return np.sin(theta)


def times(n: int) -> np.ndarray:
    return np.arange(n) / RATE_HZ


def test_the_same_seed_gives_the_same_windows_and_another_seed_does_not() -> None:
    first = Generator(7, options=HARSH).windows(3)
    again = Generator(7, options=HARSH).windows(3)
    other = Generator(8, options=HARSH).windows(3)
    assert [w.label for w in first] == list(LABELS) * 3
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)
        assert (a.onset_s, a.duration_s, a.residual_pu, dict(a.params)) == (b.onset_s, b.duration_s, b.residual_pu,
                                                                           dict(b.params))
        assert not np.array_equal(a.samples, c.samples)


def test_windows_are_read_only_and_carry_their_setting() -> None:
    window = Generator(1, rate_hz=12_800.0, nominal_hz=60.0, cycles=12).window("sag")
    assert window.samples.shape == (2_560,) and window.rate_hz == 12_800.0 and window.nominal_hz == 60.0
    with pytest.raises(ValueError):
        window.samples[0] = 1.0


def test_each_labels_parameters_lie_in_their_ieee_1159_ranges() -> None:
    gen = Generator(3, options=HARSH)
    period_s, window_s = 0.02, 0.2
    for window in gen.windows(40):
        p, label = window.params, window.label
        assert abs(p["freq_hz"] - 50.0) <= 0.5 and abs(p["amplitude_pu"] - 1.0) <= 0.05
        assert 20.0 <= p["snr_db"] <= 40.0
        if label in AMPLITUDE_LABELS:
            assert window.onset_s is not None and window.duration_s is not None and window.residual_pu is not None
            low, high = {Label.SAG: (0.1, 0.9), Label.SWELL: (1.1, 1.8), Label.INTERRUPTION: (0.0, 0.1)}[label]
            assert low <= window.residual_pu < high
            assert 0.5 <= window.duration_s / period_s <= 30.0  # IEEE 1159 instantaneous
            assert period_s <= window.onset_s and window.onset_s + window.duration_s <= window_s - period_s
            assert abs(p["phase_jump_rad"]) <= math.pi / 4
        else:
            assert window.residual_pu is None
        if label is Label.NORMAL:
            assert window.onset_s is None and window.duration_s is None
        if label is Label.HARMONICS:
            assert 0.05 <= p["thd"] <= 0.20  # IEEE 1159: 0-20 %
            assert math.hypot(p["h3_pu"], p["h5_pu"], p["h7_pu"]) == pytest.approx(p["thd"], rel=1e-12)
        if label is Label.FLUCTUATION:
            assert 0.05 <= p["depth_pu"] <= 0.2 and 8.0 <= p["flicker_hz"] <= 25.0
        if label is Label.IMPULSIVE:
            assert 0.5 <= abs(p["peak_pu"]) <= 1.5 and 0.05e-3 <= p["rise_s"] <= 0.5e-3
            assert window.duration_s is not None and 1e-3 <= window.duration_s <= 3e-3
        if label is Label.NOTCH:
            assert 0.1 <= p["depth_pu"] <= 0.4
            assert window.duration_s is not None and 0.01 <= window.duration_s / period_s <= 0.05
        if label is Label.OSCILLATORY:
            assert 300.0 <= p["osc_hz"] <= 900.0 and 0.1 <= p["magnitude_pu"] <= 0.8
            assert 8e-3 <= p["tau_s"] <= 40e-3
            assert window.duration_s is not None and 0.5 <= window.duration_s / period_s <= 3.0


NO_NOISE = Options(freq_dev_hz=0.5, phase_jump_rad=math.pi / 4, amplitude_dev_pu=0.05)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), label=st.sampled_from(AMPLITUDE_LABELS))
def test_amplitude_event_truth_is_exact(seed: int, label: Label) -> None:
    window = Generator(seed, options=NO_NOISE).window(label)
    assert window.onset_s is not None and window.duration_s is not None and window.residual_pu is not None
    t = times(window.samples.shape[0])
    inside = (t >= window.onset_s) & (t < window.onset_s + window.duration_s)
    level = np.where(inside, window.residual_pu, window.params["amplitude_pu"])
    expected = level * undisturbed(dict(window.params), t, np.where(inside, window.params["phase_jump_rad"], 0.0))
    np.testing.assert_allclose(window.samples, expected, rtol=0, atol=1e-12)
    first = math.ceil(window.onset_s * RATE_HZ)
    assert inside[first] and not inside[first - 1]


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1))
def test_transient_truth_is_exact(seed: int) -> None:
    gen = Generator(seed, options=NO_NOISE)
    for label in (Label.IMPULSIVE, Label.OSCILLATORY, Label.NOTCH):
        window = gen.window(label)
        assert window.onset_s is not None and window.duration_s is not None
        t = times(window.samples.shape[0])
        extra = window.samples - window.params["amplitude_pu"] * undisturbed(dict(window.params), t)
        disturbed = np.abs(extra) > 1e-12
        assert not disturbed[t < window.onset_s].any()  # nothing before the onset
        assert disturbed.any()
        if label is Label.OSCILLATORY:  # nothing after its end either
            assert not disturbed[t >= window.onset_s + window.duration_s].any()
        if label is Label.NOTCH:  # the first notch lies within one notch width of the onset
            first = int(np.argmax(disturbed))
            assert t[first] < window.onset_s + window.duration_s
        if label is Label.IMPULSIVE:  # after the rise it halves every (duration - rise): half value at duration
            rise = window.params["rise_s"]
            since_peak = t - window.onset_s - rise
            decaying = (since_peak > 0.2e-3) & (since_peak < 10e-3)
            halvings = -np.log2(extra[decaying] / window.params["peak_pu"])
            np.testing.assert_allclose(rise + since_peak[decaying] / halvings, window.duration_s, rtol=1e-9)


def test_clean_windows_of_the_whole_window_labels_have_their_shape() -> None:
    gen = Generator(5)
    normal = gen.window(Label.NORMAL)
    t = times(normal.samples.shape[0])
    np.testing.assert_allclose(normal.samples, undisturbed(dict(normal.params), t), atol=1e-12)
    harmonics = gen.window(Label.HARMONICS)
    spectrum = np.abs(np.fft.rfft(harmonics.samples)) / (harmonics.samples.shape[0] / 2)  # 10 cycles: bin 10k
    for order in (3, 5, 7):
        assert spectrum[10 * order] == pytest.approx(harmonics.params[f"h{order}_pu"], abs=1e-9)
    flicker = gen.window(Label.FLUCTUATION)
    envelope = np.abs(flicker.samples) / np.maximum(np.abs(undisturbed(dict(flicker.params), t)), 1e-9)
    peaks = envelope[np.abs(undisturbed(dict(flicker.params), t)) > 0.5]
    assert peaks.max() - 1.0 == pytest.approx(flicker.params["depth_pu"], abs=0.01)


def test_to_arrays_stacks_windows_for_training() -> None:
    x, y = to_arrays(Generator(2).windows(2))
    assert x.shape == (18, 2_000) and x.dtype == np.float32
    assert y.tolist() == list(range(9)) * 2
    with pytest.raises(ValueError, match="differ in length"):
        to_arrays([Generator(1).window("sag"), Generator(1, cycles=12).window("sag")])


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"rate_hz": 1_000.0}, "rate_hz"), ({"nominal_hz": 500.0}, "nominal_hz"), ({"cycles": 3}, "cycles"),
    ({"options": "harsh"}, "options"),
])
def test_generator_refuses_bad_settings(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Generator(0, **kwargs)  # type: ignore[arg-type]


def test_options_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="snr_db_range"):
        Options(snr_db_range=(40.0, 20.0))
    with pytest.raises(ValueError, match="freq_dev_hz"):
        Options(freq_dev_hz=-1.0)
    with pytest.raises(ValueError, match="amplitude_dev_pu"):
        Options(amplitude_dev_pu=0.2)


# ---------------------------------------------------------------------------------------------- feeder

def test_feeder_events_are_exact_and_chunking_does_not_change_the_clean_signal() -> None:
    sag = FeederEvent(Label.SAG, 0.5031, 0.25, 0.6, phase_jump_rad=0.3)
    feeder = Feeder(nominal_rms_v=230.0, phase_rad=0.4, freq_drift_hz=0.2, freq_drift_period_s=3.0, events=(sag,))
    whole = feeder.signal(2.0)
    np.testing.assert_array_equal(np.concatenate(list(feeder.chunks(2.0, chunk_s=0.0173))), whole)
    t = times(whole.shape[0])
    theta = 2 * math.pi * 50.0 * t + 0.4 + 0.2 * 3.0 * (1 - np.cos(2 * math.pi * t / 3.0))
    inside = (t >= sag.start_s) & (t < sag.end_s)
    expected = math.sqrt(2.0) * 230.0 * np.where(inside, 0.6, 1.0) * np.sin(theta + np.where(inside, 0.3, 0.0))
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-9)


def test_feeder_noise_is_seeded_and_at_the_stated_snr() -> None:
    feeder = Feeder(snr_db=30.0)
    a, b, c = feeder.signal(1.0, seed=4), feeder.signal(1.0, seed=4), feeder.signal(1.0, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    noise = a - Feeder().signal(1.0)
    assert float(np.std(noise)) == pytest.approx(230.0 / 10 ** 1.5, rel=0.02)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"rate_hz": 0.0}, "rate_hz"), ({"rate_hz": 600.0}, "rate_hz"), ({"harmonics": ((1, 0.1),)}, "harmonics"),
    ({"snr_db": -3.0}, "snr_db"), ({"level_pu": math.nan}, "level_pu"),
    ({"events": (FeederEvent(Label.SAG, 1.0, 1.0, 0.5), FeederEvent(Label.SWELL, 1.5, 1.0, 1.2))}, "overlap"),
])
def test_feeder_refuses_bad_settings(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Feeder(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "residual", "name"), [
    (Label.NOTCH, 0.5, "kind"), (Label.SWELL, 0.9, "residual_pu"), (Label.INTERRUPTION, 0.3, "residual_pu"),
])
def test_feeder_events_must_match_their_kind(kind: Label, residual: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FeederEvent(kind, 1.0, 0.1, residual)
