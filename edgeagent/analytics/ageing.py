"""Ageing of transformer insulation paper from its hot-spot temperature, and the loss of life it adds up to.

- Thermally upgraded paper: IEEE C57.91-2011 aging acceleration factor F_AA (Arrhenius, 15 000 K,
  reference hot spot 110 °C); IEC 60076-7 uses the same expression for upgraded paper.
- Non-upgraded (Kraft) paper: IEC 60076-7 relative ageing rate V = 2^((θh − 98)/6), reference
  98 °C, doubling every 6 K.

Equivalent ageing and loss of life sum a rate over intervals of given duration (IEEE C57.91 F_EQA,
IEC 60076-7 L = Σ V·t). Durations are in hours because insulation life is stated in hours.
Used with a `ThermalTrace` (zero-order hold), interval i is [time_min[i], time_min[i + 1]):
`loss_of_life(trace.hot_spot_c[:-1], np.diff(trace.time_min) / 60)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

NORMAL_INSULATION_LIFE_H = 180_000.0
"""Normal insulation life of thermally upgraded paper at a 110 °C hot spot, IEEE C57.91-2011 Table 2 (the
"interpretation of distribution transformer functional life test data" criterion, 180 000 h = 20.55 years;
the same table lists 65 000 h, 135 000 h and 150 000 h for other end-of-life criteria)."""

REFERENCE_UPGRADED_C = 110.0
"""Hot spot at which thermally upgraded paper ages at the normal rate (IEEE C57.91 F_AA = 1)."""

REFERENCE_NON_UPGRADED_C = 98.0
"""Hot spot at which non-upgraded paper ages at the normal rate (IEC 60076-7 V = 1)."""

_ARRHENIUS_B_K = 15_000.0
_MIN_HOT_SPOT_C = -273.0  # the equations' pole (they use 273, not 273.15)
_MAX_HOT_SPOT_C = 400.0  # well past the flash point of mineral oil: a value above this is a fault, not a temperature


class Paper(StrEnum):
    """Insulation paper kind, which decides the ageing equation."""

    THERMALLY_UPGRADED = "thermally_upgraded"
    NON_UPGRADED = "non_upgraded"


@dataclass(frozen=True, slots=True)
class LossOfLife:
    """Ageing over a period: F_EQA, the total duration, and the life used up (hours at the reference hot spot)."""

    paper: Paper
    equivalent_aging_factor: float
    duration_h: float
    loss_of_life_h: float
    normal_life_h: float
    loss_of_life_pct: float


@overload
def aging_acceleration_factor(hot_spot_c: float) -> float: ...
@overload
def aging_acceleration_factor(hot_spot_c: FloatArray) -> FloatArray: ...
def aging_acceleration_factor(hot_spot_c: float | FloatArray) -> float | FloatArray:
    """F_AA = exp(15000/383 − 15000/(θ_H + 273)), IEEE C57.91-2011 Clause 5, Eq. (2).

    1 at a 110 °C hot spot (383 K in the standard's rounding); the same expression is IEC 60076-7's
    relative ageing rate for thermally upgraded paper. Arrays are evaluated element-wise.
    """
    if isinstance(hot_spot_c, np.ndarray):
        theta = _checked_array("hot_spot_c", hot_spot_c)
        return np.exp(_ARRHENIUS_B_K / (REFERENCE_UPGRADED_C + 273) - _ARRHENIUS_B_K / (theta + 273))
    theta_c = _checked_scalar("hot_spot_c", hot_spot_c)
    return math.exp(_ARRHENIUS_B_K / (REFERENCE_UPGRADED_C + 273) - _ARRHENIUS_B_K / (theta_c + 273))


@overload
def relative_ageing_rate(hot_spot_c: float, paper: Paper) -> float: ...
@overload
def relative_ageing_rate(hot_spot_c: FloatArray, paper: Paper) -> FloatArray: ...
def relative_ageing_rate(hot_spot_c: float | FloatArray, paper: Paper) -> float | FloatArray:
    """Relative ageing rate V, IEC 60076-7 clause 6 (Eq. (2) and (3) of the 2005 edition).

    Non-upgraded paper: V = 2^((θh − 98)/6). Thermally upgraded paper:
    V = exp(15000/(110 + 273) − 15000/(θh + 273)), the IEEE F_AA.
    """
    if paper is Paper.THERMALLY_UPGRADED:
        return aging_acceleration_factor(hot_spot_c)
    if paper is not Paper.NON_UPGRADED:
        raise ValueError(f"paper: must be a Paper (got {paper!r})")
    if isinstance(hot_spot_c, np.ndarray):
        theta = _checked_array("hot_spot_c", hot_spot_c)
        return np.exp2((theta - REFERENCE_NON_UPGRADED_C) / 6.0)
    return float(2.0 ** ((_checked_scalar("hot_spot_c", hot_spot_c) - REFERENCE_NON_UPGRADED_C) / 6.0))


def equivalent_aging_factor(hot_spot_c: ArrayLike, duration_h: ArrayLike,
                            paper: Paper = Paper.THERMALLY_UPGRADED) -> float:
    """F_EQA = Σ F_AA,n · Δt_n / Σ Δt_n, IEEE C57.91-2011 Clause 5, Eq. (3).

    `hot_spot_c[n]` is the hot spot during an interval of `duration_h[n]` hours. With
    `Paper.NON_UPGRADED` the rate is IEC's V (reference 98 °C) instead of F_AA.
    """
    theta, durations = _checked_series(hot_spot_c, duration_h)
    rates = relative_ageing_rate(theta, paper)
    return float(np.dot(rates, durations) / durations.sum())


def loss_of_life(hot_spot_c: ArrayLike, duration_h: ArrayLike, paper: Paper = Paper.THERMALLY_UPGRADED,
                 normal_life_h: float | None = None) -> LossOfLife:
    """Life used up over the intervals, in hours at the reference hot spot and in percent of normal life.

    Hours: F_EQA · Σ Δt = Σ V_n · Δt_n (IEC 60076-7 clause 6, L = Σ V·t). Percent:
    F_EQA · t · 100 / normal insulation life (IEEE C57.91-2011 Clause 5, Eq. (4)). The normal life
    defaults to `NORMAL_INSULATION_LIFE_H` for thermally upgraded paper; for non-upgraded paper
    (98 °C reference) neither standard's 180 000 h figure applies, so it must be given.
    """
    if normal_life_h is None:
        if paper is not Paper.THERMALLY_UPGRADED:
            raise ValueError("normal_life_h: required for non-upgraded paper (the 180 000 h normal life is "
                             "IEEE's figure for thermally upgraded paper at 110 °C)")
        normal_life_h = NORMAL_INSULATION_LIFE_H
    if not (math.isfinite(normal_life_h) and normal_life_h > 0):
        raise ValueError(f"normal_life_h: must be finite and > 0 (got {normal_life_h!r})")
    theta, durations = _checked_series(hot_spot_c, duration_h)
    total_h = float(durations.sum())
    f_eqa = float(np.dot(relative_ageing_rate(theta, paper), durations) / total_h)
    lost_h = f_eqa * total_h
    return LossOfLife(paper, f_eqa, total_h, lost_h, normal_life_h, 100.0 * lost_h / normal_life_h)


def _checked_scalar(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name}: must be a number (got {value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite (got {value!r})")
    if not _MIN_HOT_SPOT_C < value <= _MAX_HOT_SPOT_C:
        raise ValueError(f"{name}: {value!r} °C is outside ({_MIN_HOT_SPOT_C:g}, {_MAX_HOT_SPOT_C:g}] °C")
    return value


def _checked_array(name: str, raw: ArrayLike) -> FloatArray:
    try:
        array = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not an array of numbers ({exc})") from None
    bad = ~np.isfinite(array) | (array <= _MIN_HOT_SPOT_C) | (array > _MAX_HOT_SPOT_C)
    if bad.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
        at = index[0] if len(index) == 1 else index
        raise ValueError(f"{name}: index {at} is {float(array[index])!r}, not a finite temperature in "
                         f"({_MIN_HOT_SPOT_C:g}, {_MAX_HOT_SPOT_C:g}] °C")
    return array


def _checked_series(hot_spot_c: ArrayLike, duration_h: ArrayLike) -> tuple[FloatArray, FloatArray]:
    theta = _checked_array("hot_spot_c", hot_spot_c)
    try:
        durations = np.asarray(duration_h, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"duration_h: not an array of numbers ({exc})") from None
    if theta.ndim != 1 or durations.ndim != 1:
        raise ValueError(f"hot_spot_c and duration_h: must be 1-D (got shapes {theta.shape} and {durations.shape})")
    if theta.size != durations.size:
        raise ValueError(f"hot_spot_c and duration_h: unequal lengths ({theta.size} and {durations.size})")
    bad = ~np.isfinite(durations) | (durations < 0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"duration_h: index {index} is {float(durations[index])!r}, not a finite duration >= 0")
    if not durations.sum() > 0:
        raise ValueError("duration_h: the durations add up to zero; there is no period to average over")
    return theta, durations
