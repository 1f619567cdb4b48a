"""The daemon's control commands: `status` (read-only), `reset-trip` (a local interlock reset),
`recommendations` (the open and active ones) and `decide` (a signed command, e.g. from
`edgeagent confirm`, so that decisions work with the uplink down).

They run on the event loop's thread between two scan cycles (see `edgeagent.control`), so they
read and reset the safety phases directly. A reset names the person the kernel vouched for
(`Peer`), and that name travels in the `interlock.reset` event to the log and the uplink.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from edgeagent import __version__
from edgeagent.control import ControlServer, Peer, Refused
from edgeagent.decisions.service import DecisionService
from edgeagent.safety.export_limit import ExportLimiter, FallbackReason
from edgeagent.safety.interlocks import Interlocks, InterlockState

if TYPE_CHECKING:
    from edgeagent.daemon import Daemon

log = structlog.get_logger("edgeagent.control")

_REFUSAL_CODES = (
    ("unknown interlock", "unknown"),
    ("not latched", "not_latched"),
    ("condition still present", "condition_present"),
    ("not tripped", "not_tripped"),
    ("input not usable", "input_bad"),
)


def refusal_code(reason: str) -> str:
    """The machine code for a reason `Interlocks.reset` gave ("refused" if it is a new one)."""
    return next((code for prefix, code in _REFUSAL_CODES if reason.startswith(prefix)), "refused")


def register(server: ControlServer, daemon: Daemon) -> None:
    server.register("status", lambda args, peer: status(daemon))
    server.register("reset-trip", lambda args, peer: reset_trip(daemon.safety.interlocks, args["name"], peer),
                    required={"name": str})
    server.register("recommendations", lambda args, peer: {"recommendations": daemon.decisions.recommendations()})
    server.register("decide", lambda args, peer: decide(daemon.decisions, args["command"], peer),
                    required={"command": str})


async def decide(service: DecisionService, command: str, peer: Peer) -> Mapping[str, Any]:
    """A signed command through the socket: the signature, not the socket, is the authority (the peer
    is recorded as where it came from). A refusal carries the same reason code as over MQTT."""
    outcome = await service.handle_signed_async(command.encode("utf-8"), f"control socket ({peer.describe()})")
    if not outcome.accepted:
        raise Refused(outcome.code or "refused", outcome.detail)
    cmd, key = outcome.command, outcome.key
    assert cmd is not None and key is not None
    return {"accepted": True, "action": cmd.action.value, "target": cmd.target, "key_id": key.key_id,
            "by": key.name, "state": outcome.state, "detail": outcome.detail}


def reset_trip(interlocks: Interlocks | None, name: str, peer: Peer) -> Mapping[str, Any]:
    by = peer.describe()
    if interlocks is None:
        log.info("control.reset_trip", interlock=name, by=by, result="no interlocks configured")
        raise Refused("unknown", "no interlocks are configured on this daemon")
    why = interlocks.reset(name, by=by)
    log.info("control.reset_trip", interlock=name, by=by, result=why or "reset")
    if why is None:
        return {"reset": name, "by": by}
    code = refusal_code(why)
    if code == "unknown":
        why = f"unknown interlock (configured: {', '.join(interlocks.specs) or 'none'})"
    raise Refused(code, why)


def status(daemon: Daemon) -> Mapping[str, Any]:
    cfg = daemon.cfg
    return {
        "version": __version__,
        "site": cfg.site.site_id,
        "node": cfg.site.node_id,
        "uptime_s": round(time.monotonic() - daemon.started_mono, 1),
        "health": daemon.health().line(),
        "devices": {
            "online": [name for name, d in daemon.devices.items() if d.online],
            "offline": {name: d.link.reason for name, d in daemon.devices.items() if not d.online},
        },
        "cycles": daemon.cycle_summary(),
        **interlocks_status(daemon.safety.interlocks),
        "export_limit": export_limit_status(daemon.safety.export_limit),
    }


def interlocks_status(interlocks: Interlocks | None) -> dict[str, Any]:
    """Each interlock's state (idle, pickup, tripped, latched) and the names whose safe action is on."""
    if interlocks is None:
        return {"interlocks": [], "active_trips": []}
    items = [{"name": name, "state": interlocks.state(name).value, "latching": spec.latch}
             for name, spec in interlocks.specs.items()]
    active = [name for name in interlocks.specs if interlocks.state(name) in
              (InterlockState.TRIPPED, InterlockState.LATCHED)]
    return {"interlocks": items, "active_trips": active}


def export_limit_status(limiter: ExportLimiter | None) -> dict[str, Any] | None:
    if limiter is None:
        return None
    override = limiter.override
    return {
        "limit_kw": limiter.limit_kw,
        "source": limiter.limit_source.value if limiter.limit_source is not None else None,
        "state": limiter.state.value,
        "fallback_reason": None if limiter.reason is FallbackReason.NONE else limiter.reason.value,
        "export_kw": None if limiter.export_kw is None else round(limiter.export_kw, 3),
        "override_kw": override.limit_kw if override is not None else None,
    }


__all__ = ["decide", "export_limit_status", "interlocks_status", "refusal_code", "register", "reset_trip", "status"]
