"""Named interlock presets, so a site config can say `preset = "ieee1547/cat2/OV2"` instead of
typing numbers from a standard (and mistyping them).

Why presets cite their source: a limit without provenance cannot be reviewed. Every entry names the
standard, edition and table (or, for battery windows, says it is a typical datasheet value) so a
reviewer can check it and so the audit log can say where a limit came from.

Rules of use:
- IEEE 1547-2018 values are the standard's *default* trip settings. The standard allows the utility
  (area EPS operator) to adjust them within its stated ranges of adjustability; a site's
  interconnection agreement wins over these defaults. The times are *clearing times*, the latest
  moment by which the DER must have ceased to energize; the interlock's pickup delay plus the
  actuator's own response time must fit inside them, so a site may configure a shorter pickup.
- Battery windows are typical, conservative datasheet values. They must be checked against the
  cell manufacturer's datasheet of the installed cells; the BMS limits always take precedence.
- Transformer limits are the standards' suggested maximum temperatures for each loading level;
  they are ceilings, not targets.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from edgeagent.safety.interlocks import Condition

#: IEEE 1547 is written for 60 Hz systems.
IEEE1547_NOMINAL_HZ = 60.0


@dataclass(frozen=True, slots=True)
class Preset:
    """A limit from a standard or datasheet. `limit` is in `unit`: "pu" (of nominal voltage),
    "Hz" (at 60 Hz nominal), "°C" or "%"."""

    condition: Condition
    limit: float
    pickup_s: float
    unit: str
    source: str


_V_CAT = ("IEEE 1547-2018 Table {table} (Category {cat} voltage trip, default settings; "
          "adjustable within the stated ranges)")
_F_ALL = ("IEEE 1547-2018 Table 14 (frequency trip, default settings, identical for Categories I, II and III; "
          "adjustable within the stated ranges)")


def _ieee1547() -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    # (category, table, {function: (pu, clearing time s)})
    voltage = (
        # IEEE 1547-2018 Table 11, Category I: OV2 1.20/0.16, OV1 1.10/2.0, UV1 0.70/2.0, UV2 0.45/0.16
        ("1", "I", 11, {"OV2": (1.20, 0.16), "OV1": (1.10, 2.0), "UV1": (0.70, 2.0), "UV2": (0.45, 0.16)}),
        # IEEE 1547-2018 Table 12, Category II: OV2 1.20/0.16, OV1 1.10/2.0, UV1 0.70/10.0, UV2 0.45/0.16
        ("2", "II", 12, {"OV2": (1.20, 0.16), "OV1": (1.10, 2.0), "UV1": (0.70, 10.0), "UV2": (0.45, 0.16)}),
        # IEEE 1547-2018 Table 13, Category III: OV2 1.20/0.16, OV1 1.10/13.0, UV1 0.88/21.0, UV2 0.50/2.0
        ("3", "III", 13, {"OV2": (1.20, 0.16), "OV1": (1.10, 13.0), "UV1": (0.88, 21.0), "UV2": (0.50, 2.0)}),
    )
    # IEEE 1547-2018 Table 14, all categories: OF2 62.0/0.16, OF1 61.2/300, UF1 58.5/300, UF2 56.5/0.16
    frequency = {"OF2": (62.0, 0.16), "OF1": (61.2, 300.0), "UF1": (58.5, 300.0), "UF2": (56.5, 0.16)}
    for num, roman, table, functions in voltage:
        for fn, (pu, t_s) in functions.items():
            cond = Condition.ABOVE if fn.startswith("OV") else Condition.BELOW
            out[f"ieee1547/cat{num}/{fn}"] = Preset(cond, pu, t_s, "pu", _V_CAT.format(table=table, cat=roman))
        for fn, (hz, t_s) in frequency.items():
            cond = Condition.ABOVE if fn.startswith("OF") else Condition.BELOW
            out[f"ieee1547/cat{num}/{fn}"] = Preset(cond, hz, t_s, "Hz", _F_ALL)
    return out


_BATTERY_SOURCE = ("typical {chem} cell datasheet value ({what}); conservative, NOT from a standard: "
                   "check against the installed cell's datasheet, BMS limits take precedence")


def _battery() -> dict[str, Preset]:
    # Typical published cell datasheet windows (°C, % SoC). Temperature: "cell_temp_*" is the
    # discharge (overall operating) window, "charge_temp_*" the narrower charging window.
    # LFP (e.g. 280 Ah prismatic ESS cells): charge 0..45 °C, discharge -20..60 °C; SoC 5..95 %
    #   kept for cycle life (the cell tolerates 0..100 %).
    # NMC: charge 0..45 °C, discharge -20..60 °C; SoC 10..90 % (high SoC ages NMC faster).
    # Sodium-ion: wider low-temperature range, charge -10..45 °C, discharge -30..60 °C; SoC 0..100 %
    #   usable (the chemistry tolerates deep discharge, cells can even be stored at 0 V).
    windows = {
        "lfp": ("LFP", (-20.0, 60.0), (0.0, 45.0), (5.0, 95.0)),
        "nmc": ("NMC", (-20.0, 60.0), (0.0, 45.0), (10.0, 90.0)),
        "sodium_ion": ("sodium-ion", (-30.0, 60.0), (-10.0, 45.0), (0.0, 100.0)),
    }
    out: dict[str, Preset] = {}
    for key, (chem, (t_min, t_max), (c_min, c_max), (s_min, s_max)) in windows.items():
        def src(what: str, chem: str = chem) -> str:
            return _BATTERY_SOURCE.format(chem=chem, what=what)
        out[f"battery/{key}/cell_temp_min"] = Preset(Condition.BELOW, t_min, 0.0, "°C", src("discharge min"))
        out[f"battery/{key}/cell_temp_max"] = Preset(Condition.ABOVE, t_max, 0.0, "°C", src("discharge max"))
        out[f"battery/{key}/charge_temp_min"] = Preset(Condition.BELOW, c_min, 0.0, "°C", src("charge min"))
        out[f"battery/{key}/charge_temp_max"] = Preset(Condition.ABOVE, c_max, 0.0, "°C", src("charge max"))
        out[f"battery/{key}/soc_min"] = Preset(Condition.BELOW, s_min, 0.0, "%", src("SoC min"))
        out[f"battery/{key}/soc_max"] = Preset(Condition.ABOVE, s_max, 0.0, "%", src("SoC max"))
    return out


def _transformer() -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    # IEEE C57.91-2011 (Guide for loading mineral-oil-immersed transformers), "suggested limits of
    # temperature for loading above nameplate" (Table 7 in the 2011 edition, Table 3 in 1995):
    # insulated-conductor hottest spot / top oil: normal life expectancy 120/105 °C, planned loading
    # beyond nameplate 130/110 °C, long-time emergency 140/110 °C, short-time emergency 180/110 °C.
    # (110 °C is the continuous hot-spot reference for an ageing acceleration factor of 1.)
    c57 = "IEEE C57.91-2011 Table 7 (suggested temperature limits, loading above nameplate): {level}"
    for level, (hs, to) in {
        "normal": (120.0, 105.0),
        "planned_overload": (130.0, 110.0),
        "long_time_emergency": (140.0, 110.0),
        "short_time_emergency": (180.0, 110.0),
    }.items():
        out[f"transformer/c57_91/hot_spot/{level}"] = Preset(Condition.ABOVE, hs, 0.0, "°C", c57.format(level=level))
        out[f"transformer/c57_91/top_oil/{level}"] = Preset(Condition.ABOVE, to, 0.0, "°C", c57.format(level=level))
    # IEC 60076-7:2018 Table 2 (current and temperature limits for loading beyond nameplate),
    # medium and large power transformers: hot spot / top oil: normal cyclic 120/105 °C, long-time
    # emergency 140/115 °C, short-time emergency 160/115 °C. (Distribution transformers share the
    # normal-cyclic and long-time-emergency values; the table gives no short-time emergency
    # temperature for them, so the power-transformer value is the one offered here.)
    iec = "IEC 60076-7:2018 Table 2 (loading beyond nameplate, medium/large power transformers): {level}"
    for level, (hs, to) in {
        "normal_cyclic": (120.0, 105.0),
        "long_time_emergency": (140.0, 115.0),
        "short_time_emergency": (160.0, 115.0),
    }.items():
        out[f"transformer/iec60076_7/hot_spot/{level}"] = Preset(Condition.ABOVE, hs, 0.0, "°C",
                                                                 iec.format(level=level))
        out[f"transformer/iec60076_7/top_oil/{level}"] = Preset(Condition.ABOVE, to, 0.0, "°C",
                                                                iec.format(level=level))
    return out


PRESETS: Mapping[str, Preset] = MappingProxyType({**_ieee1547(), **_battery(), **_transformer()})


def get_preset(name: str) -> Preset:
    """The preset called `name`; an unknown name raises KeyError with the closest names."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown interlock preset {name!r}{hint}") from None


def resolve_preset(name: str, *, nominal_v: float | None, nominal_hz: float = 60.0) -> tuple[Condition, float, float]:
    """(condition, limit, pickup_s) of a preset in the units of the site's measurement.

    Voltage ("pu") presets are multiplied by `nominal_v` (volts); with `nominal_v=None` the limit
    stays in per unit, for points already measured in pu.

    Frequency ("Hz") presets come from IEEE 1547, a 60 Hz standard. For another nominal frequency
    they are scaled in per unit: limit × nominal_hz / 60 (62 Hz → 51.67 Hz, 56.5 Hz → 47.08 Hz at
    50 Hz). Why per unit and not the same deviation in Hz: a frequency excursion stresses machines
    and the grid in proportion to nominal frequency (as voltage limits are stated in pu), and the
    per-unit results land close to 50 Hz grid-code practice (EN 50549-1: 47.5 .. 51.5 Hz), whereas
    keeping the Hz deviation would put UF2 at 46.5 Hz, below any 50 Hz code. No standard defines
    IEEE 1547 settings at 50 Hz: a 50 Hz site should check against its own grid code.
    """
    preset = get_preset(name)
    limit = preset.limit
    if preset.unit == "pu" and nominal_v is not None:
        if not math.isfinite(nominal_v) or nominal_v <= 0:
            raise ValueError(f"nominal_v must be a positive number of volts, got {nominal_v!r}")
        limit = preset.limit * nominal_v
    elif preset.unit == "Hz":
        if not math.isfinite(nominal_hz) or nominal_hz <= 0:
            raise ValueError(f"nominal_hz must be a positive frequency, got {nominal_hz!r}")
        limit = preset.limit * nominal_hz / IEEE1547_NOMINAL_HZ
    return preset.condition, limit, preset.pickup_s
