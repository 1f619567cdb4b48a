"""The signed-command wire format: canonical bytes, strict parsing, signing."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.decisions.signed import (
    FIELDS,
    MAX_MESSAGE_BYTES,
    REASONS,
    SIGNED_FIELDS,
    Action,
    Command,
    Reason,
    Refusal,
    canonical_bytes,
    format_time,
    parse,
    sign,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1, "node": "node-1", "action": "confirm", "target": "rec-42", "args": {},
        "key_id": "alice", "issued_at": "2025-01-31T14:05:00Z", "expires_at": "2025-01-31T14:10:00Z",
        "nonce": "q3Zr5cYb0m8x1d2Kf7Lw9a",
    }
    base.update(changes)
    return base


def message(**changes: Any) -> dict[str, Any]:
    """A signed message as a dict, with `changes` applied after signing (sig included)."""
    doc: dict[str, Any] = json.loads(sign(fields(), KEY))
    doc.update(changes)
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


def malformed(data: bytes) -> str:
    result = parse(data)
    assert isinstance(result, Refusal), result
    assert result.code is Reason.MALFORMED
    assert result.command is None
    return result.detail


def test_signed_bytes_are_the_documented_canonical_json() -> None:
    expected = (b'{"action":"confirm","args":{},"expires_at":"2025-01-31T14:10:00Z","issued_at":'
                b'"2025-01-31T14:05:00Z","key_id":"alice","node":"node-1","nonce":"q3Zr5cYb0m8x1d2Kf7Lw9a",'
                b'"target":"rec-42","v":1}')
    assert canonical_bytes(fields()) == expected
    cmd = parse(sign(fields(), KEY))
    assert isinstance(cmd, Command)
    assert cmd.signed_bytes == expected
    KEY.public_key().verify(cmd.signature, expected)  # raises if the signature covered anything else


def test_round_trip_keeps_every_field() -> None:
    cmd = parse(sign(fields(action="set_export_limit", target="export_limit",
                            args={"limit_kw": 25.5, "reason": "Netzbetreiber: Engpass ü"}), KEY))
    assert isinstance(cmd, Command)
    assert cmd.action is Action.SET_EXPORT_LIMIT
    assert (cmd.node, cmd.target, cmd.key_id, cmd.nonce, cmd.v) == ("node-1", "export_limit", "alice",
                                                                    "q3Zr5cYb0m8x1d2Kf7Lw9a", 1)
    assert dict(cmd.args) == {"limit_kw": 25.5, "reason": "Netzbetreiber: Engpass ü"}
    assert cmd.issued_at == dt.datetime(2025, 1, 31, 14, 5, tzinfo=dt.UTC)
    assert cmd.expires_at == dt.datetime(2025, 1, 31, 14, 10, tzinfo=dt.UTC)
    assert len(cmd.signature) == 64
    with pytest.raises(TypeError):
        cmd.args["limit_kw"] = 99  # type: ignore[index]


def test_layout_and_key_order_of_the_message_do_not_change_the_signed_bytes() -> None:
    compact = sign(fields(args={"limit_kw": 25, "reason": "a \"quoted\" \\ word"}, action="set_export_limit",
                          target="export_limit"), KEY)
    doc = json.loads(compact)
    pretty = json.dumps(dict(reversed(list(doc.items()))), indent=3, ensure_ascii=True).encode()
    first, second = parse(compact), parse(pretty)
    assert isinstance(first, Command) and isinstance(second, Command)
    assert first.signed_bytes == second.signed_bytes
    KEY.public_key().verify(second.signature, second.signed_bytes)


def test_an_integer_and_a_float_are_signed_as_written() -> None:
    as_int = parse(sign(fields(action="set_export_limit", target="export_limit", args={"limit_kw": 25}), KEY))
    as_float = parse(sign(fields(action="set_export_limit", target="export_limit", args={"limit_kw": 25.0}), KEY))
    assert isinstance(as_int, Command) and isinstance(as_float, Command)
    assert b'"limit_kw":25}' in as_int.signed_bytes
    assert b'"limit_kw":25.0}' in as_float.signed_bytes
    with pytest.raises(InvalidSignature):  # the same value written the other way is another message
        KEY.public_key().verify(as_int.signature, as_float.signed_bytes)


def test_fractional_seconds_up_to_nanoseconds_are_read_to_the_microsecond() -> None:
    cmd = parse(sign(fields(issued_at="2025-01-31T14:05:00.123456789Z", expires_at="2025-01-31T14:05:01.5Z"), KEY))
    assert isinstance(cmd, Command)
    assert cmd.issued_at == dt.datetime(2025, 1, 31, 14, 5, 0, 123456, tzinfo=dt.UTC)
    assert cmd.expires_at == dt.datetime(2025, 1, 31, 14, 5, 1, 500000, tzinfo=dt.UTC)


def test_a_lifetime_up_to_the_maximum_parses_and_beyond_it_does_not() -> None:
    day = sign(fields(expires_at="2025-02-01T14:05:00Z"), KEY)
    assert isinstance(parse(day), Command)
    assert "lifetime is 86400 s, at most 3600 s" in malformed_with(day, max_lifetime_s=3600)
    assert "lifetime is 86401 s" in malformed(raw(message(expires_at="2025-02-01T14:05:01Z")))


def malformed_with(data: bytes, **kwargs: Any) -> str:
    result = parse(data, **kwargs)
    assert isinstance(result, Refusal) and result.code is Reason.MALFORMED
    return result.detail


BAD_DOCUMENTS: list[tuple[str, Any, str]] = [
    ("array", [1, 2], "a JSON object, got an array"),
    ("string", "hello", "a JSON object, got a string"),
    ("missing", {k: v for k, v in message().items() if k != "nonce"}, "missing field nonce"),
    ("extra", message(extra=1), "unknown field 'extra'"),
    ("version", message(v=2), "field 'v' must be 1"),
    ("version bool", message(v=True), "field 'v' must be 1"),
    ("node type", message(node=7), "field 'node' must be a string, got a number"),
    ("node chars", message(node="node 1"), "field 'node' must be a node id"),
    ("action", message(action="shutdown"), "field 'action' must be one of confirm, reject"),
    ("target empty", message(target=""), "field 'target' must be 1-128 characters"),
    ("target long", message(target="r" * 129), "field 'target' must be 1-128 characters"),
    ("target control", message(target="rec\n42"), "control character"),
    ("target surrogate", message(target="rec\ud800"), "lone surrogate"),
    ("args type", message(args=[]), "field 'args' must be an object, got an array"),
    ("args key", message(args={"Limit": 1}), "args key 'Limit' must match"),
    ("args nested", message(args={"x": {"y": 1}}), "args.x must be a string, number or boolean, got an object"),
    ("args null", message(args={"x": None}), "got null"),
    ("args big int", message(args={"x": 2**53 + 1}), "beyond ±2**53"),
    ("args long text", message(args={"reason": "x" * 1001}), "at most 1000 allowed"),
    ("args many", message(args={f"a{i}": i for i in range(17)}), "17 entries, at most 16"),
    ("reason type", message(args={"reason": 5}), "args.reason must be a string"),
    ("limit on confirm", message(args={"limit_kw": 5}), "args.limit_kw is only for set_export_limit"),
    ("set without limit", message(action="set_export_limit", target="export_limit"), "needs args.limit_kw"),
    ("limit bool", message(action="set_export_limit", target="export_limit", args={"limit_kw": True}),
     "args.limit_kw must be a number, got a boolean"),
    ("export target", message(action="clear_export_limit", target="rec-42"), "takes target 'export_limit'"),
    ("trip target", message(action="reset_trip", target="Bess Overtemp"), "takes an interlock name"),
    ("key id", message(key_id="-alice"), "field 'key_id' must be a key id"),
    ("time zone", message(issued_at="2025-01-31T14:05:00+00:00"), "must be an RFC 3339 UTC time"),
    ("time lower z", message(issued_at="2025-01-31T14:05:00z"), "must be an RFC 3339 UTC time"),
    ("time no seconds", message(issued_at="2025-01-31T14:05Z"), "must be an RFC 3339 UTC time"),
    ("time date", message(issued_at="2025-02-30T14:05:00Z"), "is not a valid time"),
    ("time type", message(expires_at=1738332300), "field 'expires_at' must be a string"),
    ("time order", message(expires_at="2025-01-31T14:05:00Z"), "expires_at must be later than issued_at"),
    ("nonce short", message(nonce="abc"), "16-64 characters"),
    ("nonce chars", message(nonce="q3Zr5cYb0m8x1d2K+7Lw9a"), "16-64 characters"),
    ("nonce long", message(nonce="a" * 65), "1-64 characters"),
    ("sig type", message(sig=None), "field 'sig' must be a string, got null"),
    ("sig base64", message(sig="not base64!"), "standard base64"),
    ("sig urlsafe", message(sig=base64.urlsafe_b64encode(b"\xfb" * 64).decode()), "standard base64"),
    ("sig length", message(sig=base64.b64encode(b"x" * 63).decode()), "must hold 64 bytes, got 63"),
    ("sig unpadded", message(sig=base64.b64encode(b"x" * 64).decode().rstrip("=")), "standard base64"),
]


@pytest.mark.parametrize(("doc", "expected"), [(d, e) for _, d, e in BAD_DOCUMENTS],
                         ids=[name for name, _, _ in BAD_DOCUMENTS])
def test_malformed_documents_are_refused_with_the_problem(doc: Any, expected: str) -> None:
    assert expected in malformed(raw(doc))


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8 (byte 0)"),
    (b"\xef\xbb\xbf{}", "not JSON"),
    (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "at most 8192 allowed"),
    (b'{"v": 1, "v": 1}', "key 'v' appears twice"),
    (b'{"x": NaN}', "NaN is not a number"),
    (b'{"x": -Infinity}', "-Infinity is not a number"),
    (b'{"x": 1e999}', "out of range"),
    (b'{"x": ' + b"9" * 5000 + b"}", "unreadable command"),
    (b"[" * 4000 + b"]" * 4000, "nested too deeply"),
], ids=["empty", "utf16", "bom", "size", "duplicate", "nan", "infinity", "overflow", "huge int", "deep"])
def test_bytes_that_are_no_command_are_refused(data: bytes, expected: str) -> None:
    assert expected in malformed(data)


def test_parse_refuses_what_is_not_bytes() -> None:
    assert "a command is bytes, got str" in malformed("{}")  # type: ignore[arg-type]


def test_duplicate_keys_inside_args_are_refused() -> None:
    doc = raw(message()).replace(b'"args": {}', b'"args": {"reason": "a", "reason": "b"}')
    assert "key 'reason' appears twice" in malformed(doc)


def test_sign_refuses_fields_that_would_not_parse() -> None:
    with pytest.raises(ValueError, match="missing field nonce"):
        sign({k: v for k, v in fields().items() if k != "nonce"}, KEY)
    with pytest.raises(ValueError, match="unknown field 'sig'"):
        sign({**fields(), "sig": "x"}, KEY)
    with pytest.raises(ValueError, match="16-64 characters"):
        sign(fields(nonce="short"), KEY)
    with pytest.raises(ValueError, match="cannot write the command as JSON"):
        sign(fields(args={"limit_kw": float("nan")}), KEY)
    with pytest.raises(ValueError, match="lifetime is 300 s, at most 60 s"):
        sign(fields(), KEY, max_lifetime_s=60)


def test_format_time_writes_what_parse_reads() -> None:
    moment = dt.datetime(2025, 6, 1, 12, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_time(moment) == "2025-06-01T10:00:05Z"
    assert format_time(moment.replace(microsecond=250)) == "2025-06-01T10:00:05.000250Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(dt.datetime(2025, 6, 1))
    cmd = parse(sign(fields(issued_at=format_time(moment.replace(microsecond=250)),
                            expires_at=format_time(moment + dt.timedelta(minutes=1))), KEY))
    assert isinstance(cmd, Command)
    assert cmd.issued_at == moment.replace(microsecond=250)


def test_every_reason_has_a_one_line_meaning() -> None:
    assert set(REASONS) == set(Reason)
    for reason, meaning in REASONS.items():
        assert meaning and "\n" not in meaning, reason
    assert {r.value for r in Reason} >= {"bad_signature", "unknown_key", "wrong_role", "wrong_node", "expired",
                                         "not_yet_valid", "replayed", "unknown_recommendation",
                                         "closed_recommendation", "malformed"}
    assert {"sig"} == FIELDS - SIGNED_FIELDS


@given(st.binary(max_size=MAX_MESSAGE_BYTES + 16))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse(data)
    assert isinstance(result, Command | Refusal)
    if isinstance(result, Refusal):
        assert result.code is Reason.MALFORMED and result.detail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(st.fixed_dictionaries({name: json_values for name in sorted(FIELDS)}))
def test_arbitrary_values_in_every_field_never_raise(doc: dict[str, Any]) -> None:
    result = parse(json.dumps(doc).encode())
    assert isinstance(result, Refusal) and result.code is Reason.MALFORMED


@given(st.sampled_from(sorted(FIELDS)), json_values)
def test_one_arbitrary_field_in_a_valid_message_never_raises(name: str, value: Any) -> None:
    doc = message()
    doc[name] = value
    result = parse(json.dumps(doc).encode())
    if isinstance(result, Command):  # still well-formed: it must still say exactly what it said
        signed = {**json.loads(result.signed_bytes), "sig": base64.b64encode(result.signature).decode()}
        assert signed[name] == value
    else:
        assert result.code is Reason.MALFORMED
