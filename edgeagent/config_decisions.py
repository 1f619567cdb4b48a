"""The `[trust]` and `[decisions]` sections: who may sign commands for this node, and the time rules.

```toml
[decisions]
clock_skew_s = 30             # how far this node's clock and a signer's may disagree (0-3600)
max_lifetime_s = 86400        # longest expires_at - issued_at a command may have (at most 24 h)
recommendation_ttl_s = 900    # how long a recommendation waits for a decision by default
audit_head_every_s = 60       # how often the audit chain head is published as an event
audit_max_bytes = 8388608     # rotate the audit log's file past this size (the chain continues)
```
`[[trust.keys]]` is described in `edgeagent.decisions.trust`. Kept apart from `config.py`, which
stays the site's shape (devices, points); this file is what a person's key may do there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.configcheck import Checker
from edgeagent.decisions.audit import DEFAULT_MAX_BYTES
from edgeagent.decisions.signed import MAX_LIFETIME_S
from edgeagent.decisions.trust import TrustStore, parse_trust

MAX_SKEW_S = 3600.0


@dataclass(frozen=True, slots=True)
class DecisionsConfig:
    clock_skew_s: float = 30.0
    max_lifetime_s: float = MAX_LIFETIME_S
    recommendation_ttl_s: float = 900.0
    audit_head_every_s: float = 60.0
    audit_max_bytes: int = DEFAULT_MAX_BYTES


def parse_decisions(c: Checker, doc: dict[str, Any], base_dir: Path | None = None) -> tuple[TrustStore,
                                                                                               DecisionsConfig]:
    """`[trust]` and `[decisions]` of a parsed config; every problem goes to `c` at its key path."""
    trust = parse_trust(c, doc, base_dir)
    if "decisions" not in doc:
        return trust, DecisionsConfig()
    t = c.table(doc, "decisions", "")
    path = "decisions"
    c.only_keys(t, path, ["clock_skew_s", "max_lifetime_s", "recommendation_ttl_s", "audit_head_every_s",
                          "audit_max_bytes"])
    defaults = DecisionsConfig()
    skew = c.number(t, "clock_skew_s", path, default=defaults.clock_skew_s, minimum=0, maximum=MAX_SKEW_S)
    lifetime = c.number(t, "max_lifetime_s", path, default=defaults.max_lifetime_s, maximum=MAX_LIFETIME_S)
    if "max_lifetime_s" in t and _positive(t["max_lifetime_s"]) is False:
        c.error(f"{path}.max_lifetime_s", "must be more than 0 s", t["max_lifetime_s"])
    ttl = c.number(t, "recommendation_ttl_s", path, default=defaults.recommendation_ttl_s, maximum=7 * 86_400)
    if "recommendation_ttl_s" in t and _positive(t["recommendation_ttl_s"]) is False:
        c.error(f"{path}.recommendation_ttl_s", "must be more than 0 s", t["recommendation_ttl_s"])
    head_every = c.number(t, "audit_head_every_s", path, default=defaults.audit_head_every_s, minimum=1,
                          maximum=86_400)
    max_bytes = c.integer(t, "audit_max_bytes", path, default=defaults.audit_max_bytes, minimum=4096)
    return trust, DecisionsConfig(skew, lifetime, ttl, head_every, max_bytes)


def _positive(value: object) -> bool | None:
    """False for a number <= 0, None when it is not a number (the checker reports that)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value > 0


__all__ = ["DecisionsConfig", "parse_decisions"]
