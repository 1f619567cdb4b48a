"""`edgeagent recommendations`, `confirm` and `reject`: a person on site decides through the local socket.

The command is signed here, with the person's own key, exactly as an operator's tooling would sign it
upstream; the daemon checks it the same way whichever way it came. The socket only carries it, so the
decision is the key holder's, and it works with the uplink down.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeagent.decisions.keys_cli import sign_command
from edgeagent.decisions.signed import ArgValue


def signed_decision(key_file: Path, key_id: str, node: str, action: str, rec_id: str, reason: str | None,
                    lifetime_s: float) -> str:
    """The signed confirm/reject as text. ValueError or KeyToolError (from keys_cli) saying what is wrong."""
    args: dict[str, ArgValue] = {"reason": reason} if reason else {}
    return sign_command(key_file, node, action, rec_id, args, lifetime_s, key_id).decode("utf-8")


def recommendations_text(items: list[Mapping[str, Any]]) -> str:
    """A few lines per recommendation: id, state, expiry, what it would do and why."""
    if not items:
        return "no open recommendations"
    lines: list[str] = []
    for rec in items:
        lines.append(f"{rec.get('id')}  [{rec.get('state')}]  expires {rec.get('expires_at')}  ({rec.get('key')})")
        lines.append(f"  why: {rec.get('rationale')}")
        for action in rec.get("actions", []):
            if action.get("type") == "setpoint":
                duration = action.get("duration_s")
                lasting = f" for {duration:g} s" if isinstance(duration, int | float) else " (once)"
                lines.append(f"  do:  {action.get('device')}.{action.get('point')} = {action.get('value')}{lasting}")
            else:
                lines.append(f"  do:  {action.get('text')}")
        proposer = rec.get("proposer", {})
        lines.append(f"  by:  {proposer.get('kind')} {proposer.get('name')} {proposer.get('version')}")
    return "\n".join(lines)


__all__ = ["recommendations_text", "signed_decision"]
