"""A plain-text live view of the process image, for technicians on a terminal."""

from __future__ import annotations

from collections.abc import Mapping

from edgeagent.image import Quality, Snapshot

_MARK = {Quality.GOOD: "GOOD", Quality.BAD: "BAD ", Quality.STALE: "STALE"}


def format_value(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def render(snapshot: Snapshot, header: str, devices: Mapping[str, str]) -> str:
    """One screen: a header line, device links, then point | value unit | quality | age | reason."""
    lines = [header, ""]
    for name, state in devices.items():
        lines.append(f"  device {name:<10} {state}")
    lines.append("")
    lines.append(f"  {'point':<22} {'value':>14} {'unit':<6} {'quality':<7} {'age':>7}  reason")
    for name in sorted(snapshot):
        view = snapshot[name]
        age = f"{view.age_s:6.1f}s" if view.age_s < 1e5 else "   —  "
        lines.append(f"  {name:<22} {format_value(view.value):>14} {view.sample.unit:<6} "
                     f"{_MARK[view.quality]:<7} {age:>7}  {view.sample.reason}")
    return "\n".join(lines)
