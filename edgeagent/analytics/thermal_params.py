"""Thermal characteristics of an oil-immersed transformer, shared by the IEEE C57.91 and IEC 60076-7 models.

One `ThermalParams` drives both models in `thermal.py`, so the two can be compared on the same
transformer. The rated rises, R and the time constants mean the same in both standards; the load
exponents are kept per standard (IEEE n, m with the gradient going as K^(2m); IEC x, y with K^y),
because the standards tabulate different values (e.g. IEC y = 1.3 for ONAN power transformers
where IEEE's m = 0.8 gives 2m = 1.6).

The IEEE Clause 7 model has one top-oil time constant; we take it as k11·τo, the top-oil time
constant of the IEC model (IEC's k11 is the correction from the average-oil time constant τo to
the top-oil response), so the two models agree for a first-order top-oil response.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class CoolingMode(StrEnum):
    """Cooling mode in IEC letters (IEEE C57.91 names in comments)."""

    ONAN = "ONAN"  # IEEE "OA"
    ONAF = "ONAF"  # IEEE "FA"
    OF = "OF"  # non-directed forced oil, OFAF/OFWF (IEEE "non-directed FOA/FOW")
    OD = "OD"  # directed forced oil, ODAF/ODWF (IEEE "directed FOA/FOW")


class ThermalParamError(ValueError):
    """A bad thermal parameter; `field` names it (with the config path when read from config)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


_MAX_RISE_K = 200.0  # a typo guard: no oil-immersed transformer is rated for a rise anywhere near this
_MAX_EXPONENT = 3.0  # a typo guard: the standards use 0.8 … 2.0


@dataclass(frozen=True, slots=True)
class ThermalParams:
    """Rated thermal characteristics of one transformer (temperatures in K rise, times in minutes).

    - `top_oil_rise_rated_k`: top-oil rise over ambient at rated load (IEEE Δθ_TO,R, IEC Δθor).
    - `hot_spot_gradient_rated_k`: hot-spot to top-oil gradient at rated load (IEEE Δθ_H,R, IEC Δθhr = H·gr).
    - `loss_ratio`: R, load losses at rated load over no-load losses.
    - `exponent_n`, `exponent_m`: IEEE oil and winding exponents (gradient ∝ K^(2m)).
    - `exponent_x`, `exponent_y`: IEC oil and winding exponents (gradient ∝ K^y).
    - `oil_time_constant_min`: IEC τo (average oil); `winding_time_constant_min`: τw (IEEE τ_W).
    - `k11`, `k21`, `k22`: IEC thermal model constants (k21 ≥ 1; k21 = 1 removes the hot-spot overshoot).
    """

    cooling: CoolingMode
    top_oil_rise_rated_k: float
    hot_spot_gradient_rated_k: float
    loss_ratio: float
    exponent_n: float
    exponent_m: float
    exponent_x: float
    exponent_y: float
    oil_time_constant_min: float
    winding_time_constant_min: float
    k11: float
    k21: float
    k22: float

    def __post_init__(self) -> None:
        if not isinstance(self.cooling, CoolingMode):
            raise ThermalParamError("cooling", f"must be a CoolingMode (got {self.cooling!r})")
        for f in fields(self):
            if f.name != "cooling":
                _check_number(f.name, getattr(self, f.name))
        for name in ("top_oil_rise_rated_k", "hot_spot_gradient_rated_k"):
            value = getattr(self, name)
            if not 0 < value <= _MAX_RISE_K:
                raise ThermalParamError(name, f"must be in (0, {_MAX_RISE_K:g}] K (got {value!r})")
        for name in ("exponent_n", "exponent_m", "exponent_x", "exponent_y"):
            value = getattr(self, name)
            if not 0 < value <= _MAX_EXPONENT:
                raise ThermalParamError(name, f"must be in (0, {_MAX_EXPONENT:g}] (got {value!r})")
        for name in ("loss_ratio", "oil_time_constant_min", "winding_time_constant_min", "k11", "k22"):
            value = getattr(self, name)
            if not value > 0:
                raise ThermalParamError(name, f"must be > 0 (got {value!r})")
        if not self.k21 >= 1:
            raise ThermalParamError("k21", f"must be >= 1 (got {self.k21!r})")

    @property
    def top_oil_time_constant_min(self) -> float:
        """The top-oil time constant k11·τo (IEC 60076-7 8.2; used as IEEE τ_TO, see the module docstring)."""
        return self.k11 * self.oil_time_constant_min

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str) -> ThermalParams:
        """Build from a config table; `where` is its path (e.g. "transformer.t1.thermal") for messages.

        Keys are the field names, plus an optional `preset` (a name in `PRESETS`) whose values
        fill the keys not given. Without a preset every key is required. `cooling` is a string
        ("ONAN", "ONAF", "OF", "OD"). Every error is a `ThermalParamError` naming `where.key`.
        """
        if not isinstance(mapping, Mapping):
            raise ThermalParamError(where, f"expected a table of thermal parameters (got {type(mapping).__name__})")
        names = [f.name for f in fields(cls)]
        for key in mapping:
            if key != "preset" and key not in names:
                expected = ", ".join(names)
                raise ThermalParamError(f"{where}.{key}", f"unknown key; expected 'preset' or one of {expected}")
        values: dict[str, Any] = {}
        for name in names:
            if name not in mapping:
                continue
            raw = mapping[name]
            if name == "cooling":
                values[name] = _cooling_from(raw, f"{where}.{name}")
            elif isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ThermalParamError(f"{where}.{name}", f"must be a number (got {raw!r})")
            else:
                values[name] = float(raw)
        try:
            if "preset" in mapping:
                return replace(_preset_from(mapping["preset"], f"{where}.preset"), **values)
            missing = [n for n in names if n not in values]
            if missing:
                raise ThermalParamError(f"{where}.{missing[0]}", "missing (and no 'preset' to take it from)")
            return cls(**values)
        except ThermalParamError as exc:
            if exc.field.startswith(f"{where}."):
                raise
            raise ThermalParamError(f"{where}.{exc.field}", exc.problem) from None


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ThermalParamError(name, f"must be a number (got {value!r})")
    if not math.isfinite(value):
        raise ThermalParamError(name, f"must be finite (got {value!r})")


def _cooling_from(raw: object, where: str) -> CoolingMode:
    if isinstance(raw, str):
        try:
            return CoolingMode(raw.strip().upper())
        except ValueError:
            pass
    raise ThermalParamError(where, f"must be one of {', '.join(m.value for m in CoolingMode)} (got {raw!r})")


def _preset_from(raw: object, where: str) -> ThermalParams:
    if isinstance(raw, str) and raw in PRESETS:
        return PRESETS[raw]
    raise ThermalParamError(where, f"unknown preset {raw!r}; expected one of {', '.join(PRESETS)}")


# Named sets. Rises, R, time constants and k11/k21/k22 with x, y: IEC 60076-7:2005 Table 4, "Recommended thermal
# characteristics" (the same recommended values are tabulated in the 2018 edition). Each set's hot-spot at rated
# load and 20 °C ambient is 20 + Δθor + Δθhr = 98 °C, as that table states. n, m: IEEE C57.91-2011 Table 4,
# "Exponents used in temperature determination equations". The IEC table has no ONAF distribution transformer
# column, so there is no such preset; configure one explicitly.

# IEC 60076-7 Table 4, column "Distribution transformers, ONAN"; IEEE C57.91 Table 4 row ONAN (OA): n 0.8, m 0.8.
ONAN_DISTRIBUTION = ThermalParams(
    cooling=CoolingMode.ONAN, top_oil_rise_rated_k=55.0, hot_spot_gradient_rated_k=23.0, loss_ratio=5.0,
    exponent_n=0.8, exponent_m=0.8, exponent_x=0.8, exponent_y=1.6,
    oil_time_constant_min=180.0, winding_time_constant_min=4.0, k11=1.0, k21=1.0, k22=2.0,
)

# IEC 60076-7 Table 4, column "Medium and large power transformers, ONAN"; IEEE Table 4 row ONAN: n 0.8, m 0.8.
ONAN_POWER = ThermalParams(
    cooling=CoolingMode.ONAN, top_oil_rise_rated_k=52.0, hot_spot_gradient_rated_k=26.0, loss_ratio=6.0,
    exponent_n=0.8, exponent_m=0.8, exponent_x=0.8, exponent_y=1.3,
    oil_time_constant_min=210.0, winding_time_constant_min=10.0, k11=0.5, k21=2.0, k22=2.0,
)

# IEC 60076-7 Table 4, column "Medium and large power transformers, ONAN restricted" (restricted oil flow: k21 3.0).
ONAN_POWER_RESTRICTED = replace(ONAN_POWER, k21=3.0)

# IEC 60076-7 Table 4, column "Medium and large power transformers, ONAF"; IEEE Table 4 row ONAF (FA): n 0.9, m 0.8.
ONAF_POWER = ThermalParams(
    cooling=CoolingMode.ONAF, top_oil_rise_rated_k=52.0, hot_spot_gradient_rated_k=26.0, loss_ratio=6.0,
    exponent_n=0.9, exponent_m=0.8, exponent_x=0.8, exponent_y=1.3,
    oil_time_constant_min=150.0, winding_time_constant_min=7.0, k11=0.5, k21=2.0, k22=2.0,
)

# IEC 60076-7 Table 4, column "Medium and large power transformers, ONAF restricted" (restricted oil flow: k21 3.0).
ONAF_POWER_RESTRICTED = replace(ONAF_POWER, k21=3.0)

PRESETS: Mapping[str, ThermalParams] = MappingProxyType({
    "onan_distribution": ONAN_DISTRIBUTION,
    "onan_power": ONAN_POWER,
    "onan_power_restricted": ONAN_POWER_RESTRICTED,
    "onaf_power": ONAF_POWER,
    "onaf_power_restricted": ONAF_POWER_RESTRICTED,
})
