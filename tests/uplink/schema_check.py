"""Validate outgoing messages against the JSON Schemas shipped in edgeagent/uplink/schemas/."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

SCHEMA_FILES = {
    "edgeagent.state/1": "state.json",
    "edgeagent.telemetry/1": "telemetry.json",
    "edgeagent.event/1": "event.json",
    "edgeagent.command_rejected/1": "command_rejected.json",
    "edgeagent.command/1": "command.json",
    "edgeagent.decision/1": "decision.json",
}


@cache
def validator(schema_name: str) -> jsonschema.protocols.Validator:
    text = resources.files("edgeagent.uplink").joinpath("schemas", SCHEMA_FILES[schema_name]).read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def check(payload: bytes) -> dict[str, Any]:
    """Parse a wire payload and validate it against the schema it names; returns the document."""
    doc = json.loads(payload)
    assert isinstance(doc, dict) and doc.get("schema") in SCHEMA_FILES, doc
    validator(doc["schema"]).validate(doc)
    return doc
