"""Config types of an OPC UA device, and the parsing of node references shared by config and adapter.

A node is named either by its NodeId (`ns=2;s=Transformer.TopOil`, `i=2258`) or by a browse path
from the Root folder (`0:Objects/2:Transformer/2:TopOil`): a NodeId is stable on servers that
keep their address space, a browse path survives servers that number their nodes anew at each
start (common with generated address spaces). Which one a string is, is decided by its first
characters: a NodeId starts with `ns=N;` or an identifier type (`i=`, `s=`, `g=`, `b=`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from edgeagent.image import PointSpec

_NODEID_RE = re.compile(r"(ns=\d+;|nsu=[^;]+;)?[isgb]=.+", re.DOTALL)
_PATH_ELEMENT_RE = re.compile(r"(\d+):([^/]+)")
_URL_RE = re.compile(r"opc\.tcp://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?(/.*)?")
LOOPBACK_RE = re.compile(r"127(\.\d{1,3}){3}|::1|localhost")


class SecurityMode(enum.Enum):
    """The OPC UA message security mode of the secure channel."""

    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """Where a point's value lives: a NodeId string, or a browse path of (namespace index, name)."""

    text: str
    node_id: str | None
    path: tuple[tuple[int, str], ...] = ()

    @property
    def is_path(self) -> bool:
        return self.node_id is None


def parse_node_ref(text: str) -> NodeRef:
    """`ns=2;s=X` → a NodeId reference; `0:Objects/2:X/2:Y` → a browse path. Raises ValueError."""
    text = text.strip()
    if not text:
        raise ValueError("node is empty: give a NodeId (ns=2;s=Name) or a browse path (0:Objects/2:Name)")
    if _NODEID_RE.fullmatch(text):
        # Checked with asyncua's own parser so a NodeId accepted here is one the client can use.
        from asyncua.ua import NodeId  # local: config parsing loads the client library only when needed
        from asyncua.ua.uaerrors import UaStringParsingError

        try:
            NodeId.from_string(text)
        except UaStringParsingError:
            raise ValueError(f"node {text!r} is not a valid NodeId (e.g. ns=2;s=Transformer.TopOil or ns=2;i=1001)"
                             ) from None
        return NodeRef(text, text)
    elements: list[tuple[int, str]] = []
    for part in text.strip("/").split("/"):
        m = _PATH_ELEMENT_RE.fullmatch(part.strip())
        if m is None:
            raise ValueError(f"node {text!r} is neither a NodeId (ns=2;s=Name) nor a browse path whose elements "
                             f"are NAMESPACE:BrowseName (0:Objects/2:Transformer/2:TopOil); bad element {part!r}")
        elements.append((int(m.group(1)), m.group(2)))
    return NodeRef(text, None, tuple(elements))


@dataclass(frozen=True, slots=True)
class OpcUaNode:
    """One configured point: the local name (the point is `DEVICE.name`), its node, unit, and if it may be written."""

    name: str
    ref: NodeRef
    unit: str = ""
    writable: bool = False


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """Secure-channel settings. Policy "None" has no certificates; Basic256Sha256 needs all three files.

    `server_certificate` is the server's certificate we trust: the channel is encrypted to it, so a
    different server (or a man in the middle) cannot open it. The password is read from
    `password_file` at each connect, so it never sits in the config file.
    """

    policy: str = "None"  # "None" | "Basic256Sha256"
    mode: SecurityMode = SecurityMode.NONE
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None
    username: str | None = None
    password_file: str | None = None
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        if self.policy == "None":
            if self.mode is not SecurityMode.NONE:
                raise ValueError(f"security mode {self.mode.value} needs policy Basic256Sha256")
        elif self.policy == "Basic256Sha256":
            if self.mode is SecurityMode.NONE:
                raise ValueError("policy Basic256Sha256 needs mode Sign or SignAndEncrypt")
            missing = [k for k in ("certificate", "private_key", "server_certificate") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"policy Basic256Sha256 needs {', '.join(missing)}")
        else:
            raise ValueError(f"unknown security policy {self.policy!r} (use None or Basic256Sha256)")
        if self.password_file is not None and self.username is None:
            raise ValueError("a password_file needs a username")


@dataclass(frozen=True, slots=True)
class OpcUaDeviceConfig:
    """One OPC UA server and the nodes read from it through one subscription.

    `max_age_s` 0 means: two keep-alive periods plus the timeout plus one publishing interval. A
    value that does not change is confirmed by the subscription's keep-alives (see `OpcUaDevice`),
    so a point goes STALE when the subscription falls silent, not when the value holds still.
    """

    name: str
    url: str
    nodes: tuple[OpcUaNode, ...]
    security: OpcUaSecurity = OpcUaSecurity()
    publishing_s: float = 1.0
    timeout_s: float = 2.0
    retry_s: float = 5.0
    max_age_s: float = 0.0

    def __post_init__(self) -> None:
        if _URL_RE.fullmatch(self.url) is None:
            raise ValueError(f"url {self.url!r} must be opc.tcp://HOST[:PORT][/PATH]")
        if self.security.policy == "None" and not LOOPBACK_RE.fullmatch(self.host) and not self.security.allow_insecure:
            raise ValueError(f"refusing security policy None to {self.host}: plant data and any password would "
                             "cross the network unsigned; use policy Basic256Sha256 or set "
                             "security.allow_insecure = true")
        names = [n.name for n in self.nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"node name(s) {', '.join(dupes)} used twice")
        if self.publishing_s <= 0 or self.timeout_s <= 0 or self.retry_s <= 0:
            raise ValueError("publishing, timeout and retry intervals must be positive")
        if self.max_age_s == 0.0:
            object.__setattr__(self, "max_age_s", 2 * self.keepalive_s + self.timeout_s + self.publishing_s)
        if self.max_age_s < self.keepalive_s:
            raise ValueError(f"max_age {self.max_age_s:g} s is below the keep-alive period {self.keepalive_s:g} s: "
                             "an unchanging value would always be stale")

    @property
    def host(self) -> str:
        m = _URL_RE.fullmatch(self.url)
        return m.group(1).strip("[]") if m else ""

    @property
    def keepalive_s(self) -> float:
        """How often the server confirms an unchanged subscription: at least every second (or interval)."""
        return max(self.publishing_s, 1.0)

    @property
    def keepalive_count(self) -> int:
        return max(1, round(self.keepalive_s / self.publishing_s))

    @property
    def silence_s(self) -> float:
        """No publish response (data or keep-alive) for this long: the subscription is dead."""
        return 2 * self.keepalive_s + self.timeout_s

    def point_specs(self) -> list[PointSpec]:
        return [PointSpec(f"{self.name}.{n.name}", n.unit, self.max_age_s) for n in self.nodes]

    def point_names(self) -> list[str]:
        return [f"{self.name}.{n.name}" for n in self.nodes]
