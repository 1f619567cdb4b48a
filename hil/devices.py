"""The three field devices: how the physics shows up in their SunSpec registers, and back.

Each device owns a :class:`~hil.sunspec_image.SunSpecImage`.  ``render`` writes the plant
state into it; Modbus writes arrive (decoded by pysunspec2) through ``handle_write``, which
validates them like a real device would and records when each control was last refreshed;
``tick`` runs once per physics step and implements the revert timers, in plant time.

Sign conventions (stated again where they are visible on the wire):

* meter (model 203) ``W``: positive = import from the grid, negative = export;
* battery (models 802 ``W``/``A``, 803 ``StrA`` and 704 ``WSet``): positive = discharge into
  the AC bus, negative = charge;
* inverter (model 103) ``W``: AC output, >= 0.
"""

from __future__ import annotations

import cmath
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

import hil
from hil import bess_bank, physics
from hil.physics import PlantParams, PlantState
from hil.sunspec_image import PointKey, Raw, SunSpecImage, fit_scale_factor

#: Share of the site load on phases A, B, C (a slightly unbalanced site).
LOAD_PHASE_SHARES = (0.345, 0.335, 0.320)
#: Per-phase voltage offsets relative to the mean phase voltage.
PHASE_VOLTAGE_OFFSETS = (0.002, -0.001, -0.001)
#: Inverter DC -> AC conversion efficiency.
INVERTER_EFFICIENCY = 0.975
#: Battery DC voltage at 0 % and 100 % SoC, and cells in series.
BESS_V_EMPTY = 680.0
BESS_V_FULL = 820.0
BESS_CELLS = 224
BESS_SOH_PCT = 98.5
SQRT3 = math.sqrt(3.0)


def _phase_voltages(voltage_v: float) -> list[float]:
    return [voltage_v * (1.0 + offset) for offset in PHASE_VOLTAGE_OFFSETS]


def _line_voltages(phase_v: list[float]) -> list[float]:
    """|Va - Vb|, |Vb - Vc|, |Vc - Va| for phasors 120 degrees apart."""
    phasors = [cmath.rect(v, -2.0 * math.pi * i / 3.0) for i, v in enumerate(phase_v)]
    return [abs(phasors[i] - phasors[(i + 1) % 3]) for i in range(3)]


class Device(ABC):
    """A SunSpec device of the plant."""

    name: ClassVar[str]
    MODELS: ClassVar[tuple[int, ...]]
    WRITABLE: ClassVar[frozenset[PointKey]] = frozenset()
    GROUP_COUNTS: ClassVar[Mapping[int, Mapping[str, int]]] = {}
    MODEL_NAME: ClassVar[str]

    def __init__(self, params: PlantParams) -> None:
        self.params = params
        self.image = SunSpecImage(self.MODELS, writable=self.WRITABLE, group_counts=self.GROUP_COUNTS)
        common = {
            "Mn": "edgeagent-hil",
            "Md": self.MODEL_NAME,
            "Opt": "simulated",
            "Vr": hil.__version__,
            "SN": f"HIL-{self.name.upper()}-{params.seed:05d}",
        }
        for point, text in common.items():
            self.image.set(1, point, text)
        self.image.set_raw(1, "DA", 1)

    def handle_write(self, changes: Mapping[PointKey, Raw], plant_t: float) -> bool:
        """Apply a decoded Modbus write; False (-> ILLEGAL_DATA_VALUE) if any value is invalid."""
        if not all(raw is not None and self.accepts(key, raw) for key, raw in changes.items()):
            return False
        self.image.apply(changes)
        self.written(frozenset(changes), plant_t)
        return True

    def accepts(self, key: PointKey, raw: int | str) -> bool:
        """Would the device accept this raw value for this point?"""
        return True

    def written(self, keys: frozenset[PointKey], plant_t: float) -> None:  # noqa: B027 - optional hook
        """Note that these points were written at plant time ``plant_t``."""

    def tick(self, plant_t: float) -> None:  # noqa: B027 - optional hook
        """Run the device's control timers for the step ending at ``plant_t``."""

    @abstractmethod
    def render(self, state: PlantState) -> None:
        """Write the plant state into the register image."""


def _is_enum01(raw: int | str) -> bool:
    return raw in (0, 1)


class MeterDevice(Device):
    """Revenue meter at the point of common coupling (models 1, 203).

    ``W`` is positive when the site imports from the grid and negative when it exports;
    ``TotWhImp``/``TotWhExp`` integrate the two directions.  PF is in percent and carries the
    sign of ``W``.
    """

    name = "meter"
    MODELS = (1, 203)
    MODEL_NAME = "HIL PCC meter 3ph wye"

    def __init__(self, params: PlantParams) -> None:
        super().__init__(params)
        site = params.site
        max_w = 1.3 * max(1200.0 * site.load_peak_kw + 1000.0 * site.bess_kw, site.inverter_w + 1000.0 * site.bess_kw)
        sf_w = fit_scale_factor(max_w, 0)
        image = self.image
        for sf_point in ("W_SF", "VA_SF", "VAR_SF"):
            image.set_raw(203, sf_point, sf_w)
        image.set_raw(203, "A_SF", fit_scale_factor(max_w / (0.8 * site.nominal_voltage_v), -2))
        image.set_raw(203, "V_SF", fit_scale_factor(1.3 * SQRT3 * site.nominal_voltage_v, -1))
        image.set_raw(203, "Hz_SF", fit_scale_factor(1.2 * site.nominal_frequency_hz, -2))
        image.set_raw(203, "PF_SF", -2)
        image.set_raw(203, "TotWh_SF", 0)
        image.set_raw(203, "Evt", 0)

    def render(self, state: PlantState) -> None:
        image = self.image
        generation_per_phase = (state.pv_w + state.bess_w) / 3.0
        w_ph = [state.load_w * share - generation_per_phase for share in LOAD_PHASE_SHARES]
        var_ph = [state.load_var * share for share in LOAD_PHASE_SHARES]
        v_ph = _phase_voltages(state.voltage_v)
        va_ph = [math.hypot(w, q) for w, q in zip(w_ph, var_ph, strict=True)]
        for suffix, w, q, v, va in zip(("phA", "phB", "phC"), w_ph, var_ph, v_ph, va_ph, strict=True):
            image.set(203, f"W{suffix}", w)
            image.set(203, f"VAR{suffix}", q)
            image.set(203, f"VA{suffix}", va)
            image.set(203, f"A{suffix}", va / v)
            image.set(203, f"PhV{suffix}", v)
            image.set(203, f"PF{suffix}", 100.0 * w / va if va > 0.0 else 100.0)
        total_va = sum(va_ph)
        image.set(203, "W", state.meter_w)
        image.set(203, "VA", total_va)
        image.set(203, "VAR", sum(var_ph))
        image.set(203, "PF", 100.0 * state.meter_w / total_va if total_va > 0.0 else 100.0)
        image.set(203, "A", sum(va / v for va, v in zip(va_ph, v_ph, strict=True)))
        image.set(203, "PhV", sum(v_ph) / 3.0)
        line_v = _line_voltages(v_ph)
        for name, v in zip(("PhVphAB", "PhVphBC", "PhVphCA"), line_v, strict=True):
            image.set(203, name, v)
        image.set(203, "PPV", sum(line_v) / 3.0)
        image.set(203, "Hz", state.frequency_hz)
        image.set(203, "TotWhImp", state.import_wh)
        image.set(203, "TotWhExp", state.export_wh)


class InverterDevice(Device):
    """PV inverter (models 1, 103, 120, 123) honouring an active-power limit.

    With ``WMaxLim_Ena`` = 1 the output follows min(available PV, ``WMaxLimPct`` % of
    ``WRtg``) with a first-order lag (``inverter_tau_s``).  If ``WMaxLimPct_RvrtTms`` > 0 and
    ``WMaxLimPct`` has not been written for that many plant seconds, the limit reverts to
    100 % and ``WMaxLim_Ena`` to 0, so a dead controller cannot leave the plant throttled.
    ``Conn`` = 0 takes the output to zero.
    """

    name = "inverter"
    MODELS = (1, 103, 120, 123)
    MODEL_NAME = "HIL PV inverter 3ph"
    WRITABLE = frozenset({(123, "Conn"), (123, "WMaxLimPct"), (123, "WMaxLimPct_RvrtTms"), (123, "WMaxLim_Ena")})

    def __init__(self, params: PlantParams) -> None:
        super().__init__(params)
        site = params.site
        rating = site.inverter_w
        image = self.image
        self._max_dc_w = 1.1 * rating / INVERTER_EFFICIENCY
        sf_w = fit_scale_factor(1.1 * rating, 0)
        for sf_point in ("W_SF", "VA_SF", "VAr_SF"):
            image.set_raw(103, sf_point, sf_w)
        image.set_raw(103, "A_SF", fit_scale_factor(1.1 * rating / (0.8 * site.nominal_voltage_v), -2))
        image.set_raw(103, "V_SF", fit_scale_factor(1.3 * SQRT3 * site.nominal_voltage_v, -1))
        image.set_raw(103, "Hz_SF", fit_scale_factor(1.2 * site.nominal_frequency_hz, -2))
        image.set_raw(103, "PF_SF", -2)
        image.set_raw(103, "WH_SF", 0)
        image.set_raw(103, "DCA_SF", fit_scale_factor(self._max_dc_w / 400.0, -2))
        image.set_raw(103, "DCV_SF", -1)
        image.set_raw(103, "DCW_SF", fit_scale_factor(self._max_dc_w, 0))
        image.set_raw(103, "Tmp_SF", -1)
        for point in ("Evt1", "Evt2"):
            image.set_raw(103, point, 0)
        # Nameplate (120): a PV inverter with +-0.8 PF capability.
        image.set_raw(120, "DERTyp", 4)
        for point in ("WRtg", "VARtg", "VArRtg"):
            image.set_raw(120, f"{point}_SF", fit_scale_factor(rating, 0, "uint16"))
        image.set(120, "WRtg", rating)
        image.set(120, "VARtg", rating)
        for quadrant, sign in (("Q1", 1.0), ("Q2", 1.0), ("Q3", -1.0), ("Q4", -1.0)):
            image.set(120, f"VArRtg{quadrant}", sign * 0.6 * rating)
        ampere_rating = 1.1 * rating / (3.0 * site.nominal_voltage_v)
        image.set_raw(120, "ARtg_SF", fit_scale_factor(ampere_rating, -1, "uint16"))
        image.set(120, "ARtg", ampere_rating)
        image.set_raw(120, "PFRtg_SF", -2)
        for quadrant, pf in (("Q1", 0.8), ("Q2", -0.8), ("Q3", -0.8), ("Q4", 0.8)):
            image.set(120, f"PFRtg{quadrant}", pf)
        # Immediate controls (123).
        image.set_raw(123, "WMaxLimPct_SF", -1)
        image.set_raw(123, "OutPFSet_SF", -3)
        image.set_raw(123, "Conn", 1)
        image.set(123, "WMaxLimPct", 100.0)
        image.set_raw(123, "WMaxLimPct_RvrtTms", 0)
        image.set_raw(123, "WMaxLim_Ena", 0)
        image.set(123, "OutPFSet", 1.0)
        image.set_raw(123, "OutPFSet_Ena", 0)
        image.set_raw(123, "VArPct_Ena", 0)
        self._limit_refreshed_at: float | None = None

    def accepts(self, key: PointKey, raw: int | str) -> bool:
        name = key[1]
        if name in ("Conn", "WMaxLim_Ena"):
            return _is_enum01(raw)
        if name == "WMaxLimPct":
            return isinstance(raw, int) and 0.0 <= raw * 10.0 ** self.image.scale_factor(123, name) <= 100.0
        return True

    def written(self, keys: frozenset[PointKey], plant_t: float) -> None:
        if (123, "WMaxLimPct") in keys:
            self._limit_refreshed_at = plant_t

    def tick(self, plant_t: float) -> None:
        revert_s = self.image.raw(123, "WMaxLimPct_RvrtTms")
        if self._limit_refreshed_at is None or not isinstance(revert_s, int) or revert_s <= 0:
            return
        if plant_t - self._limit_refreshed_at >= revert_s:
            self.image.set(123, "WMaxLimPct", 100.0)
            self.image.set_raw(123, "WMaxLim_Ena", 0)
            self._limit_refreshed_at = None

    @property
    def limit_pct(self) -> float:
        """The active power limit in force, % of WRtg (100 when disabled)."""
        limit = self.image.value(123, "WMaxLimPct")
        if self.image.raw(123, "WMaxLim_Ena") != 1 or limit is None:
            return 100.0
        return limit

    @property
    def connected(self) -> bool:
        return self.image.raw(123, "Conn") == 1

    def render(self, state: PlantState) -> None:
        image = self.image
        site = self.params.site
        v_ph = _phase_voltages(state.voltage_v)
        for suffix, v in zip(("A", "B", "C"), v_ph, strict=True):
            image.set(103, f"PhVph{suffix}", v)
            image.set(103, f"Aph{suffix}", state.pv_w / 3.0 / v)
        for name, v in zip(("PPVphAB", "PPVphBC", "PPVphCA"), _line_voltages(v_ph), strict=True):
            image.set(103, name, v)
        image.set(103, "A", sum(state.pv_w / 3.0 / v for v in v_ph))
        image.set(103, "W", state.pv_w)
        image.set(103, "VA", state.pv_w)
        image.set(103, "VAr", 0.0)
        image.set(103, "PF", 100.0)
        image.set(103, "Hz", state.frequency_hz)
        image.set(103, "WH", state.pv_wh)
        peak_dc = 1000.0 * site.pv_kwp * physics.PV_PERFORMANCE_RATIO
        dc_w = state.pv_w / INVERTER_EFFICIENCY
        dc_v = 0.0 if state.pv_available_w <= 0.0 else 560.0 + 80.0 * min(1.0, state.pv_available_w / peak_dc)
        image.set(103, "DCW", dc_w)
        image.set(103, "DCV", dc_v)
        image.set(103, "DCA", dc_w / dc_v if dc_v > 0.0 else 0.0)
        load = state.pv_w / site.inverter_w
        image.set(103, "TmpCab", 25.0 + 15.0 * load)
        image.set(103, "TmpSnk", 25.0 + 30.0 * load)
        limit_w = site.inverter_w * self.limit_pct / 100.0
        if not self.connected:
            st = 1  # OFF
        elif state.pv_available_w <= 0.0:
            st = 2  # SLEEPING
        elif limit_w < min(state.pv_available_w, site.inverter_w):
            st = 5  # THROTTLED
        else:
            st = 4  # MPPT
        image.set_raw(103, "St", st)


class BessDevice(Device):
    """Battery storage (models 1, 802, 803, 704) following an active-power setpoint.

    With ``WSetEna`` = 1 the battery follows ``WSet`` (W, positive = discharge; or
    ``WSetPct`` % of the rating when ``WSetMod`` = 0), clamped to ``WChaRteMax`` /
    ``WDisChaRteMax``, ramp-limited, and stopped at ``SoCMax`` / ``SoCMin``.  If
    ``WSetRvrtTms`` > 0 and neither ``WSet`` nor ``WSetPct`` has been written for that many
    plant seconds, ``WSet`` reverts to ``WSetRvrt`` (and ``WSetPct`` to ``WSetPctRvrt``);
    ``WSetRvrtRem`` counts the remaining seconds down.  Model 803 (one string) shows the module
    temperatures (see :mod:`hil.bess_bank`).
    """

    name = "bess"
    MODELS = (1, 802, bess_bank.MODEL_ID, 704)
    GROUP_COUNTS = bess_bank.GROUP_COUNTS
    MODEL_NAME = "HIL BESS Li-ion"
    WRITABLE = frozenset(
        (704, point) for point in ("WSetEna", "WSetMod", "WSet", "WSetRvrt", "WSetPct", "WSetPctRvrt", "WSetRvrtTms")
    )

    def __init__(self, params: PlantParams) -> None:
        super().__init__(params)
        site = params.site
        image = self.image
        rated_w = 1000.0 * site.bess_kw
        capacity_wh = 1000.0 * site.bess_kwh
        v_nominal = (BESS_V_EMPTY + BESS_V_FULL) / 2.0
        image.set_raw(802, "AHRtg_SF", fit_scale_factor(capacity_wh / v_nominal, 0, "uint16"))
        image.set_raw(802, "WHRtg_SF", fit_scale_factor(capacity_wh, 0, "uint16"))
        image.set_raw(802, "WChaDisChaMax_SF", fit_scale_factor(rated_w, 0, "uint16"))
        for sf_point in ("SoC_SF", "DoD_SF", "SoH_SF", "V_SF"):
            image.set_raw(802, sf_point, -1)
        image.set_raw(802, "CellV_SF", -3)
        image.set_raw(802, "A_SF", fit_scale_factor(1.1 * rated_w / BESS_V_EMPTY, -1))
        image.set_raw(802, "AMax_SF", fit_scale_factor(1.1 * rated_w / BESS_V_EMPTY, -1, "uint16"))
        image.set_raw(802, "W_SF", fit_scale_factor(1.1 * rated_w, 0))
        image.set(802, "AHRtg", capacity_wh / v_nominal)
        image.set(802, "WHRtg", capacity_wh)
        image.set(802, "WChaRteMax", rated_w)
        image.set(802, "WDisChaRteMax", rated_w)
        image.set(802, "SoCMax", site.soc_max_pct)
        image.set(802, "SoCMin", site.soc_min_pct)
        image.set(802, "SoH", BESS_SOH_PCT)
        image.set(802, "VMax", BESS_V_FULL)
        image.set(802, "VMin", BESS_V_EMPTY)
        image.set(802, "AChaMax", rated_w / BESS_V_EMPTY)
        image.set(802, "ADisChaMax", rated_w / BESS_V_EMPTY)
        for point, raw in (("LocRemCtl", 0), ("Typ", 4), ("State", 3), ("AlmRst", 0), ("SetOp", 1)):
            image.set_raw(802, point, raw)
        image.set_raw(802, "SetInvState", 3)
        for point in ("Evt1", "Evt2", "EvtVnd1", "EvtVnd2"):
            image.set_raw(802, point, 0)
        for point, raw in (("CellVMaxStr", 1), ("CellVMaxMod", 3), ("CellVMinStr", 1), ("CellVMinMod", 7)):
            image.set_raw(802, point, raw)
        bess_bank.setup_bank(image, rated_w, BESS_V_EMPTY, BESS_SOH_PCT)
        # DER AC controls (704): idle until a controller enables a setpoint.
        image.set_raw(704, "WSet_SF", 0)
        image.set_raw(704, "WSetPct_SF", 0)
        for point, raw in (("WSetEna", 0), ("WSetMod", 1), ("WSet", 0), ("WSetRvrt", 0), ("WSetPct", 0)):
            image.set_raw(704, point, raw)
        for point in ("WSetPctRvrt", "WSetRvrtTms", "WSetRvrtRem"):
            image.set_raw(704, point, 0)
        self._setpoint_refreshed_at: float | None = None
        self._revert_remaining_s = 0.0

    def accepts(self, key: PointKey, raw: int | str) -> bool:
        name = key[1]
        if name in ("WSetEna", "WSetMod"):
            return _is_enum01(raw)
        if name in ("WSetPct", "WSetPctRvrt"):
            return isinstance(raw, int) and -100.0 <= raw * 10.0 ** self.image.scale_factor(704, name) <= 100.0
        return True

    def written(self, keys: frozenset[PointKey], plant_t: float) -> None:
        if (704, "WSet") in keys or (704, "WSetPct") in keys:
            self._setpoint_refreshed_at = plant_t

    def tick(self, plant_t: float) -> None:
        revert_s = self.image.raw(704, "WSetRvrtTms")
        if self._setpoint_refreshed_at is None or not isinstance(revert_s, int) or revert_s <= 0:
            self._revert_remaining_s = 0.0
            return
        self._revert_remaining_s = revert_s - (plant_t - self._setpoint_refreshed_at)
        if self._revert_remaining_s <= 0.0:
            self.image.set_raw(704, "WSet", self.image.raw(704, "WSetRvrt"))
            self.image.set_raw(704, "WSetPct", self.image.raw(704, "WSetPctRvrt"))
            self._setpoint_refreshed_at = None
            self._revert_remaining_s = 0.0

    @property
    def setpoint_w(self) -> float:
        """The AC power the controls ask for (positive = discharge), before any limit."""
        if self.image.raw(704, "WSetEna") != 1:
            return 0.0
        if self.image.raw(704, "WSetMod") == 0:
            pct = self.image.value(704, "WSetPct") or 0.0
            return pct / 100.0 * 1000.0 * self.params.site.bess_kw
        return self.image.value(704, "WSet") or 0.0

    def render(self, state: PlantState) -> None:
        image = self.image
        site = self.params.site
        soc = state.soc_pct
        volts = BESS_V_EMPTY + (BESS_V_FULL - BESS_V_EMPTY) * soc / 100.0
        image.set(802, "SoC", soc)
        image.set(802, "DoD", 100.0 - soc)
        image.set(802, "W", state.bess_w)
        image.set(802, "V", volts)
        image.set(802, "A", state.bess_w / volts)
        cell = volts / BESS_CELLS
        image.set(802, "CellVAvg", cell)
        image.set(802, "CellVMax", cell + 0.006)
        image.set(802, "CellVMin", cell - 0.008)
        bess_bank.render_bank(image, state, volts, cell)
        image.set_raw(802, "NCyc", 150 + int(state.bess_discharged_wh / (1000.0 * site.bess_kwh)))
        image.set_raw(802, "Hb", int(state.t_s) % 65535)
        if state.bess_w > 1.0:
            cha_st = 3  # DISCHARGING
        elif state.bess_w < -1.0:
            cha_st = 4  # CHARGING
        elif soc >= site.soc_max_pct:
            cha_st = 5  # FULL
        elif soc <= site.soc_min_pct:
            cha_st = 2  # EMPTY
        else:
            cha_st = 6  # HOLDING
        image.set_raw(802, "ChaSt", cha_st)
        setpoint = self.setpoint_w
        blocked = (soc >= site.soc_max_pct and setpoint < 0.0) or (soc <= site.soc_min_pct and setpoint > 0.0)
        image.set_raw(802, "State", 5 if blocked else 3)  # SOC PROTECTION / CONNECTED
        image.set_raw(704, "WSetRvrtRem", math.ceil(max(self._revert_remaining_s, 0.0)))


def build_devices(params: PlantParams) -> tuple[MeterDevice, InverterDevice, BessDevice]:
    """The plant's devices, in the order of their ports (meter, inverter, bess)."""
    return MeterDevice(params), InverterDevice(params), BessDevice(params)
