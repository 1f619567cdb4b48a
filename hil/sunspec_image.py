"""SunSpec register images built from pysunspec2's own model definitions.

The plant is a test oracle for edgeagent's SunSpec decoder, so the register layout and the
encoding of every point come from pysunspec2 (the SunSpec Alliance's reference implementation)
and never from edgeagent: if both shared one decoder, a bug in it would be invisible.

An image is the register map of one device: ``SunS`` at the base address (40000), then each
model (ID, L, points), then the end model (0xFFFF, 0).  Points are addressed as
``(model_id, point_name)`` and set either as engineering values (scaled with the point's
scale factor, clamped to the point's type range) or as raw register values.

Points of nested groups are named ``Group.Point``; points of a *repeating* group (one with a
``count``, e.g. model 803's ``string`` group counted by ``NStr``) are named
``Group[i].Point`` with ``i`` from 1.  A repeating group counted by a point needs that point's
value before the layout exists: pass it in ``group_counts`` (``{803: {"NStr": 1}}``).  The
count is then fixed for the life of the image, as it is on a real device.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sunspec2.device as ss_device
import sunspec2.mb as ss_mb
import sunspec2.mdef as ss_mdef

SUNSPEC_BASE = 40000
SUNS_MARKER = (0x5375, 0x6E53)
END_MODEL_ID = 0xFFFF

#: A raw point value as pysunspec2 holds it: int for numeric types, str for strings,
#: None for "not implemented" (encoded with the type's SunSpec sentinel).
Raw = int | str | None
PointKey = tuple[int, str]

# Raw ranges per type that exclude the not-implemented sentinel, so a clamped value never
# reads back as "not implemented".
_RAW_RANGE: dict[str, tuple[int, int]] = {
    ss_mdef.TYPE_INT16: (-32767, 32767),
    ss_mdef.TYPE_UINT16: (0, 65534),
    ss_mdef.TYPE_COUNT: (0, 65534),
    ss_mdef.TYPE_ENUM16: (0, 65534),
    ss_mdef.TYPE_BITFIELD16: (0, 65534),
    ss_mdef.TYPE_SUNSSF: (-10, 10),
    ss_mdef.TYPE_INT32: (-(2**31) + 1, 2**31 - 1),
    ss_mdef.TYPE_UINT32: (0, 2**32 - 2),
    ss_mdef.TYPE_ENUM32: (0, 2**32 - 2),
    ss_mdef.TYPE_BITFIELD32: (0, 2**32 - 2),
}
# Accumulators roll over instead of saturating, like a real energy counter.
_ACC_MODULUS: dict[str, int] = {ss_mdef.TYPE_ACC16: 2**16, ss_mdef.TYPE_ACC32: 2**32, ss_mdef.TYPE_ACC64: 2**64}


class ImageError(Exception):
    """A point that does not exist, or a value that cannot be encoded."""


@dataclass(frozen=True)
class PointInfo:
    """Where a point lives in the image and how it may be accessed."""

    model_id: int
    name: str
    address: int
    size: int
    type: str
    writable: bool


def fit_scale_factor(max_abs: float, preferred: int, point_type: str = ss_mdef.TYPE_INT16) -> int:
    """Return the finest scale factor >= ``preferred`` at which ``max_abs`` still fits the type.

    Scale factors are chosen per plant size so that e.g. a 2 MW site does not overflow an
    int16 W register while a 10 kW site keeps watt resolution.
    """
    _low, high = _RAW_RANGE[point_type]
    sf = preferred
    while max_abs / 10.0**sf > high:
        sf += 1
    return sf


def _registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


def _flatten(group: Any, prefix: str) -> Iterable[tuple[str, Any, str | None]]:
    """Every point of a pysunspec2 group and its sub-groups: (flattened name, point, SF name).

    The SF name is flattened too: pysunspec2 looks a scale factor up in the point's own group
    first, then at the top of the model.
    """
    for name, point in group.points.items():
        sf = point.pdef.get(ss_mdef.SF)
        if isinstance(sf, str) and sf in group.points:
            sf = prefix + sf
        yield prefix + str(name), point, sf if isinstance(sf, str) else None
    for name, sub in group.groups.items():
        if isinstance(sub, list):
            for index, member in enumerate(sub, start=1):
                yield from _flatten(member, f"{prefix}{name}[{index}].")
        else:
            yield from _flatten(sub, f"{prefix}{name}.")


class SunSpecImage:
    """The register map of one SunSpec device, encoded by pysunspec2.

    ``writable`` names the points a Modbus client may write; every other register is
    read-only (the server answers writes to it with ILLEGAL_ADDRESS).  ``group_counts`` gives
    the values of the points that count repeating groups, per model.
    """

    def __init__(
        self,
        model_ids: Sequence[int],
        *,
        base: int = SUNSPEC_BASE,
        writable: Iterable[PointKey] = (),
        group_counts: Mapping[int, Mapping[str, int]] | None = None,
    ) -> None:
        if len(set(model_ids)) != len(model_ids):
            raise ImageError(f"duplicate model ids in {list(model_ids)}")
        counts = dict(group_counts or {})
        if set(counts) - set(model_ids):
            raise ImageError(f"group counts for models not in the image: {sorted(set(counts) - set(model_ids))}")
        self.base = base
        self.model_ids: tuple[int, ...] = tuple(model_ids)
        self._models: dict[int, Any] = {}
        self._model_addr: dict[int, int] = {}
        self._points: dict[PointKey, PointInfo] = {}
        self._objects: dict[PointKey, Any] = {}  # the pysunspec2 point behind each key
        self._sf_names: dict[PointKey, str] = {}  # flattened name of a point's scale-factor point
        self._fixed: dict[PointKey, int] = {}  # count points: their value is the layout
        writable_set = set(writable)
        addr = base + len(SUNS_MARKER)
        for mid in self.model_ids:
            model = self._build_model(mid, counts.get(mid, {}))
            self._models[mid] = model
            self._model_addr[mid] = addr
            for name, point, sf_name in _flatten(model, ""):
                access = point.pdef.get(ss_mdef.ACCESS, ss_mdef.ACCESS_R)
                key = (mid, name)
                if key in writable_set and access != ss_mdef.ACCESS_RW:
                    raise ImageError(f"point {mid}.{name} is read-only in the SunSpec model")
                self._points[key] = PointInfo(
                    model_id=mid,
                    name=name,
                    address=addr + int(point.offset),
                    size=int(point.len),
                    type=str(point.pdef[ss_mdef.TYPE]),
                    writable=key in writable_set,
                )
                self._objects[key] = point
                if sf_name is not None:
                    self._sf_names[key] = sf_name
            for name, value in counts.get(mid, {}).items():
                self._fixed[(mid, name)] = value
            addr += int(model.len)
        unknown = writable_set - set(self._points)
        if unknown:
            raise ImageError(f"unknown writable points: {sorted(unknown)}")
        self.end_address = addr
        self.size = addr + 2 - base

    @staticmethod
    def _build_model(model_id: int, counts: Mapping[str, int]) -> Any:
        """A pysunspec2 model with its repeating groups sized by ``counts``."""
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ImageError(f"count {model_id}.{name} must be an integer within 0..100, got {value!r}")
        try:
            model = ss_device.Model(model_id=model_id, data=dict(counts) or None)
        except ss_device.ModelError as exc:
            raise ImageError(f"model {model_id}: {str(exc).strip()} (give its value in group_counts)") from None
        if model.error_info:
            raise ImageError(f"model {model_id}: {model.error_info.strip()}")
        counting = {g.get(ss_mdef.COUNT) for g in model.gdef.get(ss_mdef.GROUPS, [])}
        wrong = sorted(set(counts) - counting)
        if wrong:
            raise ImageError(f"model {model_id}: {', '.join(wrong)} do(es) not count a repeating group")
        return model

    # -- layout -------------------------------------------------------------------------

    def point(self, model_id: int, name: str) -> PointInfo:
        """Return the layout of a point; ImageError if the device has no such point."""
        try:
            return self._points[(model_id, name)]
        except KeyError:
            raise ImageError(f"no point {model_id}.{name} in this image") from None

    def model_address(self, model_id: int) -> int:
        """Address of the model's ID register."""
        return self._model_addr[model_id]

    def header_offsets(self) -> frozenset[int]:
        """Offsets (from base) of the registers discovery depends on: SunS, each ID/L, the end model."""
        offsets = {0, 1, self.size - 2, self.size - 1}
        for addr in self._model_addr.values():
            offsets.update((addr - self.base, addr - self.base + 1))
        return frozenset(offsets)

    def writable_mask(self) -> list[bool]:
        """One flag per register of the image: may a client write it?"""
        mask = [False] * self.size
        for info in self._points.values():
            if info.writable:
                for addr in range(info.address, info.address + info.size):
                    mask[addr - self.base] = True
        return mask

    # -- values ---------------------------------------------------------------------------

    def _point(self, key: PointKey) -> Any:
        self.point(*key)
        return self._objects[key]

    def scale_factor(self, model_id: int, name: str) -> int:
        """The scale factor that applies to a point (0 when it has none)."""
        point = self._point((model_id, name))
        sf_name = self._sf_names.get((model_id, name))
        if sf_name is None:
            fixed = point.pdef.get(ss_mdef.SF)
            return 0 if fixed is None else int(fixed)
        sf_point = self._objects.get((model_id, sf_name))
        if sf_point is None or sf_point.value is None:
            raise ImageError(f"scale factor {sf_name} of {model_id}.{name} is not set")
        return int(sf_point.value)

    def set_raw(self, model_id: int, name: str, raw: Raw) -> None:
        """Set a point's raw register value (None = not implemented)."""
        info = self.point(model_id, name)
        fixed = self._fixed.get((model_id, name))
        if fixed is not None and raw != fixed:
            raise ImageError(f"{model_id}.{name} counts a repeating group: it is fixed at {fixed}")
        if isinstance(raw, int) and not isinstance(raw, bool):
            if info.type in _ACC_MODULUS:
                raw %= _ACC_MODULUS[info.type]
            elif info.type in _RAW_RANGE:
                low, high = _RAW_RANGE[info.type]
                raw = min(max(raw, low), high)
        self._objects[(model_id, name)].set_value(raw)

    def set(self, model_id: int, name: str, value: float | str | None) -> None:
        """Set a point from an engineering value: scaled by its SF, rounded, clamped to the type."""
        if value is None or isinstance(value, str):
            self.set_raw(model_id, name, value)
            return
        if not math.isfinite(value):
            self.set_raw(model_id, name, None)
            return
        sf = self.scale_factor(model_id, name)
        self.set_raw(model_id, name, round(value / 10.0**sf))

    def raw(self, model_id: int, name: str) -> Raw:
        """The raw value of a point, None when not implemented."""
        value = self._point((model_id, name)).value
        if value is None:
            return None
        return value if isinstance(value, str) else int(value)

    def value(self, model_id: int, name: str) -> float | None:
        """The engineering value of a numeric point (raw x 10^SF), None when not implemented."""
        raw = self.raw(model_id, name)
        if raw is None:
            return None
        if isinstance(raw, str):
            raise ImageError(f"point {model_id}.{name} is a string")
        return raw * 10.0 ** self.scale_factor(model_id, name)

    # -- encoding -------------------------------------------------------------------------

    def render(self) -> list[int]:
        """Encode the whole map (SunS, models, end model) into registers via pysunspec2."""
        regs = list(SUNS_MARKER)
        for mid in self.model_ids:
            regs.extend(_registers(self._models[mid].get_mb()))
        regs.extend((END_MODEL_ID, 0))
        return regs

    def decode_write(self, address: int, values: Sequence[int], current: Sequence[int]) -> dict[PointKey, Raw]:
        """Decode a Modbus write into the new raw value of every point it touches.

        ``current`` is the register array the write lands on; a write that covers only part
        of a multi-register point is merged with the point's current registers, as a real
        device would.  Raises ImageError for writes outside the map or to read-only points.
        """
        end = address + len(values)
        if address < self.base or end > self.base + self.size:
            raise ImageError(f"write {address}..{end - 1} is outside the SunSpec map")
        changes: dict[PointKey, Raw] = {}
        for key, info in self._points.items():
            if info.address >= end or info.address + info.size <= address:
                continue
            if not info.writable:
                raise ImageError(f"point {info.model_id}.{info.name} is not writable")
            regs = [current[a - self.base] for a in range(info.address, info.address + info.size)]
            for a in range(max(address, info.address), min(end, info.address + info.size)):
                regs[a - info.address] = values[a - address]
            data = struct.pack(f">{len(regs)}H", *regs)
            type_info = ss_mb.point_type_info[info.type]
            decoded = type_info.data_to(data)
            changes[key] = decoded if type_info.is_impl(decoded) else None
        return changes

    def apply(self, changes: Mapping[PointKey, Raw]) -> None:
        """Store decoded raw values (from :meth:`decode_write`) in the model."""
        for (mid, name), raw in changes.items():
            self.set_raw(mid, name, raw)
