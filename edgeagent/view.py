"""A plain-text live view of the process image, for technicians on a terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgeagent.image import Quality, Snapshot
from edgeagent.safety.export_limit import ExportLimiter
from edgeagent.safety.export_limit import State as LimiterState
from edgeagent.safety.interlocks import Interlocks, InterlockState

_MARK = {Quality.GOOD: "GOOD", Quality.BAD: "BAD ", Quality.STALE: "STALE"}


def format_value(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def render(snapshot: Snapshot, header: str, devices: Mapping[str, str], safety: Sequence[str] = ()) -> str:
    """One screen: a header line, device links, safety state, then point | value unit | quality | age | reason."""
    lines = [header, ""]
    for name, state in devices.items():
        lines.append(f"  device {name:<10} {state}")
    lines.extend(safety)
    lines.append("")
    lines.append(f"  {'point':<22} {'value':>14} {'unit':<6} {'quality':<7} {'age':>7}  reason")
    for name in sorted(snapshot):
        view = snapshot[name]
        age = f"{view.age_s:6.1f}s" if view.age_s < 1e5 else "   —  "
        lines.append(f"  {name:<22} {format_value(view.value):>14} {view.sample.unit:<6} "
                     f"{_MARK[view.quality]:<7} {age:>7}  {view.sample.reason}")
    return "\n".join(lines)


def safety_lines(interlocks: Interlocks | None, limiter: ExportLimiter | None) -> list[str]:
    """Export limit with its margin, and active trips: what a technician checks first."""
    lines: list[str] = []
    if limiter is not None and limiter.limit_kw is not None:
        source = limiter.limit_source.value if limiter.limit_source else "-"
        if limiter.state is LimiterState.FALLBACK:
            lines.append(f"  export     FALLBACK ({limiter.reason.value}): limit {limiter.limit_kw:g} kW, "
                         "PV capped open-loop")
        elif limiter.export_kw is None:
            lines.append(f"  export     limit {limiter.limit_kw:g} kW ({source}), export unknown")
        else:
            margin = limiter.limit_kw - limiter.export_kw
            flag = "  OVER THE LIMIT" if margin < 0 else ""
            lines.append(f"  export     {limiter.export_kw:7.2f} kW of {limiter.limit_kw:g} kW ({source}), "
                         f"margin {margin:6.2f} kW{flag}")
    if interlocks is not None:
        active = sorted(interlocks.active())
        if not active:
            lines.append(f"  trips      none ({len(interlocks.specs)} interlocks armed)")
        for name in active:
            state = interlocks.state(name)
            hint = f" (needs `edgeagent reset-trip {name}`)" if state is InterlockState.LATCHED else ""
            lines.append(f"  trips      {state.value.upper()} {name}{hint}")
    return lines
