"""Child process for the crash test: the real uplink, emitting events until it is killed.

Usage: python uplink_crash_child.py BROKER_PORT STATE_DIR EMIT(0|1)
Prints "ready" once started, then each record id right after `emit` returned (the moment the
record counts as emitted). With EMIT=0 it only drains the backlog and exits when it is empty.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from edgeagent import config
from edgeagent.image import ProcessImage
from edgeagent.uplink import messages
from edgeagent.uplink.outbox import Lane
from edgeagent.uplink.service import Identity, Uplink

SITE = """
[site]
id = "site-1"
node = "edge-01"
[devices.pcc]
kind = "sunspec"
host = "127.0.0.1"
points = ["203.W"]
[uplink]
broker = "mqtt://127.0.0.1:{port}"
"""


async def main(port: int, state_dir: Path, emit: bool) -> None:
    cfg = config.parse(SITE.format(port=port))
    assert cfg.uplink is not None
    uplink = Uplink(cfg.uplink, Identity("site-1", "edge-01", "0.1.0", "c" * 64), state_dir, ProcessImage([]))
    task = asyncio.create_task(uplink.run())
    print("ready", flush=True)
    i = 0
    while emit:
        lane = Lane.DECISION if i % 3 == 0 else Lane.EVENT
        payload = messages.event("site-1", "edge-01", "crash.test", "info", {"i": i})
        record = await uplink.emit(lane, "decisions" if lane is Lane.DECISION else "events", payload)
        print(record.id, flush=True)
        i += 1
        await asyncio.sleep(0.002)
    while True:
        await uplink.refresh_stats()
        if uplink.mqtt.connected and uplink.backlog() == 0 and uplink.in_flight() == 0:
            break
        await asyncio.sleep(0.1)
    uplink.request_stop()
    await asyncio.wait_for(task, 10)
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"))
