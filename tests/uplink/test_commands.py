"""Inbound commands are untrusted: every malformed kind is refused with a precise reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.uplink.commands import MAX_COMMAND_BYTES, InboundCommand, Refusal, parse_command

PREFIX = "edgeagent/v1/site/edge-01/cmd/"


def cmd(**over: object) -> bytes:
    doc = {"schema": "edgeagent.command/1", "command_id": "c-1", "node": "edge-01", "command": "ping", "args": {}}
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def refuse(payload: bytes, topic: str = PREFIX + "ping") -> str:
    result = parse_command(topic, payload, PREFIX, "edge-01")
    assert isinstance(result, Refusal), result
    return result.reason


def test_a_valid_command_is_parsed() -> None:
    result = parse_command(PREFIX + "ping", cmd(args={"x": 1}), PREFIX, "edge-01")
    assert isinstance(result, InboundCommand)
    assert (result.command, result.command_id, dict(result.args)) == ("ping", "c-1", {"x": 1})


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "payload is not valid JSON"),
    (b"\xff\xfe", "payload is not UTF-8"),
    (b"[1, 2]", "payload must be a JSON object, not list"),
    (b'{"a": NaN}', "payload is not valid JSON"),
    (b'{"a": 1, "a": 2}', "payload has a duplicate key 'a'"),
    (cmd(command_id=None), "missing key 'command_id'"),
    (cmd(args=[1]), "args must be a JSON object, got list"),
    (cmd(node=7), "node must be a string, got int"),
    (cmd(schema="edgeagent.command/2"), "schema must be 'edgeagent.command/1'"),
    (cmd(command="reset"), "command 'reset' does not match the topic's 'ping'"),
    (cmd(node="edge-02"), "command is for node 'edge-02', this is 'edge-01'"),
    (cmd(expires_at="tomorrow"), "expires_at must be an ISO 8601 UTC time"),
    (cmd(extra=1), "unknown key 'extra'"),
    (cmd(command_id=""), "command_id must be 1 to 128 characters"),
])
def test_each_kind_of_malformed_command_has_its_reason(payload: bytes, reason: str) -> None:
    assert refuse(payload).startswith(reason)


def test_oversized_payload_is_refused_before_parsing() -> None:
    big = b'{"x": "' + b"a" * (10 * 2**20) + b'"}'
    assert refuse(big) == f"payload of {len(big)} bytes exceeds the limit of {MAX_COMMAND_BYTES} bytes"


def test_wrong_topic_is_refused() -> None:
    assert "is not edgeagent/v1/site/edge-01/cmd/COMMAND" in refuse(cmd(), topic=PREFIX + "Bad/Topic")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    assert refuse(b"[" * 100_000 + b"]" * 100_000).startswith("payload")


def test_refusal_keeps_the_command_id_when_there_is_one() -> None:
    result = parse_command(PREFIX + "ping", cmd(node="other"), PREFIX, "edge-01")
    assert isinstance(result, Refusal) and result.command_id == "c-1"


@given(st.binary(max_size=2000), st.text(max_size=40))
def test_arbitrary_bytes_never_raise(payload: bytes, suffix: str) -> None:
    result = parse_command(PREFIX + suffix, payload, PREFIX, "edge-01")
    assert isinstance(result, InboundCommand | Refusal)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_arbitrary_json_never_raises(doc: object) -> None:
    result = parse_command(PREFIX + "ping", json.dumps(doc).encode(), PREFIX, "edge-01")
    assert isinstance(result, Refusal) or isinstance(doc, dict)
