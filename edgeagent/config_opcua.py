"""The `kind = "opcua"` devices of the site config: nodes of an OPC UA server, read by subscription.

```toml
[devices.tx1]
kind = "opcua"
url = "opc.tcp://10.0.0.20:4840"
publishing_ms = 1000                     # the subscription's publishing (and sampling) interval
timeout_ms = 2000                        # every request, and the connect (twice this)
retry_ms = 5000                          # how often a node the server does not have is looked for again

[devices.tx1.security]                   # omit for policy None (allowed to loopback only, unless
policy = "Basic256Sha256"                # allow_insecure = true)
mode = "SignAndEncrypt"                  # or "Sign"
certificate = "/etc/edgeagent/opcua/client.der"        # PEM or DER; its subjectAltName URI is our ApplicationUri
private_key = "/etc/edgeagent/opcua/client-key.pem"    # unencrypted PEM or DER
server_certificate = "/etc/edgeagent/opcua/server.der" # the server we trust
username = "edgeagent"                   # optional
password_file = "/etc/edgeagent/opcua/password"       # optional, with username

[[devices.tx1.nodes]]
name = "top_oil_c"
node = "ns=2;s=Transformer.TopOil"       # a NodeId, or a browse path from Root:
unit = "°C"                              #   "0:Objects/2:Transformer/2:TopOil"

[[devices.tx1.nodes]]
name = "fan_cmd"
node = "ns=2;s=Transformer.FanCommand"
writable = true
```
Points are named `DEVICE.NAME`. The field types validate the combination (policy and mode,
loopback rule, …); their messages become problems at the device's key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeagent.configcheck import Checker
from edgeagent.field.opcua_config import (
    OpcUaDeviceConfig,
    OpcUaNode,
    OpcUaSecurity,
    SecurityMode,
    parse_node_ref,
)

DEVICE_KEYS = ["kind", "url", "publishing_ms", "timeout_ms", "retry_ms", "max_age_ms", "security", "nodes"]
_SECURITY_KEYS = ["policy", "mode", "certificate", "private_key", "server_certificate", "username",
                  "password_file", "allow_insecure"]
_NODE_KEYS = ["name", "node", "unit", "writable"]
_POINT_NAME = r"[A-Za-z][A-Za-z0-9_]{0,63}"


def parse_opcua_device(c: Checker, name: str, t: dict[str, Any]) -> OpcUaDeviceConfig | None:
    path = f"devices.{name}"
    c.only_keys(t, path, DEVICE_KEYS)
    before = len(c.problems)
    url = c.string(t, "url", path)
    publishing_s = c.number(t, "publishing_ms", path, default=1000, minimum=10, maximum=3_600_000) / 1000
    timeout_s = c.number(t, "timeout_ms", path, default=2000, minimum=10, maximum=60_000) / 1000
    retry_s = c.number(t, "retry_ms", path, default=5000, minimum=100, maximum=3_600_000) / 1000
    max_age_s = c.number(t, "max_age_ms", path, default=0, minimum=0, maximum=86_400_000) / 1000
    security = _security(c, c.table(t, "security", path), f"{path}.security")
    raw_nodes = t.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        c.error(f"{path}.nodes", 'must be a non-empty list of [[devices.NAME.nodes]] with name and node', raw_nodes)
        return None
    nodes = [n for i, raw in enumerate(raw_nodes) if (n := _node(c, raw, f"{path}.nodes[{i}]"))]
    seen: dict[str, int] = {}
    for i, n in enumerate(nodes):
        if n.name in seen:
            c.error(f"{path}.nodes[{i}].name", f"point name '{n.name}' is already used by nodes[{seen[n.name]}]")
        seen.setdefault(n.name, i)
    if len(c.problems) > before or security is None or len(nodes) != len(raw_nodes):
        return None
    try:
        return OpcUaDeviceConfig(name, url, tuple(nodes), security, publishing_s, timeout_s, retry_s, max_age_s)
    except ValueError as exc:
        key = "url" if "url" in str(exc) or "security policy None" in str(exc) else ""
        c.error(f"{path}.{key}" if key else path, str(exc))
        return None


def _security(c: Checker, t: dict[str, Any], path: str) -> OpcUaSecurity | None:
    c.only_keys(t, path, _SECURITY_KEYS)
    before = len(c.problems)
    policy = c.string(t, "policy", path, default="None", choices=["None", "Basic256Sha256"])
    default_mode = "None" if policy == "None" else "SignAndEncrypt"
    mode = c.string(t, "mode", path, default=default_mode, choices=[m.value for m in SecurityMode])
    files: dict[str, str | None] = {}
    for key in ("certificate", "private_key", "server_certificate", "password_file"):
        value = c.string(t, key, path, default="") or None
        if value is not None and not Path(value).is_file():
            c.error(f"{path}.{key}", "no such file", value)
        files[key] = value
    username = c.string(t, "username", path, default="") or None
    allow_insecure = c.boolean(t, "allow_insecure", path, default=False)
    if len(c.problems) > before:
        return None
    try:
        return OpcUaSecurity(policy, SecurityMode(mode), files["certificate"], files["private_key"],
                             files["server_certificate"], username, files["password_file"], allow_insecure)
    except ValueError as exc:
        c.error(path, str(exc))
        return None


def _node(c: Checker, raw: Any, path: str) -> OpcUaNode | None:
    if not isinstance(raw, dict):
        c.error(path, 'must be a table { name = "...", node = "ns=2;s=..." }', raw)
        return None
    c.only_keys(raw, path, _NODE_KEYS)
    before = len(c.problems)
    name = c.string(raw, "name", path, pattern=_POINT_NAME)
    text = c.string(raw, "node", path)
    unit = c.string(raw, "unit", path, default="")
    writable = c.boolean(raw, "writable", path, default=False)
    if len(c.problems) > before:
        return None
    try:
        ref = parse_node_ref(text)
    except ValueError as exc:
        c.error(f"{path}.node", str(exc))
        return None
    return OpcUaNode(name, ref, unit, writable)
