"""The MQTT 5 side of an ingest worker: a persistent session whose acknowledgements wait
for the database.

QoS 1 alone only says "the broker handed it over": paho acknowledges a PUBLISH as soon as
its callback returns, so a worker killed between receipt and commit would lose what it
held. paho-mqtt (>= 2.0) can leave the PUBACK to the application (``manual_ack``);
aiomqtt 2.x does not expose it yet (aiomqtt issue #345, draft PR #346), so this module,
and only this one, reaches through ``aiomqtt.Client._client`` to the paho client.
Everything else calls ``ack(client, message)`` and ``batches(client)``. When aiomqtt
grows these, this file changes and nothing else does.

Two costs of the client libraries, measured on a worker (bench/bench_ingest.py), are
also kept here, behind the same door:

- aiomqtt's message iterator creates a task and an ``asyncio.wait`` per message;
  ``batches`` waits for one message that way, then takes whatever else has already
  arrived without waiting (the queue aiomqtt fills from paho's callback).
- paho's ``Properties`` builds its lookup tables (two dicts of 27 entries) for every
  received packet and finds names by linear search: about 60 us per PUBLISH carrying
  the poles' two properties, half the cost of the signature check.
  ``use_lean_properties()`` puts in its place a subclass whose tables are built once
  and looked up in dicts; the packet bytes are read by paho's own code, and anything
  unusual (a list, a checked value, a name not allowed) takes paho's own path. A
  PUBLISH's properties are decoded only when something reads them: a worker never
  does (they are hints, nothing in them is signed), so they cost one length read.
  tests/test_city_mqtt.py compares both on every property.

What a worker gets from this: a message is acknowledged only after the batch holding it
is committed. Until then the broker keeps it in the worker's session (clean start off,
a session expiry) and sends it again when that session reconnects, so a worker killed at
any point loses nothing; the store's unique key makes the second copy a duplicate.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiomqtt
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from edge.transport.mqtt import MAX_PACKET_SIZE
from provisioning.receiver import BrokerLogin, broker_address


def consumer(
    url: str,
    *,
    client_id: str,
    login: BrokerLogin | None = None,
    session_expiry_s: int = 86400,
    receive_maximum: int = 1000,
    clean_start: bool = False,
) -> aiomqtt.Client:
    """An aiomqtt client for a persistent MQTT 5 session with manual acknowledgements.

    ``receive_maximum`` (MQTT 5 Receive Maximum) bounds the messages the broker sends
    before it sees their PUBACKs: it is what a worker may hold unacknowledged, in memory,
    while its database is slow or down. The broker's own limit applies too (Mosquitto:
    ``max_inflight_messages``, 20 by default: raise it for ingest workers).
    ``clean_start`` with ``session_expiry_s=0`` ends a session for good."""
    host, port, tls = broker_address(url)
    login = login or BrokerLogin()
    props = Properties(PacketTypes.CONNECT)
    props.MaximumPacketSize = MAX_PACKET_SIZE
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = max(1, min(receive_maximum, 65535))
    client = aiomqtt.Client(
        host,
        port,
        protocol=aiomqtt.ProtocolVersion.V5,
        identifier=client_id,
        clean_start=clean_start,
        username=login.username,
        password=login.password,
        tls_context=ssl.create_default_context(cafile=login.ca_file) if tls else None,
        properties=props,
        timeout=10,
        keepalive=30,
    )
    client._client.manual_ack_set(True)  # aiomqtt #345: no public switch yet
    return client


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK of a QoS 1 message (nothing for QoS 0)."""
    if message.qos:
        client._client.ack(message.mid, message.qos)


async def batches(client: aiomqtt.Client, most: int = 1000) -> AsyncIterator[list[aiomqtt.Message]]:
    """Lists of received messages: waits for one, then adds those already queued."""
    queue = client._queue  # aiomqtt: the queue its paho callback fills
    async for first in client.messages:
        batch = [first]
        while len(batch) < most:
            try:
                batch.append(queue.get_nowait())
            except Exception:  # asyncio.QueueEmpty
                break
        yield batch


class LeanProperties(Properties):
    """paho's Properties with its tables built once (see the module docstring)."""

    _tables: tuple | None = None
    _ident: dict[str, int] = {}
    _name: dict[int, str] = {}
    _private = frozenset(("packetType", "types", "names", "properties"))
    # paho's value checks, as ranges (a value outside takes paho's path, which raises)
    _ranges = {
        "ReceiveMaximum": (1, 65535),
        "TopicAlias": (1, 65535),
        "TopicAliasMaximum": (0, 65535),
        "MaximumPacketSize": (1, 268435455),
        "SubscriptionIdentifier": (1, 268435455),
        "RequestResponseInformation": (0, 1),
        "RequestProblemInformation": (0, 1),
        "PayloadFormatIndicator": (0, 1),
    }

    def __init__(self, packetType: int) -> None:
        tables = LeanProperties._tables
        if tables is None:
            ref = Properties(packetType)
            tables = LeanProperties._tables = (ref.types, ref.names, ref.properties)
            LeanProperties._ident = {n.replace(" ", ""): i for n, i in ref.names.items()}
            LeanProperties._name = {i: n for n, i in ref.names.items()}
        setattr_ = object.__setattr__
        setattr_(self, "packetType", packetType)
        setattr_(self, "types", tables[0])
        setattr_(self, "names", tables[1])
        setattr_(self, "properties", tables[2])

    def getIdentFromName(self, compressedName: str) -> int:
        return self._ident.get(compressedName, -1)

    def getNameFromIdent(self, identifier: int) -> str | None:
        return self._name.get(identifier)

    def allowsMultiple(self, compressedName: str) -> bool:
        return self._ident.get(compressedName) in (11, 38)

    def clear(self) -> None:
        for name in [n for n in self.__dict__ if n not in self._private]:
            object.__delattr__(self, name)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        if self.packetType != PacketTypes.PUBLISH:
            return Properties.unpack(self, buffer)
        self.clear()
        length, head = VariableByteIntegers.decode(buffer)
        object.__setattr__(self, "_raw", bytes(buffer[: head + length]))
        return self, head + length

    def __getattr__(self, name: str) -> object:
        """Only for attributes not set: decode a PUBLISH's properties on first use."""
        raw = self.__dict__.get("_raw")
        if raw is None or name.startswith("__"):
            raise AttributeError(name)
        object.__delattr__(self, "_raw")
        Properties.unpack(self, raw)
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: object) -> None:
        name = name.replace(" ", "")
        if name in self._private:
            object.__setattr__(self, name, value)
            return
        ident = self._ident.get(name)
        limits = self._ranges.get(name)
        if (
            ident is None
            or self.packetType not in self.properties[ident][1]
            or (limits and not isinstance(value, list) and not limits[0] <= value <= limits[1])
        ):
            Properties.__setattr__(self, name, value)  # paho's own rules raise here
            return
        if ident in (11, 38):  # Subscription Identifier, User Property: several allowed
            if not isinstance(value, list):
                value = [value]
            if name in self.__dict__:
                value = self.__dict__[name] + value
        object.__setattr__(self, name, value)


def use_lean_properties() -> None:
    """Decode received packets with LeanProperties (call once, in a worker process)."""
    _packet.Properties = LeanProperties
