"""Shared pieces for the decisions service tests: keys, a trust store, a signer, a small site config."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeagent.decisions.signed import format_time, sign
from edgeagent.decisions.trust import Role, TrustedKey, TrustStore

NODE = "n"
T0 = 1_800_000_000.0  # a fixed wall clock for the unit tests

KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "disp", "tech", "outsider")}
ROLES = {"alice": Role.OPERATOR, "disp": Role.DISPATCHER, "tech": Role.TECHNICIAN}


def trust() -> TrustStore:
    return TrustStore(TrustedKey(name, KEYS[name].public_key(), frozenset({role}), name.title())
                      for name, role in ROLES.items())


def signed(action: str, target: str, *, key: str = "alice", key_id: str | None = None, node: str = NODE,
           args: dict[str, Any] | None = None, issued: float = T0, lifetime_s: float = 300.0,
           nonce: str | None = None) -> bytes:
    issued_at = dt.datetime.fromtimestamp(issued, dt.UTC)
    fields = {"v": 1, "node": node, "action": action, "target": target, "args": args or {},
              "key_id": key_id or key, "issued_at": format_time(issued_at),
              "expires_at": format_time(issued_at + dt.timedelta(seconds=lifetime_s)),
              "nonce": nonce or secrets.token_urlsafe(18)}
    return sign(fields, KEYS[key])


def trust_toml() -> str:
    """The `[[trust.keys]]` entries of `trust()`, for a daemon config."""
    import base64

    from cryptography.hazmat.primitives import serialization

    out = []
    for name, role in ROLES.items():
        raw = KEYS[name].public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        out.append(f'[[trust.keys]]\nid = "{name}"\nname = "{name.title()}"\nroles = ["{role.value}"]\n'
                   f'public_key = "{base64.b64encode(raw).decode()}"\n')
    return "\n".join(out)


SAFETY_TOML = """
[site]
id = "t"
node = "n"
[storage]
dir = "{state}"
[devices.site]
kind = "modbus"
host = "127.0.0.1"
port = {port}
poll_ms = 50
timeout_ms = 200
points = [
  {{ name = "temp_c", address = 10, type = "int16", scale = 0.1, unit = "°C" }},
  {{ name = "bess_w", address = 20, type = "int32", writable = true, unit = "W" }},
  {{ name = "meter_w", address = 30, type = "int32", unit = "W" }},
  {{ name = "soc", address = 32, type = "uint16", unit = "%" }},
]
[[setpoints]]
point = "site.bess_w"
min = -50000
max = 50000
[[interlocks]]
name = "bess_overtemp"
points = ["site.temp_c"]
condition = "above"
limit = 45
hysteresis = 2
latch = true
safe_action = [{{ point = "site.bess_w", value = 0 }}]
"""

EXPORT_TOML = """
[export_limit]
meter = "site.meter_w"
static_kw = 10
contract_min_kw = 0
contract_max_kw = 20
bess = { setpoint = "site.bess_w", soc = "site.soc", max_charge_w = 50000 }
"""
