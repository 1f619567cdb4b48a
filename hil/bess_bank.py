"""SunSpec model 803 (lithium-ion battery bank) of the plant's battery: one string, module temperatures.

The battery is one string of :data:`MODULES` modules.  The module temperatures come from the
physics (``PlantState.bess_temp_c`` is the average); the hottest module runs
:data:`TEMP_SPREAD_C` above the average and the coolest as much below, so
``ModTmpMax = avg + 1.5 °C`` and ``ModTmpMin = avg - 1.5 °C``.  With one string the string
voltage and current extremes equal the string's own values.

The string's event bits carry the BMS's own temperature flags (warning at
:data:`TEMP_WARNING_C`, alarm at :data:`TEMP_ALARM_C` on the hottest module), as a real BMS
would raise them; a controller should act on ``ModTmpMax`` itself, not wait for these.
"""

from __future__ import annotations

from hil.physics import PlantState
from hil.sunspec_image import SunSpecImage, fit_scale_factor

MODEL_ID = 803
STRING = "string[1]."
#: Repeating-group counts of model 803: one string.
GROUP_COUNTS = {MODEL_ID: {"NStr": 1}}
MODULES = 16
TEMP_SPREAD_C = 1.5
HOTTEST_MODULE = 9
COOLEST_MODULE = 2
TEMP_WARNING_C = 45.0
TEMP_ALARM_C = 60.0
# StrEvt1 bits (model 803 symbols).
OVER_TEMP_ALARM_BIT = 1 << 1
OVER_TEMP_WARNING_BIT = 1 << 2
# StrSt bits: STRING_ENABLED (0), CONTACTOR_STATUS (1, closed).
STRING_ENABLED_AND_CLOSED = 0b11


def setup_bank(image: SunSpecImage, rated_w: float, v_min: float, soh_pct: float) -> None:
    """Scale factors and the fixed points of model 803 (everything the physics does not move)."""
    image.set_raw(MODEL_ID, "NStrCon", 1)
    image.set_raw(MODEL_ID, "CellV_SF", -3)
    image.set_raw(MODEL_ID, "ModTmp_SF", -1)
    image.set_raw(MODEL_ID, "A_SF", fit_scale_factor(1.1 * rated_w / v_min, -1))
    for sf_point in ("SoH_SF", "SoC_SF", "V_SF"):
        image.set_raw(MODEL_ID, sf_point, -1)
    for point, raw in (
        ("ModTmpMaxStr", 1),
        ("ModTmpMaxMod", HOTTEST_MODULE),
        ("ModTmpMinStr", 1),
        ("ModTmpMinMod", COOLEST_MODULE),
        ("StrVMaxStr", 1),
        ("StrVMinStr", 1),
        ("StrAMaxStr", 1),
        ("StrAMinStr", 1),
        ("NCellBal", 0),
    ):
        image.set_raw(MODEL_ID, point, raw)
    for point, raw in (
        ("StrNMod", MODULES),
        ("StrSt", STRING_ENABLED_AND_CLOSED),
        ("StrConFail", 0),  # NO_FAILURE
        ("StrCellVMaxMod", 3),  # the same modules as model 802's CellVMaxMod / CellVMinMod
        ("StrCellVMinMod", 7),
        ("StrModTmpMaxMod", HOTTEST_MODULE),
        ("StrModTmpMinMod", COOLEST_MODULE),
        ("StrDisRsn", 0),  # NONE
        ("StrConSt", 1),  # contactor 0 closed
        ("StrEvt2", 0),
        ("StrEvtVnd1", 0),
        ("StrEvtVnd2", 0),
        ("StrSetEna", 1),  # ENABLE_STRING
        ("StrSetCon", 1),  # CONNECT_STRING
    ):
        image.set_raw(MODEL_ID, STRING + point, raw)
    image.set(MODEL_ID, STRING + "StrSoH", soh_pct)


def render_bank(image: SunSpecImage, state: PlantState, volts: float, cell_v: float) -> None:
    """Write the physics' battery state into model 803."""
    amps = state.bess_w / volts
    avg_c = state.bess_temp_c
    max_c, min_c = avg_c + TEMP_SPREAD_C, avg_c - TEMP_SPREAD_C
    for prefix in ("", STRING + "Str"):
        image.set(MODEL_ID, f"{prefix}ModTmpMax", max_c)
        image.set(MODEL_ID, f"{prefix}ModTmpMin", min_c)
        image.set(MODEL_ID, f"{prefix}ModTmpAvg", avg_c)
    for suffix in ("Max", "Min", "Avg"):
        image.set(MODEL_ID, f"StrV{suffix}", volts)
        image.set(MODEL_ID, f"StrA{suffix}", amps)
    image.set(MODEL_ID, STRING + "StrSoC", state.soc_pct)
    image.set(MODEL_ID, STRING + "StrA", amps)
    image.set(MODEL_ID, STRING + "StrCellVMax", cell_v + 0.006)
    image.set(MODEL_ID, STRING + "StrCellVMin", cell_v - 0.008)
    image.set(MODEL_ID, STRING + "StrCellVAvg", cell_v)
    events = (OVER_TEMP_WARNING_BIT if max_c >= TEMP_WARNING_C else 0) | (
        OVER_TEMP_ALARM_BIT if max_c >= TEMP_ALARM_C else 0
    )
    image.set_raw(MODEL_ID, STRING + "StrEvt1", events)
