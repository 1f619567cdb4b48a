"""The transformer monitor over the network: a real asyncua client against the plant's OPC UA server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client

from hil.scenario import parse_scenario_text
from hil.server import HilError, serve_plant
from hil.transformer_server import NAMESPACE_URI

REPO = Path(__file__).resolve().parents[2]
DRIFT_C_PER_H = 72.0  # 2 °C per 100 plant seconds: 2 °C per wall second at speed 100
SCENARIO = f"""
name = "opcua-test"
start = 2025-07-14T18:00:00
speed = 100.0
[site]
step_s = 1.0
[transformer]
rating_kva = 100.0
[[events]]
kind = "sensor_drift"
at_s = 0.0
rate_c_per_h = {DRIFT_C_PER_H}
"""
VARIABLES = ("TopOilTemp", "HotSpotTemp", "AmbientTemp", "LoadCurrent", "FanStatus", "PlantTime")


async def _nodes(client: Client) -> dict[str, Any]:
    index = await client.get_namespace_index(NAMESPACE_URI)
    return {name: client.get_node(f"ns={index};s=Transformer.{name}") for name in VARIABLES}


def _nearest(rows: list[dict[str, Any]], t_plant_s: float) -> dict[str, Any]:
    row = min(rows, key=lambda r: abs(r["t_plant_s"] - t_plant_s))
    assert abs(row["t_plant_s"] - t_plant_s) < 1e-3
    return row


async def test_a_client_reads_the_transformer_and_sees_the_drift_that_the_truth_does_not_have(tmp_path: Path) -> None:
    scenario = parse_scenario_text(SCENARIO, source="opcua-test.toml")
    trace = tmp_path / "trace.jsonl"
    snapshots: list[dict[str, Any]] = []
    async with serve_plant(scenario, trace=trace) as plant:
        endpoint = plant.ready_event()["transformer"]
        assert endpoint["namespace"] == NAMESPACE_URI and endpoint["url"].startswith("opc.tcp://127.0.0.1:")
        async with Client(endpoint["url"], timeout=5) as client:
            nodes = await _nodes(client)
            assert endpoint["nodes"]["TopOilTemp"] == nodes["TopOilTemp"].nodeid.to_string()
            unit = await (await nodes["TopOilTemp"].get_child("0:EngineeringUnits")).read_value()
            assert (unit.UnitId, unit.DisplayName.Text) == (int.from_bytes(b"CEL", "big"), "°C")
            amps = await (await nodes["LoadCurrent"].get_child("0:EngineeringUnits")).read_value()
            assert amps.DisplayName.Text == "A"
            assert "fibre-optic" in (await nodes["HotSpotTemp"].read_description()).Text
            for _ in range(3):
                await asyncio.sleep(0.4)
                values = await client.read_values([nodes[name] for name in VARIABLES])  # one Read: one tick
                snapshots.append(dict(zip(VARIABLES, values, strict=True)))
    rows = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    start = datetime(2025, 7, 14, 18, 0, tzinfo=UTC)
    for snapshot in snapshots:
        t_plant_s = (snapshot["PlantTime"].replace(tzinfo=UTC) - start).total_seconds()
        truth = _nearest(rows, t_plant_s)
        drift_c = DRIFT_C_PER_H * t_plant_s / 3600.0
        assert drift_c > 0.5
        assert snapshot["TopOilTemp"] - truth["top_oil_c"] == pytest.approx(drift_c, abs=1e-6)
        assert snapshot["HotSpotTemp"] == pytest.approx(truth["hot_spot_c"], abs=1e-9)
        assert snapshot["AmbientTemp"] == pytest.approx(truth["ambient_c"], abs=1e-9)
        assert snapshot["LoadCurrent"] == pytest.approx(truth["transformer_current_a"], abs=1e-9)
        assert snapshot["LoadCurrent"] > 10.0
        assert snapshot["FanStatus"] is truth["fans_on"]
    assert snapshots[-1]["PlantTime"] > snapshots[0]["PlantTime"]


async def test_the_cli_announces_the_endpoint_and_a_subscription_gets_every_change(tmp_path: Path) -> None:
    path = tmp_path / "opcua-test.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil", "serve", "--scenario", str(path), "--status-interval", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=20))
        assert ready["event"] == "hil.ready" and ready["transformer"]["namespace"] == NAMESPACE_URI
        drift = {"kind": "sensor_drift", "at_s": 0.0, "duration_s": None, "rate_c_per_h": DRIFT_C_PER_H}
        assert ready["events"] == [drift]
        changes: list[float] = []

        class Handler:
            def datachange_notification(self, node: Any, value: float, data: Any) -> None:
                changes.append(value)

        async with Client(ready["transformer"]["url"], timeout=5) as client:
            subscription = await client.create_subscription(100, Handler())
            await subscription.subscribe_data_change((await _nodes(client))["TopOilTemp"])
            await asyncio.sleep(1.0)
        assert len(set(changes)) >= 5  # a new reading every tick (0.1 s) reaches the subscriber
        assert changes[-1] > changes[0] + 1.0  # drifting upwards at 2 °C per wall second
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()


@contextlib.contextmanager
def _four_ports_with_the_last_taken() -> Iterator[int]:
    """A port base whose first three ports are free and whose fourth (the transformer's) is taken."""
    for _ in range(50):
        taken = socket.create_server(("127.0.0.1", 0))
        base = taken.getsockname()[1] - 3
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + 3):
                probes.append(socket.create_server(("127.0.0.1", port)))
        except OSError:
            taken.close()
            continue
        finally:
            for probe in probes:
                probe.close()
        try:
            yield base
        finally:
            taken.close()
        return
    pytest.skip("no four consecutive loopback ports to work with")


async def test_the_transformer_listens_on_port_base_plus_3_and_a_taken_port_is_one_clear_error() -> None:
    scenario = parse_scenario_text(SCENARIO, source="opcua-test.toml")
    with _four_ports_with_the_last_taken() as base, pytest.raises(HilError) as info:
        async with serve_plant(scenario, port_base=base):
            pass
    assert str(info.value) == f"transformer: cannot listen on 127.0.0.1:{base + 3}: address already in use"
    with pytest.raises(HilError, match=re.escape("port base must be 0 (ephemeral) or 1..65532, got 65533")):
        async with serve_plant(scenario, port_base=65533):
            pass

