"""OPC UA values and status codes ↔ the process image's values and qualities.

Quality mapping (the decision, and why):
- Good* → GOOD.
- UncertainLastUsableValue → STALE: the server says the source stopped updating and this is the
  last value it had, which is exactly what STALE means here.
- any other Uncertain* → BAD, the value kept for diagnosis and the status name as reason. An
  interlock acts only on GOOD values (principle 2: fail safe), and "sensor not accurate" or
  "engineering units exceeded" is not a value to trip or not trip a transformer on. Operators still
  see the number and the reason.
- Bad* → BAD, no value, the status name as reason (`BadSensorFailure`, `BadNodeIdUnknown`, …).
- The server gone is not a status code: the adapter marks every point STALE.
"""

from __future__ import annotations

import math
from typing import Any

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from edgeagent.image import Quality

_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


class WriteValueError(ValueError):
    """A command value that the node's data type cannot hold."""


def status_name(code: ua.StatusCode | None) -> str:
    """The code's symbolic name without its info bits (`BadSensorFailure`), or its hex value if unknown."""
    if code is None:
        return "Good"
    name = ua.StatusCode(ua.UInt32(code.value & 0xFFFF0000)).name
    return name if name not in ("Good", "Uncertain", "Bad") or code.value & 0x3FFF0000 == 0 \
        else f"{name} (0x{code.value:08X})"


def quality_of(code: ua.StatusCode | None) -> tuple[Quality, str]:
    """(quality, reason) for a DataValue's status code; see the module docstring."""
    if code is None or code.is_good():
        return Quality.GOOD, ""
    name = status_name(code)
    if code.is_uncertain():
        if code.value & 0xFFFF0000 == StatusCodes.UncertainLastUsableValue:
            return Quality.STALE, name
        return Quality.BAD, name
    return Quality.BAD, name


def sample_value(code: ua.StatusCode | None, raw: Any) -> tuple[float | str | None, Quality, str]:
    """(value, quality, reason) for a data change: numbers and text are kept, anything else is BAD."""
    quality, reason = quality_of(code)
    if quality is Quality.BAD and not (code is not None and code.is_uncertain()):
        return None, quality, reason
    if isinstance(raw, bool):
        value: float | str | None = 1.0 if raw else 0.0
    elif isinstance(raw, int | float):
        value = float(raw)
        if not math.isfinite(value):
            return None, Quality.BAD, "not a number" if math.isnan(value) else "infinite value"
    elif isinstance(raw, str):
        value = raw
    elif raw is None:
        return None, Quality.BAD, reason or "no value (null)"
    else:
        return None, Quality.BAD, f"unsupported value type {type(raw).__name__} (only scalars are read)"
    return value, quality, reason


def to_variant(value: float, vtype: ua.VariantType) -> ua.Variant:
    """The command value as the node's data type. Integers are rounded to the nearest whole number
    (a setpoint of 12.4 kW on an Int16 node is 12); a value out of the type's range is refused."""
    if not math.isfinite(value):
        raise WriteValueError(f"cannot write {value} to a {vtype.name} node")
    if vtype is ua.VariantType.Boolean:
        if value not in (0.0, 1.0):
            raise WriteValueError(f"a Boolean node takes 0 or 1, not {value:g}")
        return ua.Variant(value == 1.0, vtype)
    if vtype in _INT_RANGES:
        low, high = _INT_RANGES[vtype]
        whole = round(value)
        if not low <= whole <= high:
            raise WriteValueError(f"{value:g} is outside the range of {vtype.name} ({low}..{high})")
        return ua.Variant(whole, vtype)
    if vtype is ua.VariantType.Float:
        if abs(value) > _FLOAT32_MAX:
            raise WriteValueError(f"{value:g} is outside the range of Float")
        return ua.Variant(value, vtype)
    if vtype is ua.VariantType.Double:
        return ua.Variant(value, vtype)
    raise WriteValueError(f"the node's data type is {vtype.name}, not a number: refusing to write {value:g}")
