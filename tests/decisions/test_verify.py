"""Verifying signed commands: each refusal reason, the order of the checks, clock skew, replays across
restarts, the trust store from the config, and the keygen/sign tools end to end."""

from __future__ import annotations

import base64
import datetime as dt
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.cli import main
from edgeagent.configcheck import Checker, KeyLines
from edgeagent.decisions.nonces import FILENAME, NonceStore
from edgeagent.decisions.signed import Action, format_time, sign
from edgeagent.decisions.trust import ROLE_ACTIONS, Role, TrustedKey, TrustStore, parse_trust, required_role
from edgeagent.decisions.verify import REASONS, Accepted, Reason, Refusal, Verifier

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
NODE = "node-1"
PRIVATE = {name: Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32)
           for i, name in enumerate(["alice", "dave", "tess", "multi", "mallory"])}
ROLES = {"alice": {Role.OPERATOR}, "dave": {Role.DISPATCHER}, "tess": {Role.TECHNICIAN},
         "multi": {Role.OPERATOR, Role.TECHNICIAN}}
TARGETS = {Action.CONFIRM: "rec-1", Action.REJECT: "rec-1", Action.SET_EXPORT_LIMIT: "export_limit",
           Action.CLEAR_EXPORT_LIMIT: "export_limit", Action.RESET_TRIP: "bess_overtemp"}


def trust_store() -> TrustStore:
    return TrustStore(TrustedKey(k, PRIVATE[k].public_key(), frozenset(r), k.title()) for k, r in ROLES.items())


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


_counter = iter(range(10**9))


def fresh_nonce() -> str:
    return f"nonce-{next(_counter):012d}"


def command(key_id: str = "alice", action: Action = Action.CONFIRM, *, signer: str | None = None,
            node: str = NODE, issued: dt.datetime = T0, lifetime_s: float = 300, nonce: str | None = None,
            args: dict[str, Any] | None = None) -> bytes:
    if args is None:
        args = {"limit_kw": 20.0} if action is Action.SET_EXPORT_LIMIT else {}
    fields = {"v": 1, "node": node, "action": action.value, "target": TARGETS[action], "args": args,
              "key_id": key_id, "issued_at": format_time(issued),
              "expires_at": format_time(issued + dt.timedelta(seconds=lifetime_s)),
              "nonce": nonce or fresh_nonce()}
    return sign(fields, PRIVATE[signer or key_id])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def nonces(tmp_path: Path) -> Iterator[NonceStore]:
    with NonceStore(tmp_path / FILENAME) as store:
        yield store


@pytest.fixture
def verifier(nonces: NonceStore, clock: Clock) -> Verifier:
    return Verifier(NODE, trust_store(), nonces, clock, skew_s=30)


def refused(result: Accepted | Refusal, code: Reason, *words: str) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.code is code, result
    for word in words:
        assert word in result.detail, result.detail
    return result


# --- one test per reason ---------------------------------------------------------------------------

def test_a_valid_command_is_accepted_with_its_key(verifier: Verifier) -> None:
    result = verifier.check(command("alice"))
    assert isinstance(result, Accepted)
    assert result.key.key_id == "alice" and result.key.name == "Alice"
    assert result.command.action is Action.CONFIRM and result.command.target == "rec-1"


def test_malformed(verifier: Verifier) -> None:
    refused(verifier.check(b"{not json"), Reason.MALFORMED, "not JSON")


def test_unknown_key(verifier: Verifier) -> None:
    result = refused(verifier.check(command("mallory")), Reason.UNKNOWN_KEY, "'mallory'")
    assert result.command is not None and result.command.key_id == "mallory"


def test_bad_signature_from_another_key(verifier: Verifier) -> None:
    refused(verifier.check(command("alice", signer="mallory")), Reason.BAD_SIGNATURE, "key 'alice'")


def test_bad_signature_after_a_field_was_changed(verifier: Verifier) -> None:
    doc = json.loads(command("dave", Action.SET_EXPORT_LIMIT))
    doc["args"]["limit_kw"] = 80.0
    refused(verifier.check(json.dumps(doc).encode()), Reason.BAD_SIGNATURE)


def test_wrong_node(verifier: Verifier) -> None:
    refused(verifier.check(command(node="node-2")), Reason.WRONG_NODE, "'node-2'", "'node-1'")


@pytest.mark.parametrize(("key_id", "action", "needed"), [
    ("alice", Action.SET_EXPORT_LIMIT, "dispatcher"),
    ("alice", Action.RESET_TRIP, "technician"),
    ("dave", Action.CONFIRM, "operator"),
    ("dave", Action.RESET_TRIP, "technician"),
    ("tess", Action.REJECT, "operator"),
    ("multi", Action.CLEAR_EXPORT_LIMIT, "dispatcher"),
])
def test_wrong_role(verifier: Verifier, key_id: str, action: Action, needed: str) -> None:
    refused(verifier.check(command(key_id, action)), Reason.WRONG_ROLE, f"needs the role {needed}", key_id)


@pytest.mark.parametrize(("key_id", "action"), [(k, a) for k, roles in ROLES.items() for r in roles
                                                for a in ROLE_ACTIONS[r]])
def test_every_role_may_do_its_actions(verifier: Verifier, key_id: str, action: Action) -> None:
    assert isinstance(verifier.check(command(key_id, action)), Accepted)


def test_not_yet_valid(verifier: Verifier) -> None:
    refused(verifier.check(command(issued=T0 + dt.timedelta(minutes=5))), Reason.NOT_YET_VALID,
            "300.0 s ahead", "tolerance 30 s")


def test_expired(verifier: Verifier) -> None:
    refused(verifier.check(command(issued=T0 - dt.timedelta(minutes=10))), Reason.EXPIRED,
            "expired at 2025-06-01T11:55:00Z", "300.0 s before")


def test_a_clock_without_a_usable_time_accepts_nothing(verifier: Verifier, clock: Clock) -> None:
    clock.now = float("nan")
    refused(verifier.check(command()), Reason.EXPIRED, "no usable time")


def test_replayed(verifier: Verifier) -> None:
    raw = command()
    assert isinstance(verifier.check(raw), Accepted)
    refused(verifier.check(raw), Reason.REPLAYED, "nonce")


def test_replayed_after_a_restart(tmp_path: Path, clock: Clock) -> None:
    raw = command("tess", Action.RESET_TRIP)
    with NonceStore(tmp_path / FILENAME) as store:
        assert isinstance(Verifier(NODE, trust_store(), store, clock).check(raw), Accepted)
    clock.now += 60
    with NonceStore(tmp_path / FILENAME) as store:
        refused(Verifier(NODE, trust_store(), store, clock).check(raw), Reason.REPLAYED)


def test_the_same_nonce_with_another_key_is_no_replay(verifier: Verifier) -> None:
    assert isinstance(verifier.check(command("alice", nonce="shared-nonce-0001")), Accepted)
    assert isinstance(verifier.check(command("tess", Action.RESET_TRIP, nonce="shared-nonce-0001")), Accepted)


def test_a_damaged_nonce_store_refuses_every_valid_command(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(b"garbage" * 1000)
    verifier = Verifier(NODE, trust_store(), NonceStore(path), clock)
    for key_id, action in [("alice", Action.CONFIRM), ("dave", Action.SET_EXPORT_LIMIT), ("tess", Action.RESET_TRIP)]:
        refused(verifier.check(command(key_id, action)), Reason.NONCE_STORE_FAULT, str(path), "mv ")


def test_reasons_are_exported_in_one_place() -> None:
    assert set(REASONS) == set(Reason)


# --- order of the checks ---------------------------------------------------------------------------

def test_the_first_failing_check_names_the_refusal(verifier: Verifier) -> None:
    late = T0 - dt.timedelta(hours=1)
    refused(verifier.check(command("mallory", Action.RESET_TRIP, node="node-2", issued=late)), Reason.UNKNOWN_KEY)
    refused(verifier.check(command("alice", Action.RESET_TRIP, signer="dave", node="node-2", issued=late)),
            Reason.BAD_SIGNATURE)
    refused(verifier.check(command("alice", Action.RESET_TRIP, node="node-2", issued=late)), Reason.WRONG_NODE)
    refused(verifier.check(command("alice", Action.RESET_TRIP, issued=late)), Reason.WRONG_ROLE)
    used = command("alice", nonce="used-nonce-000001")
    assert isinstance(verifier.check(used), Accepted)
    refused(verifier.check(command("alice", issued=late, nonce="used-nonce-000001")), Reason.EXPIRED)


def test_a_refused_command_does_not_use_up_its_nonce(verifier: Verifier, clock: Clock) -> None:
    nonce = "precious-nonce-01"
    refused(verifier.check(command("alice", Action.RESET_TRIP, nonce=nonce)), Reason.WRONG_ROLE)
    refused(verifier.check(command("alice", node="node-2", nonce=nonce)), Reason.WRONG_NODE)
    refused(verifier.check(command("alice", signer="mallory", nonce=nonce)), Reason.BAD_SIGNATURE)
    refused(verifier.check(command("alice", issued=T0 + dt.timedelta(hours=1), nonce=nonce)), Reason.NOT_YET_VALID)
    assert len(verifier.nonces) == 0
    assert isinstance(verifier.check(command("alice", nonce=nonce)), Accepted)


# --- clock skew edges ------------------------------------------------------------------------------

@pytest.mark.parametrize(("offset_s", "expected"), [
    (-30.0, None), (-30.001, Reason.NOT_YET_VALID),     # issued_at - skew is the first valid instant
    (329.999, None), (330.0, Reason.EXPIRED),           # expires_at + skew is the first invalid one
    (0.0, None), (300.0, None),
])
def test_the_window_is_issued_minus_skew_to_expires_plus_skew(verifier: Verifier, clock: Clock, offset_s: float,
                                                             expected: Reason | None) -> None:
    clock.now = T0.timestamp() + offset_s
    result = verifier.check(command(lifetime_s=300))
    if expected is None:
        assert isinstance(result, Accepted), result
    else:
        refused(result, expected)


def test_zero_skew_is_exact(nonces: NonceStore, clock: Clock) -> None:
    verifier = Verifier(NODE, trust_store(), nonces, clock, skew_s=0)
    clock.now = T0.timestamp() - 0.001
    refused(verifier.check(command()), Reason.NOT_YET_VALID)
    clock.now = T0.timestamp() + 300
    refused(verifier.check(command()), Reason.EXPIRED)


def test_the_nonce_is_kept_until_the_command_can_no_longer_be_accepted(verifier: Verifier, clock: Clock) -> None:
    raw = command(lifetime_s=300)
    assert isinstance(verifier.check(raw), Accepted)
    verifier.nonces.prune(T0.timestamp() + 329 + verifier.nonces.prune_grace_s)
    clock.now = T0.timestamp() + 329
    refused(verifier.check(raw), Reason.REPLAYED)


def test_the_maximum_lifetime_is_the_verifiers(nonces: NonceStore, clock: Clock) -> None:
    verifier = Verifier(NODE, trust_store(), nonces, clock, max_lifetime_s=600)
    refused(verifier.check(command(lifetime_s=601)), Reason.MALFORMED, "at most 600 s")
    assert isinstance(verifier.check(command(lifetime_s=600)), Accepted)


@pytest.mark.parametrize("kwargs", [{"skew_s": -1}, {"skew_s": float("inf")}, {"max_lifetime_s": 0},
                                    {"node_id": "node 1"}])
def test_verifier_settings_are_checked(nonces: NonceStore, kwargs: dict[str, Any]) -> None:
    settings_ = {"node_id": NODE, "trust": trust_store(), "nonces": nonces, **kwargs}
    with pytest.raises(ValueError):
        Verifier(**settings_)


# --- properties ------------------------------------------------------------------------------------

SIGNED_MUTATIONS = st.one_of(
    st.tuples(st.just("node"), st.sampled_from(["node-2", "Node-1", "node-10"])),
    st.tuples(st.just("target"), st.sampled_from(["rec-2", "rec-1 ", "export_limit"])),
    st.tuples(st.just("action"), st.sampled_from(["reject"])),
    st.tuples(st.just("key_id"), st.sampled_from(["dave", "tess", "multi", "mallory"])),
    st.tuples(st.just("issued_at"), st.sampled_from(["2025-06-01T11:59:59Z", "2025-06-01T12:00:00.0Z"])),
    st.tuples(st.just("expires_at"), st.sampled_from(["2025-06-01T12:06:00Z", "2025-06-01T12:04:59Z"])),
    st.tuples(st.just("nonce"), st.text("abcdefXYZ0123456789-_", min_size=16, max_size=64)),
    st.tuples(st.just("args"), st.sampled_from([{"reason": "x"}, {"reason": ""}, {"flag": True}])),
    st.tuples(st.just("v"), st.sampled_from([1.0, "1"])),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=SIGNED_MUTATIONS)
def test_a_changed_field_never_verifies(verifier: Verifier, mutation: tuple[str, Any]) -> None:
    name, value = mutation
    doc = json.loads(command("alice", nonce="mutated-nonce-01"))
    if doc[name] == value:
        return
    doc[name] = value
    result = verifier.check(json.dumps(doc).encode())
    assert isinstance(result, Refusal)
    assert result.code in (Reason.BAD_SIGNATURE, Reason.MALFORMED, Reason.UNKNOWN_KEY)
    assert len(verifier.nonces) == 0


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 63), st.integers(0, 7))
def test_a_flipped_signature_bit_never_verifies(verifier: Verifier, byte: int, bit: int) -> None:
    raw = command("alice", nonce="flipped-nonce-01")
    cmd = json.loads(raw)
    sig = bytearray(base64.b64decode(cmd["sig"]))
    sig[byte] ^= 1 << bit
    cmd["sig"] = base64.b64encode(bytes(sig)).decode()
    refused(verifier.check(json.dumps(cmd).encode()), Reason.BAD_SIGNATURE)


@dataclass(frozen=True)
class Op:
    """One message in a random session: who claims to sign, who really signs, what, where, when."""

    claimed: str          # key_id in the message
    signer: str           # whose private key made the signature
    action: Action
    node: str
    offset_s: float       # issued_at relative to the verifier's clock
    nonce: str
    tamper: bool          # a signed field changed after signing
    restart: bool         # reopen the nonce store before this message


ops = st.builds(
    Op,
    claimed=st.sampled_from(["alice", "dave", "tess", "multi", "mallory"]),
    signer=st.sampled_from(["alice", "dave", "tess", "multi", "mallory"]),
    action=st.sampled_from(list(Action)),
    node=st.sampled_from([NODE, NODE, "node-2"]),
    offset_s=st.sampled_from([0.0, -200.0, 25.0, 31.0, -329.0, -331.0, 3600.0]),
    nonce=st.sampled_from([f"pool-nonce-{i:06d}" for i in range(4)]),
    tamper=st.booleans(),
    restart=st.booleans(),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=25))
def test_only_fresh_commands_signed_by_a_key_with_the_role_run(tmp_path_factory: pytest.TempPathFactory,
                                                               session: list[Op]) -> None:
    """The oracle is written from the issue's rule, independently of the verifier's code path:
    accepted ⇔ signed by the trusted key it names, unchanged, holding the action's role, for this
    node, inside the window, and (key, nonce) never accepted before (also across restarts)."""
    path = tmp_path_factory.mktemp("nonces") / FILENAME
    clock = Clock()
    store = NonceStore(path)
    verifier = Verifier(NODE, trust_store(), store, clock, skew_s=30)
    used: set[tuple[str, str]] = set()
    try:
        for op in session:
            clock.now += 1
            if op.restart:
                store.close()
                store = NonceStore(path)
                verifier = Verifier(NODE, trust_store(), store, clock, skew_s=30)
            issued = dt.datetime.fromtimestamp(clock.now + op.offset_s, dt.UTC)
            raw = command(op.claimed, op.action, signer=op.signer, node=op.node, issued=issued, nonce=op.nonce)
            if op.tamper:
                doc = json.loads(raw)
                doc["args"] = {**doc["args"], "reason": "changed"}
                raw = json.dumps(doc).encode()
            result = verifier.check(raw)
            expected = (op.claimed in ROLES and op.signer == op.claimed and not op.tamper
                        and any(op.action in ROLE_ACTIONS[r] for r in ROLES[op.claimed]) and op.node == NODE
                        and -330 < op.offset_s <= 30
                        and (op.claimed, op.nonce) not in used)
            assert isinstance(result, Accepted) == expected, (op, result)
            if isinstance(result, Accepted):
                used.add((op.claimed, op.nonce))
                assert result.key.key_id == op.claimed and result.key.may(op.action)
                assert result.command.node == NODE and result.command.action is op.action
    finally:
        store.close()


# --- the trust store from the config ---------------------------------------------------------------

def b64_public(name: str) -> str:
    return base64.b64encode(PRIVATE[name].public_key().public_bytes(serialization.Encoding.Raw,
                                                                    serialization.PublicFormat.Raw)).decode()


def load_trust(text: str, base: Path) -> tuple[TrustStore, list[str]]:
    checker = Checker(str(base / "site.toml"), KeyLines(text))
    store = parse_trust(checker, tomllib.loads(text))
    return store, checker.format()


def test_trust_keys_inline_and_from_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    dave_public = PRIVATE["dave"].public_key()
    (keys / "dave.pem").write_bytes(dave_public.public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    (keys / "tess.pub").write_bytes(PRIVATE["tess"].public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" tess@laptop\n")
    (keys / "multi.raw").write_bytes(PRIVATE["multi"].public_key().public_bytes(serialization.Encoding.Raw,
                                                                                serialization.PublicFormat.Raw))
    (tmp_path / "mallory.b64").write_text(b64_public("mallory") + "\n")
    store, problems = load_trust(f"""
[[trust.keys]]
id = "alice"
name = "Alice Berger"
roles = ["operator"]
public_key = "{b64_public('alice')}"

[[trust.keys]]
id = "dave"
name = "Dispatch desk"
roles = ["dispatcher"]
public_key_file = "keys/dave.pem"

[[trust.keys]]
id = "tess"
name = "Tess"
roles = ["technician"]
public_key_file = "keys/tess.pub"

[[trust.keys]]
id = "multi"
name = "Max"
roles = ["operator", "technician"]
public_key_file = "{keys / 'multi.raw'}"

[[trust.keys]]
id = "mallory"
name = "Mallory"
roles = ["dispatcher"]
public_key_file = "mallory.b64"
""", tmp_path)
    assert problems == []
    assert [k.key_id for k in store] == ["alice", "dave", "tess", "multi", "mallory"]
    dave = store.get("dave")
    assert dave is not None and dave.name == "Dispatch desk" and dave.roles == {Role.DISPATCHER}
    assert dave.raw_public_key == dave_public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(dave.fingerprint) == 64
    multi = store.get("multi")
    assert multi is not None and multi.may(Action.CONFIRM) and multi.may(Action.RESET_TRIP)
    assert not multi.may(Action.SET_EXPORT_LIMIT)
    assert "nobody" not in store and store.get("nobody") is None and len(store) == 5


def test_without_a_trust_table_nobody_is_trusted(tmp_path: Path) -> None:
    store, problems = load_trust('[site]\nid = "x"\n', tmp_path)
    assert problems == [] and len(store) == 0


def test_trust_problems_are_reported_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "private.pem").write_bytes(PRIVATE["alice"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ec.pem").write_bytes(ec_key.public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "junk.txt").write_text("hello\n")
    text = f"""[[trust.keys]]
id = "alice"
name = "Alice"
roles = ["operator"]
public_key = "{b64_public('alice')}"

[[trust.keys]]
id = "alice"
name = "Alice again"
roles = ["operater", "operater"]
public_key = "{b64_public('dave')}"

[[trust.keys]]
id = "bob"
name = "Bob"
roles = ["dispatcher"]
public_key = "{b64_public('alice')}"

[[trust.keys]]
id = "-x"
name = " "
roles = []
public_key = "AAAA"
rolse = 1

[[trust.keys]]
id = "p"
name = "P"
roles = ["technician", "technician"]
public_key_file = "private.pem"

[[trust.keys]]
id = "e"
name = "E"
roles = ["operator"]
public_key_file = "ec.pem"

[[trust.keys]]
id = "j"
name = "J"
roles = ["operator"]
public_key_file = "junk.txt"

[[trust.keys]]
id = "m"
name = "M"
roles = ["operator"]
public_key_file = "missing.pub"

[[trust.keys]]
id = "both"
name = "B"
roles = ["operator"]
public_key = "{b64_public('tess')}"
public_key_file = "x.pub"
"""
    store, problems = load_trust(text, tmp_path)
    cfg = str(tmp_path / "site.toml")
    expected = [
        f"{cfg}:10: trust.keys[1].roles[0]: unknown role (one of operator, dispatcher, technician); "
        "did you mean 'operator'? (got 'operater')",
        f"{cfg}:10: trust.keys[1].roles[1]: unknown role (one of operator, dispatcher, technician); "
        "did you mean 'operator'? (got 'operater')",
        f"{cfg}:17: trust.keys[2].public_key: the same public key as trust.keys[0]; one key, one id, one person",
        f"{cfg}:20: trust.keys[3].id: must match [A-Za-z0-9][A-Za-z0-9._:@\\-]{{0,63}} (got '-x')",
        f"{cfg}:21: trust.keys[3].name: must name the person who holds the key",
        f"{cfg}:22: trust.keys[3].roles: must be a non-empty list of operator, dispatcher, technician (got [])",
        f"{cfg}:23: trust.keys[3].public_key: must decode to 32 bytes (a raw Ed25519 public key), got 3",
        f"{cfg}:24: trust.keys[3].rolse: unknown key; did you mean 'roles'?",
    ]
    assert problems[:len(expected)] == expected
    rest = "\n".join(problems[len(expected):])
    assert f"{cfg}:29: trust.keys[4].roles[1]: listed twice (got 'technician')" in rest
    assert "trust.keys[4].public_key_file: " in rest and "holds a private key" in rest
    assert "trust.keys[5].public_key_file: " in rest and "not an Ed25519 public key" in rest
    assert "trust.keys[6].public_key_file: " in rest and "is not an Ed25519 public key in PEM" in rest
    assert "trust.keys[7].public_key_file: cannot read" in rest and "missing.pub" in rest
    assert f"{cfg}:50: trust.keys[8]: needs exactly one of public_key (base64) and public_key_file" in rest
    assert len(problems) == len(expected) + 6
    assert [k.key_id for k in store] == ["alice"]


def test_a_duplicate_id_is_reported_when_the_entry_is_otherwise_good(tmp_path: Path) -> None:
    _, problems = load_trust(f"""[[trust.keys]]
id = "alice"
name = "A"
roles = ["operator"]
public_key = "{b64_public('alice')}"
[[trust.keys]]
id = "alice"
name = "A2"
roles = ["operator"]
public_key = "{b64_public('dave')}"
""", tmp_path)
    assert problems == [f"{tmp_path / 'site.toml'}:7: trust.keys[1].id: trust.keys[0] already has this id "
                        "(got 'alice')"]


def test_trust_keys_must_be_an_array_of_tables(tmp_path: Path) -> None:
    store, problems = load_trust('[trust]\nkeys = "alice"\n', tmp_path)
    assert len(store) == 0
    assert problems == [f"{tmp_path / 'site.toml'}:2: trust.keys: must be an array of tables ([[trust.keys]]) "
                        "(got 'alice')"]


def test_trust_store_and_roles_hold_their_rules() -> None:
    key = TrustedKey("alice", PRIVATE["alice"].public_key(), frozenset({Role.OPERATOR}), "Alice")
    with pytest.raises(ValueError, match="two trusted keys have the id 'alice'"):
        TrustStore([key, TrustedKey("alice", PRIVATE["dave"].public_key(), frozenset({Role.OPERATOR}), "A")])
    with pytest.raises(ValueError, match="same public key"):
        TrustStore([key, TrustedKey("bob", PRIVATE["alice"].public_key(), frozenset({Role.OPERATOR}), "B")])
    with pytest.raises(ValueError, match="at least one role"):
        TrustedKey("x", PRIVATE["alice"].public_key(), frozenset(), "X")
    assert {a: required_role(a) for a in Action} == {
        Action.CONFIRM: Role.OPERATOR, Action.REJECT: Role.OPERATOR, Action.SET_EXPORT_LIMIT: Role.DISPATCHER,
        Action.CLEAR_EXPORT_LIMIT: Role.DISPATCHER, Action.RESET_TRIP: Role.TECHNICIAN}


# --- keygen and sign through the command line ------------------------------------------------------

def test_keygen_then_sign_then_verify_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys), "--id", "alice-2025", "--name", "Alice Bergér"]) == 0
    snippet = capsys.readouterr().out
    private = keys / "alice-2025.key"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (keys / "alice-2025.pub").exists()
    config = snippet.replace('roles = ["operator"]', 'roles = ["operator", "dispatcher"]')
    store, problems = load_trust(config, tmp_path)
    assert problems == []
    key = store.get("alice-2025")
    assert key is not None and key.name == "Alice Bergér"

    assert main(["sign", "--key", str(private), "--key-id", "alice-2025", "--node", NODE,
                 "--action", "set_export_limit", "--target", "export_limit", "--arg", "limit_kw=25.5",
                 "--arg", "reason=ramp test", "--lifetime", "120"]) == 0
    raw = capsys.readouterr().out.strip().encode()
    with NonceStore(tmp_path / FILENAME) as nonces:
        verifier = Verifier(NODE, store, nonces)  # the real clock: the CLI signed "now"
        result = verifier.check(raw)
        assert isinstance(result, Accepted), result
        assert dict(result.command.args) == {"limit_kw": 25.5, "reason": "ramp test"}
        lifetime = result.command.expires_at - result.command.issued_at
        assert lifetime == dt.timedelta(seconds=120)
        refused(verifier.check(raw), Reason.REPLAYED)

    before = private.read_bytes()
    assert main(["keygen", "--out", str(keys), "--id", "alice-2025"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert private.read_bytes() == before


def test_sign_accepts_an_openssh_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "id_ed25519"
    path.write_bytes(PRIVATE["tess"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                   serialization.NoEncryption()))
    assert main(["sign", "--key", str(path), "--key-id", "tess", "--node", NODE, "--action", "reset_trip",
                 "--target", "bess_overtemp"]) == 0
    raw = capsys.readouterr().out.strip().encode()
    with NonceStore(tmp_path / FILENAME) as nonces:
        assert isinstance(Verifier(NODE, trust_store(), nonces).check(raw), Accepted)


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["keygen", "--id", "bad id"], 2, "key id 'bad id' must be"),
    (["sign", "--action", "shutdown", "--target", "x"], 2, "unknown action 'shutdown'"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--arg", "noequals"], 2, "--arg takes KEY=VALUE"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--arg", "a=1", "--arg", "a=2"], 2, "given twice"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--lifetime", "0"], 2, "lifetime must be more than 0"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--lifetime", "90000"], 2, "at most 86400 s"),
    (["sign", "--action", "set_export_limit", "--target", "export_limit"], 2, "needs args.limit_kw"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--node", "bad node"], 2, "field 'node' must be"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--key", "missing.key"], 1, "cannot read the key"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--key", "public.pem"], 1, "not a PEM or OpenSSH private"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--key", "locked.pem"], 1, "is encrypted"),
    (["sign", "--action", "confirm", "--target", "rec-1", "--key", "ec.pem"], 1, "not an Ed25519 private key"),
])
def test_cli_mistakes_get_a_message_and_a_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, argv: list[str], status: int,
                                                 message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.key").write_bytes(PRIVATE["alice"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "public.pem").write_bytes(PRIVATE["alice"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "locked.pem").write_bytes(PRIVATE["alice"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    (tmp_path / "ec.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    defaults = {"keygen": ["--out", "keys"], "sign": ["--key", "good.key", "--key-id", "alice", "--node", NODE]}
    given_flags = set(argv)
    extra = [a for pair in zip(defaults[argv[0]][::2], defaults[argv[0]][1::2], strict=True)
             if pair[0] not in given_flags for a in pair]
    assert main([*argv, *extra]) == status
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_sign_command_args_are_typed_like_json() -> None:
    from edgeagent.decisions.keys_cli import parse_arg

    assert parse_arg("limit_kw=25") == ("limit_kw", 25)
    assert parse_arg("limit_kw=-2.5e1") == ("limit_kw", -25.0)
    assert parse_arg("dry=true") == ("dry", True)
    assert parse_arg("reason=a=b") == ("reason", "a=b")
    assert parse_arg("reason=25 kW") == ("reason", "25 kW")
    assert parse_arg("ticket=0012") == ("ticket", "0012")
    assert isinstance(parse_arg("limit_kw=25")[1], int)


def test_a_signed_command_carries_the_given_time_and_nonce(tmp_path: Path) -> None:
    from edgeagent.decisions.keys_cli import keygen, sign_command

    private, _ = keygen(tmp_path, "k1")
    raw = sign_command(private, NODE, "confirm", "rec-9", {}, 60, "k1", now=T0.replace(microsecond=700),
                       nonce="fixed-nonce-00001")
    doc = json.loads(raw)
    assert (doc["issued_at"], doc["expires_at"], doc["nonce"]) == ("2025-06-01T12:00:00Z", "2025-06-01T12:01:00Z",
                                                                   "fixed-nonce-00001")
