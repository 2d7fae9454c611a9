"""MQTT 5 with Sparkplug-style session semantics, through aiomqtt.

On every connection: a new bdSeq (persisted), a signed death message registered as
the last will (sent by the broker if we vanish, after a short will delay so a brief
drop does not flap), then a signed, retained birth message. Then the spool is
drained (``Transport.drain``: live first, backlog in between) with QoS 1; a message
is deleted from the spool only once ``publish`` has returned, which for QoS 1 means
the broker's PUBACK arrived. Backlog messages carry the MQTT user property
``replay=1`` (a hint; the signed iat and bt say when they were sealed and measured).
A broker outage is logged once, counted, and retried with backoff; nothing stored
is lost.

Topics are this transport's business alone: ``<prefix>/<pole_id>/<kind>``, with
``retain`` as the kind declares it (edge/messages.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig
from edge.cose import MQTT_CONTENT_TYPE
from edge.state import read_private
from edge.transport import BATCH, Row, Transport

log = logging.getLogger(__name__)

# The largest MQTT packet a pole sends or accepts (MQTT 5 Maximum Packet Size). The
# city's broker is configured with the same limit (provisioning/broker_auth.py), so a
# message over it is refused at the broker, not carried to every subscriber.
MAX_PACKET_SIZE = 32 * 1024


def _props(packet: int, will_delay: int | None = None) -> Properties:
    p = Properties(packet)
    p.PayloadFormatIndicator = 0
    p.ContentType = MQTT_CONTENT_TYPE
    if will_delay is not None:
        p.WillDelayInterval = will_delay
    return p


class MqttTransport(Transport):
    def __init__(self, cfg: MqttConfig, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = cfg
        self.base_topic = f"{cfg.topic_prefix}/{self.outbox.signer.pole_id}"
        self._client_now: aiomqtt.Client | None = None
        self._pub_props = _props(PacketTypes.PUBLISH)
        self._replay_props = _props(PacketTypes.PUBLISH)
        self._replay_props.UserProperty = [("replay", "1")]

    def topic(self, kind: str) -> str:
        return f"{self.base_topic}/{kind}"

    def _tls(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.cfg.ca_file)
        if self.cfg.cert_file:
            ctx.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
        return ctx

    def _password(self) -> str | None:
        if self.cfg.password_file:  # a 0600 file, never read through a symbolic link
            return read_private(Path(self.cfg.password_file)).decode().strip()
        return self.cfg.password

    def _client(self, bdseq: int) -> aiomqtt.Client:
        death = self.outbox.seal("death", self.death_payload(bdseq))
        will = aiomqtt.Will(
            self.topic("death"),
            death,
            qos=1,
            retain=False,
            properties=_props(PacketTypes.WILLMESSAGE, self.cfg.will_delay_s),
        )
        self._death = death
        connect = Properties(PacketTypes.CONNECT)
        connect.MaximumPacketSize = MAX_PACKET_SIZE
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=self.cfg.username,
            password=self._password(),
            identifier=self.outbox.signer.pole_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            keepalive=self.cfg.keepalive,
            timeout=10,
            tls_context=self._tls(),
            properties=connect,
            max_concurrent_outgoing_calls=BATCH * 2,
        )
        # aiomqtt warns on every publish beyond 10 in flight; we keep a batch in flight.
        client.pending_calls_threshold = BATCH * 2 + 8
        return client

    async def run(self) -> None:
        backoff = 1.0
        down_logged = False
        while not self._stopping:
            bdseq = self.next_bdseq()
            try:
                async with self._client(bdseq) as client:
                    self._client_now = client
                    self.connected.set()
                    cleared = self.health.clear_alarm("broker_unreachable")
                    if down_logged or cleared:
                        log.info("connected to broker %s:%s again", self.cfg.host, self.cfg.port)
                    down_logged = False
                    backoff = 1.0
                    self.health.count("mqtt_connects")
                    birth = self.outbox.seal("birth", self.birth_payload(bdseq))
                    await client.publish(
                        self.topic("birth"), birth, qos=1, retain=True, properties=self._pub_props
                    )
                    await self.drain()
                    # Clean stop: say goodbye ourselves, as Sparkplug nodes do.
                    await client.publish(
                        self.topic("death"),
                        self._death,
                        qos=1,
                        properties=self._pub_props,
                        timeout=2,
                    )
            except (aiomqtt.MqttError, OSError) as exc:
                self.health.count("mqtt_errors")
                if not down_logged:
                    self.health.raise_alarm("broker_unreachable", str(exc))
                    log.warning(
                        "broker %s:%s unreachable (%s); messages stay in the spool and are "
                        "sent when it is back. Check the broker, the network and mqtt.url.",
                        self.cfg.host,
                        self.cfg.port,
                        exc,
                    )
                    down_logged = True
            finally:
                self._client_now = None
                self.connected.clear()
            if self._stopping:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def deliver(self, rows: list[Row], replay: bool) -> tuple[list[int], Exception | None]:
        """Publish concurrently (QoS 1): the ids the broker acknowledged, and the first
        error (which ends the session)."""
        client = self._client_now
        if client is None:
            return [], aiomqtt.MqttError("not connected")
        props = self._replay_props if replay else self._pub_props
        topic = self.topic
        results = await asyncio.gather(
            *(
                client.publish(topic(kind), msg, qos=1, retain=retain, properties=props, timeout=30)
                for _id, kind, msg, retain in rows
            ),
            return_exceptions=True,
        )
        done = [row[0] for row, r in zip(rows, results, strict=True) if r is None]
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        return done, failed
