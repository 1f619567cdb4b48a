"""Deciding whether a signed command may run: the checks, in a fixed order, and the first that fails
names the refusal.

1. `malformed`      the message does not parse (signed.parse)
2. `unknown_key`    key_id is not in the trust store
3. `bad_signature`  the signature does not verify with that key over the canonical fields
4. `wrong_node`     the command names another node
5. `wrong_role`     the key lacks the role for the action
6. `not_yet_valid`  now < issued_at - skew;  `expired`: now >= expires_at + skew
7. `replayed`       this key already used this nonce (`nonce_store_fault`: the store cannot tell)

Why this order: nothing about the sender is believed before the signature verified, so a forger learns
nothing beyond "bad signature"; the nonce is recorded last, only for a command that passed everything
else, so a refused command cannot burn a nonce the real operator is about to use, and a forged one cannot
fill the store. The recommendation checks (`unknown_recommendation`, `closed_recommendation`) need the
engine's state and happen there, after `Accepted`.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from edgeagent.decisions.nonces import NonceStore, NonceStoreError
from edgeagent.decisions.signed import MAX_LIFETIME_S, NODE_RE, REASONS, Command, Reason, Refusal, format_time, parse
from edgeagent.decisions.trust import TrustedKey, TrustStore, required_role

__all__ = ["REASONS", "Accepted", "Reason", "Refusal", "Verifier"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A command that passed every check, and the key (so the person) that signed it."""

    command: Command
    key: TrustedKey


class Verifier:
    """Checks raw command messages for one node. `clock` gives the wall time as Unix seconds;
    `skew_s` is how far this node's clock and the signer's may disagree; `max_lifetime_s` bounds
    expires_at - issued_at (a longer-lived command is malformed)."""

    def __init__(self, node_id: str, trust: TrustStore, nonces: NonceStore, clock: Clock = time.time,
                 skew_s: float = 30.0, max_lifetime_s: float = MAX_LIFETIME_S) -> None:
        if not NODE_RE.fullmatch(node_id):
            raise ValueError(f"node id {node_id!r} must match {NODE_RE.pattern}")
        if not (math.isfinite(skew_s) and 0 <= skew_s <= 3600):
            raise ValueError(f"skew_s must be between 0 and 3600 s, got {skew_s}")
        if not (math.isfinite(max_lifetime_s) and max_lifetime_s > 0):
            raise ValueError(f"max_lifetime_s must be a positive number of seconds, got {max_lifetime_s}")
        self.node_id = node_id
        self.trust = trust
        self.nonces = nonces
        self.clock = clock
        self.skew_s = skew_s
        self.max_lifetime_s = max_lifetime_s

    def check(self, raw: bytes) -> Accepted | Refusal:
        parsed = parse(raw, max_lifetime_s=self.max_lifetime_s)
        if isinstance(parsed, Refusal):
            return parsed
        cmd = parsed
        key = self.trust.get(cmd.key_id)
        if key is None:
            return Refusal(Reason.UNKNOWN_KEY, f"no trusted key has the id {cmd.key_id!r}", cmd)
        try:
            key.public_key.verify(cmd.signature, cmd.signed_bytes)
        except InvalidSignature:
            return Refusal(Reason.BAD_SIGNATURE, f"the signature does not verify with key {cmd.key_id!r}", cmd)
        if cmd.node != self.node_id:
            return Refusal(Reason.WRONG_NODE, f"the command is for node {cmd.node!r}, this is {self.node_id!r}", cmd)
        if not key.may(cmd.action):
            held = ", ".join(sorted(key.roles))
            return Refusal(Reason.WRONG_ROLE, f"{cmd.action} needs the role {required_role(cmd.action)}; key "
                           f"{cmd.key_id!r} ({key.name}) has {held}", cmd)
        now = self.clock()
        if not math.isfinite(now):
            return Refusal(Reason.EXPIRED, f"this node's clock gives no usable time ({now})", cmd)
        issued, expires = cmd.issued_at.timestamp(), cmd.expires_at.timestamp()
        if now < issued - self.skew_s:
            return Refusal(Reason.NOT_YET_VALID, f"issued_at {format_time(cmd.issued_at)} is {issued - now:.1f} s "
                           f"ahead of this node's clock ({_utc(now)}); tolerance {self.skew_s:g} s", cmd)
        if now >= expires + self.skew_s:
            return Refusal(Reason.EXPIRED, f"expired at {format_time(cmd.expires_at)}, {now - expires:.1f} s before "
                           f"this node's clock ({_utc(now)}); tolerance {self.skew_s:g} s", cmd)
        try:
            seen = self.nonces.seen_or_record(cmd.key_id, cmd.nonce, expires + self.skew_s, now)
        except NonceStoreError as exc:
            return Refusal(Reason.NONCE_STORE_FAULT, str(exc), cmd)
        if seen:
            return Refusal(Reason.REPLAYED, f"key {cmd.key_id!r} already used nonce {cmd.nonce!r}", cmd)
        return Accepted(cmd, key)


def _utc(unix_s: float) -> str:
    try:
        return format_time(dt.datetime.fromtimestamp(round(unix_s), dt.UTC))
    except (OverflowError, OSError, ValueError):
        return f"Unix time {unix_s:.0f}"
