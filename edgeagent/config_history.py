"""The `[history]` section: which points keep hourly aggregates on disk, and for how long.

```toml
[history]
retention_days = 400            # hours older than this are deleted (1-36500)
points = ["xfmr.top_oil_c"]     # default: every numeric point of the site
```
The store itself is `<storage.dir>/history.sqlite` (see `edgeagent.history_store`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from edgeagent.configcheck import Checker

DEFAULT_RETENTION_DAYS = 400
MAX_RETENTION_DAYS = 36_500


class _Device(Protocol):
    @property
    def name(self) -> str: ...

    def point_names(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """`points` None means every numeric point (the daemon records only GOOD numeric samples anyway)."""

    retention_days: int = DEFAULT_RETENTION_DAYS
    points: frozenset[str] | None = None

    def keeps(self, point: str) -> bool:
        return self.points is None or point in self.points


def text_points(devices: Iterable[_Device]) -> set[str]:
    """Modbus points of type "string": they have no hourly mean."""
    out: set[str] = set()
    for d in devices:
        for reg in getattr(d, "registers", ()):
            if getattr(getattr(reg, "type", None), "value", "") == "string":
                out.add(f"{d.name}.{reg.name}")
    return out


def parse_history(c: Checker, doc: dict[str, Any], devices: Iterable[_Device]) -> HistoryConfig:
    """`[history]` of a parsed config; every problem goes to `c` at its key path."""
    if "history" not in doc:
        return HistoryConfig()
    devices = list(devices)
    t = c.table(doc, "history", "")
    c.only_keys(t, "history", ["retention_days", "points"])
    days = c.integer(t, "retention_days", "history", default=DEFAULT_RETENTION_DAYS, minimum=1,
                     maximum=MAX_RETENTION_DAYS)
    if "points" not in t:
        return HistoryConfig(days, None)
    raw = t["points"]
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        c.error("history.points", "must be a list of point names", raw)
        return HistoryConfig(days, None)
    known = {name for d in devices for name in d.point_names()}
    texts = text_points(devices)
    for i, point in enumerate(raw):
        if point not in known:
            close = difflib.get_close_matches(point, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            c.error(f"history.points[{i}]", f"no such point{hint}", point)
        elif point in texts:
            c.error(f"history.points[{i}]", "is a string point: only numeric points have hourly aggregates", point)
    return HistoryConfig(days, frozenset(raw))


__all__ = ["HistoryConfig", "parse_history", "text_points"]
