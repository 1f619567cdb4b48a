"""SunSpec: model definitions, discovery of a device's model chain, and point resolution.

Config names SunSpec points as "MODEL.POINT" ("203.W", "ac_meter_abcn.W", "802#2.SoC"); where they
live depends on the device, which lays its models end to end after a "SunS" marker. `discover`
walks that chain once per connection and `SunSpecMap.resolve` turns a reference into a plain
`RegisterPoint`, so the Modbus adapter never needs to know about SunSpec.

Model definitions (parsed in `sunspec_defs`) are the SunSpec Alliance JSON files vendored in
`sunspec_models/`.

Device replies are untrusted: discovery bounds the chain (`max_models`, register 65535), checks
the length of every reply, and rejects (records in `SunSpecMap.rejected`, then skips) a known model
whose declared length is shorter than its fixed points: its points would be read from the next
model's registers. Other models of that device stay usable.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from edgeagent.field.points import RegisterPoint, RegType, Table, WordOrder
from edgeagent.field.sunspec_defs import (
    ModelDef,
    PointDef,
    SunSpecError,
    load_model_def,
    model_ids_by_name,
    parse_model_def,
    vendored_model_ids,
)

__all__ = [
    "SUNS_MARKER", "ModelDef", "ModelInstance", "NoSuchRegisters", "PointDef", "ReadFn",
    "RejectedModel", "SunSpecError", "SunSpecMap", "discover", "load_model_def",
    "model_chain_from_words", "parse_model_def", "vendored_model_ids",
]

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF


class NoSuchRegisters(Exception):
    """Raised by a `read` function when the device answers "illegal data address".

    Discovery then tries the next base address instead of giving up: a device with its map at
    50000 commonly refuses reads at 40000. Every other exception from `read` propagates.
    """


ReadFn = Callable[[int, int], Awaitable[Sequence[int]]]


@dataclass(frozen=True, slots=True)
class ModelInstance:
    """A model found on a device: `address` of its ID register, `length` = its L, `index` = which
    occurrence of this model id it is (1-based, in chain order)."""

    model_id: int
    address: int
    length: int
    index: int


@dataclass(frozen=True, slots=True)
class RejectedModel:
    """A model in the chain that edgeagent will not read from, and why."""

    instance: ModelInstance
    reason: str


class _ChainWalk:
    """The chain-walking logic without I/O: ask `next_read`, then `feed` it the reply."""

    def __init__(self, base: int, max_models: int) -> None:
        self.base, self.max_models = base, max_models
        self.next_read: tuple[int, int] | None = (base + 2, 2)
        self.models: list[ModelInstance] = []
        self.rejected: list[RejectedModel] = []
        self._seen: dict[int, int] = {}
        self.where = f"right after the SunS marker at {base}"  # for messages about the next model

    def feed(self, words: Sequence[int]) -> None:
        assert self.next_read is not None, "feed() after the walk ended"
        address = self.next_read[0]
        model_id, length = words
        if model_id == END_MODEL_ID:
            self.next_read = None
            return
        if len(self.models) + len(self.rejected) >= self.max_models:
            raise SunSpecError(
                f"SunSpec model chain at {self.base} has more than {self.max_models} models without "
                f"an end marker (0xFFFF); the device's map is corrupt or loops back on itself"
            )
        if model_id == 0:
            raise SunSpecError(
                f"model id 0 at register {address} {self.where}: not a SunSpec model; the chain "
                "should end with 0xFFFF. The device's SunSpec map is broken; ask the vendor"
            )
        index = self._seen[model_id] = self._seen.get(model_id, 0) + 1
        instance = ModelInstance(model_id, address, length, index)
        nxt = address + 2 + length
        if nxt + 1 > 0xFFFF:
            raise SunSpecError(
                f"model {model_id} at register {address} declares length {length}, which runs the "
                f"chain past register 65535 (next model at {nxt}); the device's map is corrupt"
            )
        reason = _length_problem(instance)
        if reason:
            self.rejected.append(RejectedModel(instance, reason))
        else:
            self.models.append(instance)
        self.next_read = (nxt, 2)
        self.where = f"after model {model_id} at register {address} (L={length})"

    def result(self) -> SunSpecMap:
        return SunSpecMap(self.base, tuple(self.models), tuple(self.rejected))


def _length_problem(instance: ModelInstance) -> str:
    if instance.model_id not in vendored_model_ids():
        return ""
    need = load_model_def(instance.model_id).min_length
    if instance.length >= need:
        return ""
    return (
        f"model {instance.model_id} at register {instance.address} declares length {instance.length} "
        f"but its definition needs at least {need}: its points would overlap the next model"
    )


def _checked(words: Sequence[int], address: int, count: int) -> Sequence[int]:
    if len(words) != count:
        raise SunSpecError(
            f"device returned {len(words)} registers when {count} were asked for at register "
            f"{address}: the reply is corrupt (check for duplicate unit ids or a noisy RS-485 line)"
        )
    bad = [w for w in words if not isinstance(w, int) or not 0 <= w <= 0xFFFF]
    if bad:
        raise SunSpecError(f"device returned {bad[0]!r} at register {address}, not a 16-bit register")
    return words


async def discover(
    read: ReadFn, bases: Sequence[int] = (40000, 0, 50000), max_models: int = 64
) -> SunSpecMap:
    """Find the "SunS" marker at the first of `bases` that has it and walk the model chain.

    `read(address, count)` reads holding registers; its exceptions propagate, except
    `NoSuchRegisters`, which means "try the next base".
    """
    for base in bases:
        if not 0 <= base <= 0xFFFF - 3:
            raise ValueError(f"SunSpec base address {base} is outside 0..65532")
    seen: list[str] = []
    for base in bases:
        try:
            marker = _checked(await read(base, 2), base, 2)
        except NoSuchRegisters:
            seen.append(f"illegal address at {base}")
            continue
        if tuple(marker) == SUNS_MARKER:
            walk = _ChainWalk(base, max_models)
            while walk.next_read is not None:
                address, count = walk.next_read
                try:
                    words = await read(address, count)
                except NoSuchRegisters:
                    raise SunSpecError(
                        f"the device refuses register {address} (illegal address) {walk.where}: the "
                        "SunSpec chain has no end marker (0xFFFF) or a wrong model length"
                    ) from None
                walk.feed(_checked(words, address, count))
            return walk.result()
        seen.append(f"got 0x{marker[0]:04X} 0x{marker[1]:04X} at {base}")
    raise SunSpecError(_no_marker_message(bases, seen))


def _no_marker_message(bases: Sequence[int], seen: Sequence[str]) -> str:
    names = [str(b) for b in bases]
    where = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return (
        f"no SunSpec marker 'SunS' found at registers {where} ({'; '.join(seen)}): "
        "is this a SunSpec device, and is the unit id right?"
    )


def model_chain_from_words(words: Sequence[int], base: int = 40000, max_models: int = 64) -> SunSpecMap:
    """Walk a chain from a register image: `words[0]` is register `base` (the marker).

    The synchronous twin of `discover`, for tests and for maps read in one go.
    """
    if tuple(words[:2]) != SUNS_MARKER:
        raise SunSpecError(_no_marker_message([base], [f"got {list(words[:2])!r} at {base}"]))
    walk = _ChainWalk(base, max_models)
    while walk.next_read is not None:
        address, count = walk.next_read
        start = address - base
        if start + count > len(words):
            raise SunSpecError(
                f"the register image ends at {base + len(words) - 1} but the chain continues at "
                f"{address}: no end marker (0xFFFF)"
            )
        walk.feed(_checked(words[start:start + count], address, count))
    return walk.result()


# ------------------------------------------------------------------------------------ resolution
_REF = re.compile(r"(?P<model>[^.#]+)(?:#(?P<index>\d+))?\.(?P<point>.+)")


@dataclass(frozen=True, slots=True)
class SunSpecMap:
    """The models a device has, where they are, and which ones were rejected."""

    base: int
    models: tuple[ModelInstance, ...]
    rejected: tuple[RejectedModel, ...] = ()

    def resolve(self, ref: str, name: str) -> RegisterPoint:
        """Turn "MODEL[#n].POINT" into a `RegisterPoint` called `name` at its absolute address.

        MODEL is the numeric id or the definition's name; #n picks the n-th occurrence (default 1).
        """
        match = _REF.fullmatch(ref.strip())
        if match is None:
            raise SunSpecError(f"SunSpec point {ref!r} is not of the form MODEL.POINT (e.g. '203.W')")
        model_id = _model_id(match["model"])
        index = int(match["index"] or 1)
        instance = self._instance(model_id, index, ref)
        model = load_model_def(model_id)
        point = _point(model, match["point"])
        if point.offset + point.size > instance.length + 2:
            raise SunSpecError(
                f"{ref}: point {point.name} is beyond the declared length {instance.length} of "
                f"model {model_id} at register {instance.address}"
            )
        sf_address = None
        scale = 1.0
        if isinstance(point.sf, str):
            sf_address = instance.address + model.points[point.sf].offset
        elif isinstance(point.sf, int):
            scale = 10.0**point.sf
        return RegisterPoint(
            name=name, address=instance.address + point.offset, type=point.rtype, size=point.size,
            unit=point.units, table=Table.HOLDING, word_order=WordOrder.BIG, scale=scale,
            sf_address=sf_address, sunspec_sentinels=True, writable=point.writable,
        )

    def _instance(self, model_id: int, index: int, ref: str) -> ModelInstance:
        for m in self.models:
            if (m.model_id, m.index) == (model_id, index):
                return m
        for r in self.rejected:
            if (r.instance.model_id, r.instance.index) == (model_id, index):
                raise SunSpecError(f"{ref}: {r.reason}")
        every = [*self.models, *(r.instance for r in self.rejected)]
        found = sorted({m.model_id for m in every})
        if model_id in found:
            n = sum(m.model_id == model_id for m in every)
            raise SunSpecError(f"{ref}: model {model_id} occurs {n} time(s) on this device, not {index}")
        raise SunSpecError(
            f"model {model_id} not found on this device; it has models {', '.join(map(str, found)) or 'none'}"
        )


def _model_id(token: str) -> int:
    if token.isdigit():
        return int(token)
    by_name = model_ids_by_name()
    if token in by_name:
        return by_name[token]
    raise SunSpecError(f"unknown SunSpec model name {token!r}{_did_you_mean(token, list(by_name))}")


def _point(model: ModelDef, point_name: str) -> PointDef:
    point = model.points.get(point_name)
    if point is not None and point.rtype is not RegType.PAD:
        return point
    what = f"model {model.model_id} ({model.name})"
    if point is not None:
        raise SunSpecError(f"{what}: {point_name} is padding and holds no value")
    if point_name in model.omitted:
        raise SunSpecError(f"{what}: {point_name} is not supported: {model.omitted[point_name]}")
    names = [n for n, p in model.points.items() if p.rtype is not RegType.PAD]
    raise SunSpecError(f"{what} has no point {point_name!r}{_did_you_mean(point_name, names)}")


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    """A hint for a misspelt name: case-insensitive matches, then difflib's close ones, else a list."""
    folded = {c.lower(): c for c in reversed(choices)}
    guess = [folded[g] for g in difflib.get_close_matches(word.lower(), list(folded), n=3)]
    if guess:
        return f"; did you mean {', '.join(map(repr, guess))}?"
    shown = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
    return f"; it has {shown}"
