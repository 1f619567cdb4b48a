"""pysunspec2's own Modbus client as an independent SunSpec client of the plant.

pysunspec2's client is synchronous (blocking sockets): call these through asyncio.to_thread
so that the plant's event loop keeps serving while they run.
"""

from __future__ import annotations

from typing import Any

from sunspec2.device import ModelError
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

TIMEOUT_S = 5.0


def _device(port: int) -> Any:
    return SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=TIMEOUT_S)


def _value(point: Any, strict: bool) -> Any:
    try:
        return point.cvalue
    except (ArithmeticError, ValueError, ModelError):
        if strict:
            raise
        return None  # e.g. a garbage scale factor of 32767


def read_models(port: int, *, strict: bool = True) -> dict[int, dict[str, Any]]:
    """Scan the device, read every model, return {model id: {point: scaled value}}.

    With ``strict`` a point pysunspec2 cannot decode fails the test; without, it reads as None.
    """
    device = _device(port)
    try:
        device.scan()
        out: dict[int, dict[str, Any]] = {}
        for model in device.model_list:
            assert not (strict and model.error_info), f"model {model.model_id}: {model.error_info}"
            out[int(model.model_id)] = {name: _value(point, strict) for name, point in model.points.items()}
        return out
    finally:
        device.disconnect()


def write_points(port: int, model_id: int, values: dict[str, float]) -> None:
    """Scan the device, set points (scaled values, the client applies the SF) and write them."""
    device = _device(port)
    try:
        device.scan()
        model = device.models[model_id][0]
        for name, value in values.items():
            model.points[name].cvalue = value
        model.write()
    finally:
        device.disconnect()
