"""SunSpec model definitions: the vendored SunSpec Alliance JSON files → frozen `ModelDef`s.

What is kept:
- top-level points, at `offset` registers from the model's ID register (ID 0, L 1, data from 2);
- nested groups with a fixed count (absent = 1, or an integer above 0), flattened to
  "Group.Point", or "Group[i].Point" (i from 1) when the count is above 1;
- not kept: groups whose count is a point name ("N") or 0 ("repeat to fill the model"). Their
  length is only known at run time, so they and everything after them are left out of `points`
  and listed in `ModelDef.omitted` with the reason. Points of types edgeagent does not decode
  (ipaddr, ipv6addr, eui48, float64) are omitted the same way but keep their registers.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from edgeagent.field.points import RegType

_MODELS_PACKAGE = "edgeagent.field"
_MODELS_DIR = "sunspec_models"


class SunSpecError(Exception):
    """A SunSpec definition, device map or point reference is unusable; the message says why."""

@dataclass(frozen=True, slots=True)
class PointDef:
    """One point of a model definition; `offset` counts registers from the model's ID register.

    `sf` is the (flattened) name of a sunssf point of the same model, a fixed power of ten, or None.
    """

    name: str
    rtype: RegType
    size: int
    offset: int
    sf: str | int | None
    units: str
    writable: bool
    mandatory: bool
    label: str


@dataclass(frozen=True, slots=True)
class ModelDef:
    """A parsed model. `length` = registers after ID and L taken by the fixed points, which is
    the L a device must declare at least (a trailing pad may be missing)."""

    model_id: int
    name: str
    label: str
    length: int
    points: Mapping[str, PointDef] = field(hash=False)
    omitted: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def min_length(self) -> int:
        """The shortest L whose registers still hold every non-pad point."""
        ends = [p.offset + p.size for p in self.points.values() if p.rtype is not RegType.PAD]
        return max(ends, default=2) - 2


@functools.cache
def vendored_model_ids() -> tuple[int, ...]:
    """The model ids with a vendored definition, ascending."""
    root = resources.files(_MODELS_PACKAGE) / _MODELS_DIR
    ids = (re.fullmatch(r"model_(\d+)\.json", entry.name) for entry in root.iterdir())
    return tuple(sorted(int(m.group(1)) for m in ids if m))


@functools.cache
def load_model_def(model_id: int) -> ModelDef:
    """Parse the vendored definition of `model_id` (cached). Unknown id → SunSpecError."""
    known = vendored_model_ids()
    if model_id not in known:
        raise SunSpecError(
            f"no SunSpec definition for model {model_id}; edgeagent knows models "
            f"{', '.join(map(str, known))} (see edgeagent/field/sunspec_models/README.md to add one)"
        )
    path = resources.files(_MODELS_PACKAGE) / _MODELS_DIR / f"model_{model_id}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SunSpecError(f"SunSpec definition {path.name} is not valid JSON: {exc}") from exc
    return parse_model_def(doc, model_id)


@functools.cache
def model_ids_by_name() -> Mapping[str, int]:
    return MappingProxyType({load_model_def(i).name: i for i in vendored_model_ids()})


def parse_model_def(doc: Any, model_id: int) -> ModelDef:
    """Parse one SunSpec JSON model definition (already loaded with `json`); errors → SunSpecError."""
    try:
        return _parse(doc, model_id)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise SunSpecError(f"SunSpec definition of model {model_id} is malformed: {exc!r}") from exc


def _parse(doc: Any, model_id: int) -> ModelDef:
    if doc["id"] != model_id:
        raise SunSpecError(f"model_{model_id}.json defines model {doc['id']}")
    top = doc["group"]
    head = [p["name"] for p in top["points"][:2]]
    if head != ["ID", "L"]:
        raise SunSpecError(f"model {model_id}: first points must be ID and L, not {head}")
    points: dict[str, PointDef] = {}
    omitted: dict[str, str] = {}
    end = _walk_group(top, "", 0, (), points, omitted, model_id)
    _check_scale_factors(points, model_id)
    declared = top["points"][1].get("value")
    if declared is not None and declared != end - 2:
        raise SunSpecError(f"model {model_id}: L is declared {declared} but the points take {end - 2}")
    return ModelDef(
        model_id=model_id, name=str(top["name"]), label=str(top.get("label", top["name"])),
        length=end - 2, points=MappingProxyType(points), omitted=MappingProxyType(omitted),
    )


def _walk_group(
    group: Any, prefix: str, offset: int, scopes: tuple[Mapping[str, str], ...],
    points: dict[str, PointDef], omitted: dict[str, str], model_id: int,
) -> int:
    """Add the group's points (then its sub-groups) at `offset`; return the offset after them.

    `scopes` maps plain names to flattened names for the enclosing groups, innermost first: a
    scale factor is looked up in the point's own group, then outward (model 704's PFWInj.PF uses
    the top-level PF_SF).
    """
    raw_points = group.get("points", [])
    scope = {p["name"]: prefix + p["name"] for p in raw_points}
    scopes = (scope, *scopes)
    for raw in raw_points:
        name, size = prefix + raw["name"], int(raw["size"])
        if name in points or name in omitted or size < 1:
            raise SunSpecError(f"model {model_id} point {name}: defined twice or with size {size}")
        try:
            rtype = RegType(raw["type"])
        except ValueError:
            omitted[name] = f"type {raw['type']} is not decoded by edgeagent"
            offset += size
            continue
        if rtype is not RegType.STRING and size != rtype.size:
            raise SunSpecError(f"model {model_id} point {name}: {rtype.value} with size {size}")
        points[name] = PointDef(
            name=name, rtype=rtype, size=size, offset=offset, sf=_scale_factor(raw, scopes, name, model_id),
            units=str(raw.get("units", "")), writable=raw.get("access") == "RW",
            mandatory=raw.get("mandatory") == "M", label=str(raw.get("label", raw["name"])),
        )
        offset += size
    blocked = ""
    for sub in group.get("groups", []):
        sub_name, count = prefix + sub["name"], sub.get("count", 1)
        if blocked or isinstance(count, str) or count == 0:
            blocked = blocked or sub_name
            omitted[sub_name] = (
                f"comes after the repeating group {blocked}" if blocked != sub_name
                else f"repeating group (count {count!r}): its length depends on the device"
            )
            continue
        if not isinstance(count, int) or count < 0:
            raise SunSpecError(f"model {model_id} group {sub_name}: count {count!r} is not a count")
        for i in range(1, count + 1):
            sub_prefix = f"{sub_name}[{i}]." if count > 1 else f"{sub_name}."
            offset = _walk_group(sub, sub_prefix, offset, scopes, points, omitted, model_id)
    return offset


def _scale_factor(
    raw: Any, scopes: tuple[Mapping[str, str], ...], name: str, model_id: int
) -> str | int | None:
    sf = raw.get("sf")
    if sf is None or isinstance(sf, int):
        return sf
    for scope in scopes:
        if sf in scope:
            return scope[sf]
    raise SunSpecError(f"model {model_id} point {name}: scale factor {sf!r} is not defined")


def _check_scale_factors(points: Mapping[str, PointDef], model_id: int) -> None:
    for p in points.values():
        if isinstance(p.sf, str) and (p.sf not in points or points[p.sf].rtype is not RegType.SUNSSF):
            raise SunSpecError(f"model {model_id} point {p.name}: scale factor {p.sf} is not a sunssf point")
