"""If edgeagent dies, the plant returns to its defaults on its own: the setpoints were written with
the devices' revert timers (SunSpec RvrtTms), so nothing stays throttled or charging blind.

The daemon runs as a real process (`python -m edgeagent run`) against the HIL plant and is killed
with SIGKILL: no shutdown code of ours runs, exactly as in a crash or a power cut of the edge box.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from importlib import resources
from pathlib import Path
from string import Template

from hil.devices import BessDevice, InverterDevice
from hil.server import serve_plant
from tests.helpers import eventually

SPEED = 5.0
REVERT_S = 10  # plant seconds; the daemon refreshes every REFRESH_S wall seconds = 5 plant s
REFRESH_S = 1


def site_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    template = resources.files("edgeagent").joinpath("examples/demo.toml").read_text(encoding="utf-8")
    text = Template(template).substitute(state_dir=str(tmp_path), meter_port=ports["meter"],
                                         inverter_port=ports["inverter"], bess_port=ports["bess"])
    text, count = re.subn(r'(\{ point = "(?:bess\.WSetRvrtTms|pv\.WMaxLimPct_RvrtTms)", value = )30 \}',
                          rf"\g<1>{REVERT_S} }}", text)
    assert count == 2, "the demo config's revert timers moved: update this test"
    text = text.replace("refresh_s = 5", f"refresh_s = {REFRESH_S}")
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_killed_daemon_leaves_a_plant_that_reverts_after_rvrttms(tmp_path: Path) -> None:
    async with serve_plant("sunny-day", speed=SPEED) as plant:
        inverter = next(d for d in plant.devices if isinstance(d, InverterDevice))
        bess = next(d for d in plant.devices if isinstance(d, BessDevice))
        cfg = site_config(tmp_path, {name: ep["port"] for name, ep in plant.endpoints.items()})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgeagent", "run", "-c", str(cfg), "--log-format", "json",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            # the export limit makes the daemon charge the battery; both setpoints are enabled
            await eventually(lambda: inverter.image.raw(123, "WMaxLim_Ena") == 1 and bess.setpoint_w < -1000
                             and plant.state.bess_w < -1000, timeout_s=30, what="daemon controlling the plant")
            assert inverter.image.raw(123, "WMaxLimPct_RvrtTms") == REVERT_S
            assert bess.image.raw(704, "WSetRvrtTms") == REVERT_S
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        killed_at = plant.state.t_s
        charging_w = bess.setpoint_w

        reverted: dict[str, float] = {}
        while len(reverted) < 2 and plant.state.t_s - killed_at < 3 * REVERT_S:
            if "inverter" not in reverted and inverter.image.raw(123, "WMaxLim_Ena") == 0:
                reverted["inverter"] = plant.state.t_s
            if "bess" not in reverted and bess.setpoint_w == 0.0:
                reverted["bess"] = plant.state.t_s
            await asyncio.sleep(0.02)

        assert set(reverted) == {"inverter", "bess"}, f"not reverted within {3 * REVERT_S} plant s: {reverted}"
        for name, t_s in reverted.items():
            after_kill = t_s - killed_at
            # the last refresh was at most REFRESH_S wall (= SPEED * REFRESH_S plant s) before the kill
            assert REVERT_S - SPEED * REFRESH_S - 0.5 <= after_kill <= REVERT_S + 0.5, (name, after_kill)
        assert charging_w < -1000  # it was really charging when the daemon died
        assert inverter.limit_pct == 100.0
        await eventually(lambda: abs(plant.state.bess_w) < 100, timeout_s=5, what="battery idle after revert")
