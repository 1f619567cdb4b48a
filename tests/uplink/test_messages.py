"""Every message kind we publish validates against its shipped JSON Schema."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from edgeagent.image import PointSpec, ProcessImage, Quality, Sample
from edgeagent.uplink import messages
from tests.uplink.schema_check import SCHEMA_FILES, check, validator


def test_every_schema_file_is_a_valid_schema_and_is_packaged() -> None:
    for name in SCHEMA_FILES:
        validator(name)


def test_birth_will_and_goodbye() -> None:
    birth = check(messages.birth("site-1", "edge-01", "0.1.0", "a" * 64, time.time() - 5, {"transformer": "1.0"}))
    assert birth["status"] == "online" and birth["uptime_s"] >= 5
    assert check(messages.will("site-1", "edge-01"))["reason"] == "connection lost"
    assert check(messages.goodbye("site-1", "edge-01"))["reason"] == "shutdown"


def test_telemetry_with_units_quality_and_measurement_time() -> None:
    img = ProcessImage([PointSpec("pcc.W", "W", 5.0), PointSpec("pv.W", "W", 5.0)])
    img.write(Sample("pcc.W", -1234.5, "W", Quality.GOOD, time.monotonic(), 1_790_000_000.25))
    snap = img.snapshot()
    stored = messages.telemetry("site-1", "edge-01", "change", [(n, snap[n]) for n in snap])
    doc = check(messages.frame(stored, 42, replayed=True))
    assert doc["id"] == 42 and doc["replayed"] is True
    good, stale = doc["points"]
    assert good == {"point": "pcc.W", "value": -1234.5, "unit": "W", "quality": "good",
                    "ts": "2026-09-21T14:13:20.250Z"}
    assert stale["quality"] == "stale" and stale["reason"] == "no reading yet" and stale["value"] is None


def test_frame_without_replay_and_ids_required() -> None:
    stored = messages.event("site-1", "edge-01", "device.offline", "warning", {"device": "pcc"})
    doc = check(messages.frame(stored, 7, replayed=False))
    assert doc["id"] == 7 and "replayed" not in doc
    with pytest.raises(jsonschema.ValidationError):
        check(stored)  # an unframed record has no id: never valid on the wire
    assert json.loads(messages.frame(b"{}", 3, False)) == {"id": 3}


def test_rejection_message() -> None:
    stored = messages.rejection("site-1", "edge-01", "edgeagent/v1/site-1/edge-01/cmd/x", "unknown command", None)
    doc = check(messages.frame(stored, 9, replayed=False))
    assert doc["reason"] == "unknown command" and doc["command_id"] is None


def test_bad_event_names_are_caught_by_the_schema() -> None:
    stored = messages.event("site-1", "edge-01", "Device Offline", "warning", {})
    with pytest.raises(jsonschema.ValidationError):
        check(messages.frame(stored, 1, replayed=False))
