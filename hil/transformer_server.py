"""The transformer monitor's OPC UA server (asyncua): what a substation RTU or an IED would expose.

Address space, in the namespace :data:`NAMESPACE_URI` (its index is whatever the server assigns,
2 in practice; clients should resolve it from the URI)::

    Objects/
      Transformer                 ns=<i>;s=Transformer
        TopOilTemp   Double  °C   ns=<i>;s=Transformer.TopOilTemp    tank-top thermometer (may drift)
        HotSpotTemp  Double  °C   ns=<i>;s=Transformer.HotSpotTemp   fibre-optic probe at the winding hot spot
        AmbientTemp  Double  °C   ns=<i>;s=Transformer.AmbientTemp
        LoadCurrent  Double  A    ns=<i>;s=Transformer.LoadCurrent   LV line current
        FanStatus    Boolean      ns=<i>;s=Transformer.FanStatus     true while the ONAF fans run
        PlantTime    DateTime     ns=<i>;s=Transformer.PlantTime     the plant's clock (runs fast at speed > 1)

Each analogue variable has an ``EngineeringUnits`` property (``EUInformation``, UNECE codes ``CEL``
and ``AMP`` in the ``http://www.opcfoundation.org/UA/units/un/cefact`` namespace) and a
description.  Values are written every plant tick (0.1 s wall) with Good status and wall-clock
source and server timestamps; ``PlantTime`` carries the simulated time for clients that need
honest simulated hours at high speed (the plant clock has no zone: it is sent as if UTC).

Security: None only (the plant listens on loopback for tests and demos).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from hil.transformer import TransformerReadings

NAMESPACE_URI = "urn:edgeagent:hil:transformer"
OBJECT_NAME = "Transformer"
UNITS_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


class TransformerServerError(Exception):
    """The OPC UA server cannot start (port in use, bad host); the message is one clear line."""


@dataclass(frozen=True)
class _Unit:
    code: str  # UNECE common code
    symbol: str
    name: str

    def information(self) -> ua.EUInformation:
        unit_id = int.from_bytes(self.code.encode("ascii"), "big")  # OPC UA Part 8: the code's bytes
        return ua.EUInformation(
            NamespaceUri=UNITS_NAMESPACE,
            UnitId=unit_id,
            DisplayName=ua.LocalizedText(self.symbol),
            Description=ua.LocalizedText(self.name),
        )


_CELSIUS = _Unit("CEL", "°C", "degree Celsius")
_AMPERE = _Unit("AMP", "A", "ampere")


@dataclass(frozen=True)
class _Variable:
    name: str
    variant_type: ua.VariantType
    unit: _Unit | None
    description: str


VARIABLES = (
    _Variable("TopOilTemp", ua.VariantType.Double, _CELSIUS, "Top-oil temperature (tank-top thermometer)"),
    _Variable("HotSpotTemp", ua.VariantType.Double, _CELSIUS, "Winding hot-spot temperature (fibre-optic probe)"),
    _Variable("AmbientTemp", ua.VariantType.Double, _CELSIUS, "Ambient air temperature at the transformer"),
    _Variable("LoadCurrent", ua.VariantType.Double, _AMPERE, "Load current, LV line current"),
    _Variable("FanStatus", ua.VariantType.Boolean, None, "ONAF cooling fans running"),
    _Variable("PlantTime", ua.VariantType.DateTime, None, "Simulated plant clock (no zone; sent as UTC)"),
)


def node_identifier(name: str) -> str:
    """The string identifier of a variable's NodeId (``Transformer.TopOilTemp``)."""
    return f"{OBJECT_NAME}.{name}"


def _values(readings: TransformerReadings, plant_time: datetime) -> dict[str, Any]:
    return {
        "TopOilTemp": readings.top_oil_c,
        "HotSpotTemp": readings.hot_spot_c,
        "AmbientTemp": readings.ambient_c,
        "LoadCurrent": readings.load_current_a,
        "FanStatus": readings.fans_on,
        "PlantTime": plant_time.replace(tzinfo=UTC) if plant_time.tzinfo is None else plant_time,
    }


class TransformerServer:
    """An asyncua server with one ``Transformer`` object; :meth:`publish` writes new readings."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port  # 0: ephemeral, the real port is known after start()
        self.namespace_index = 0
        self._server: Server | None = None
        self._nodes: dict[str, Any] = {}  # variable name -> ua.NodeId

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def endpoint(self) -> dict[str, Any]:
        """For the ``hil.ready`` line: URL, namespace URI and index, NodeId strings by variable."""
        return {
            "url": self.url,
            "namespace": NAMESPACE_URI,
            "namespace_index": self.namespace_index,
            "nodes": {v.name: f"ns={self.namespace_index};s={node_identifier(v.name)}" for v in VARIABLES},
        }

    async def start(self, readings: TransformerReadings, plant_time: datetime) -> None:
        if self.port != 0:
            self._check_port_free()
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name("edgeagent HIL transformer monitor")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])  # no certificates, no passwords in clear
        self.namespace_index = int(await server.register_namespace(NAMESPACE_URI))
        await self._build(server, _values(readings, plant_time))
        try:
            await server.start()
        except OSError as exc:
            raise self._cannot_listen(exc) from None
        self.port = int(server.bserver.port) if server.bserver is not None else self.port
        self._server = server

    def _check_port_free(self) -> None:
        """Fail with one clear line before asyncua would log a traceback for a port in use."""
        try:
            probe = socket.create_server((self.host, self.port))  # SO_REUSEADDR, as asyncio's listener
        except OSError as exc:
            raise self._cannot_listen(exc) from None
        probe.close()

    def _cannot_listen(self, exc: OSError) -> TransformerServerError:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        return TransformerServerError(f"transformer: cannot listen on {self.host}:{self.port}: {reason}")

    async def _build(self, server: Server, values: dict[str, Any]) -> None:
        idx = self.namespace_index
        parent = await server.nodes.objects.add_object(f"ns={idx};s={OBJECT_NAME}", f"{idx}:{OBJECT_NAME}")
        for variable in VARIABLES:
            identifier = node_identifier(variable.name)
            node = await parent.add_variable(
                f"ns={idx};s={identifier}", f"{idx}:{variable.name}", values[variable.name], variable.variant_type
            )
            await node.write_attribute(
                AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(variable.description)))
            )
            if variable.unit is not None:
                await node.add_property(
                    f"ns={idx};s={identifier}.EngineeringUnits",
                    "0:EngineeringUnits",
                    variable.unit.information(),
                    ua.VariantType.ExtensionObject,
                    ObjectIds.EUInformation,
                )
            self._nodes[variable.name] = node.nodeid

    async def publish(self, readings: TransformerReadings, plant_time: datetime) -> None:
        """Write the current readings (Good, stamped with the wall clock)."""
        if self._server is None:
            return
        now = ua.DateTime.now(UTC)
        by_name = {v.name: v for v in VARIABLES}
        for name, value in _values(readings, plant_time).items():
            variant = ua.Variant(value, by_name[name].variant_type)
            data = ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
            await self._server.write_attribute_value(self._nodes[name], data)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
