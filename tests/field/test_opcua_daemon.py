"""The daemon with an OPC UA device: its points in the image, an interlock on one of them, and the
interlock's safe action written back to the server through the cycle's routing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from structlog.testing import capture_logs

from edgeagent import config
from edgeagent.daemon import Daemon
from edgeagent.image import Quality
from edgeagent.notify import Notifier
from tests.field.test_opcua_adapter import Plant
from tests.helpers import eventually

SITE = """
[site]
id = "t"
node = "n"
[scan]
period_ms = 50
[storage]
dir = "{state}"

[devices.tx]
kind = "opcua"
url = "{url}"
publishing_ms = 50
timeout_ms = 500

[[devices.tx.nodes]]
name = "top_oil_c"
node = "ns=2;s=Transformer.TopOil"
unit = "°C"

[[devices.tx.nodes]]
name = "fan_cmd"
node = "0:Objects/2:Transformer/2:FanCommand"
writable = true

[[setpoints]]
point = "tx.fan_cmd"
min = 0
max = 1

[[interlocks]]
name = "top_oil_high"
points = ["tx.top_oil_c"]
condition = "above"
limit = 90
hysteresis = 5
on_bad_input = "hold"
safe_action = [{{ point = "tx.fan_cmd", value = 1 }}]
"""


async def fan(plant: Plant) -> int:
    dv = await plant.vars["FanCommand"].read_data_value()
    assert dv.Value is not None
    return int(dv.Value.Value)


async def test_an_interlock_on_an_opcua_point_writes_its_safe_action_to_the_server(tmp_path: Path) -> None:
    plant = Plant()
    await plant.start()
    cfg = config.parse(SITE.format(state=tmp_path, url=plant.url))
    assert [d.name for d in cfg.opcua_devices] == ["tx"]
    daemon = Daemon(cfg, Notifier(""))
    task = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: daemon.opcua["tx"].online and daemon.image.latest("tx.top_oil_c").good, timeout_s=10)
        interlocks = daemon.safety.interlocks
        assert interlocks is not None
        await eventually(lambda: daemon.image.latest("tx.fan_cmd").value == 0.0)
        assert not interlocks.active() and not daemon.opcua["tx"].writes  # 55 °C: nothing to do
        assert daemon.health().devices_online == 1 and daemon.health().devices == 1
        with capture_logs() as logs:
            await plant.set("TopOil", 95.0)
            fan_on = False
            for _ in range(150):
                if fan_on := await fan(plant) == 1:
                    break
                await asyncio.sleep(0.02)
            assert fan_on, "the safe action reached the server"
        trip = next(e for e in logs if e["event"] == "interlock.trip")
        assert trip["interlock"] == "top_oil_high" and trip["values"]["tx.top_oil_c"] == 95.0
        await eventually(lambda: daemon.image.latest("tx.fan_cmd").value == 1.0, what="written value read back")
        # The server goes away: its points go STALE in the daemon, which keeps running.
        await plant.stop()
        await eventually(lambda: daemon.image.latest("tx.top_oil_c").quality is Quality.STALE, timeout_s=3)
        assert not task.done() and daemon.health().devices_online == 0
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
        await plant.stop()

