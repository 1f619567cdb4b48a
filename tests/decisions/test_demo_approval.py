"""`edgeagent demo --scenario approval` as a user runs it: the JSON summary names the recommendation
and its final state, the two refusals with their codes, and the audit log in --state-dir verifies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgeagent.decisions.audit_verify import verify


def test_approval_scenario(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "edgeagent", "demo", "--scenario", "approval", "--duration", "15",
                           "--json", "--state-dir", str(state)], capture_output=True, text=True, timeout=90)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    checks = {c["name"]: c for c in summary["checks"]}
    assert proc.returncode == 0 and summary["passed"], [c for c in summary["checks"] if not c["passed"]]
    assert [r["state"] for r in summary["recommendations"]] == ["completed"]
    assert sorted(r["reason"] for r in summary["refusals"]) == ["bad_signature", "replayed"]
    assert checks["executed_on_plant"]["passed"] and checks["audit_log_verifies"]["passed"]
    result = verify(state)
    assert result.ok and result.last_seq == summary["audit"]["head_seq"]
    audited = [json.loads(line) for f in sorted((state / "audit").glob("audit-*.jsonl"))
               for line in f.read_text().splitlines()]
    rec_id = summary["recommendations"][0]["id"]
    assert any(r["kind"] == "setpoint.written" and r["data"]["origin"] == f"decision:{rec_id}" for r in audited)
