"""MQTT 5 publishing with Sparkplug-style session semantics, through aiomqtt.

On every connection: a new bdSeq (persisted), a signed death message registered as
the last will (sent by the broker if we vanish, after a short will delay so a brief
drop does not flap), then a signed, retained birth message. Then the spool is
drained oldest first with QoS 1; a message is deleted from the spool only once
``publish`` has returned, which for QoS 1 means the broker's PUBACK arrived.
A broker outage is logged once, counted, and retried with backoff; nothing stored
is lost. Topics: ``<prefix>/<pole_id>/{birth,death,data,health}``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig
from edge.cose import MQTT_CONTENT_TYPE
from edge.health import Health
from edge.outbox import Outbox
from edge.state import PersistentCounter

log = logging.getLogger(__name__)

BATCH = 32


def _props(packet: int, will_delay: int | None = None) -> Properties:
    p = Properties(packet)
    p.PayloadFormatIndicator = 0
    p.ContentType = MQTT_CONTENT_TYPE
    if will_delay is not None:
        p.WillDelayInterval = will_delay
    return p


class Publisher:
    def __init__(
        self,
        cfg: MqttConfig,
        outbox: Outbox,
        bdseq: PersistentCounter,
        birth_payload: Callable[[int], bytes],
        death_payload: Callable[[int], bytes],
        health: Health,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.bdseq = bdseq
        self.birth_payload = birth_payload
        self.death_payload = death_payload
        self.health = health
        self.connected = asyncio.Event()
        self.published = 0
        self._stopping = False
        self.replayed = 0
        self._pub_props = _props(PacketTypes.PUBLISH)
        self._replay_props = _props(PacketTypes.PUBLISH)
        self._replay_props.UserProperty = [("replay", "1")]

    def _next_bdseq(self) -> int:
        """Persist the next bdSeq; if the medium refuses, go on in RAM and raise an alarm
        (a repeated bdSeq after a later reboot is far less harmful than a silent pole)."""
        try:
            value = self.bdseq.advance()
        except OSError as exc:
            self.health.count("state_write_errors")
            self.health.raise_alarm("state_unwritable", str(exc))
            return self.bdseq.value
        self.health.clear_alarm("state_unwritable")
        return value

    def _tls(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.cfg.ca_file)
        if self.cfg.cert_file:
            ctx.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
        return ctx

    def _password(self) -> str | None:
        if self.cfg.password_file:
            with open(self.cfg.password_file) as f:
                return f.read().strip()
        return self.cfg.password

    def _client(self, bdseq: int) -> aiomqtt.Client:
        death = self.outbox.seal(self.death_payload(bdseq))
        will = aiomqtt.Will(
            self.outbox.topic("death"),
            death,
            qos=1,
            retain=False,
            properties=_props(PacketTypes.WILLMESSAGE, self.cfg.will_delay_s),
        )
        self._death = death
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
            max_concurrent_outgoing_calls=BATCH * 2,
        )
        # aiomqtt warns on every publish beyond 10 in flight; we keep a batch in flight.
        client.pending_calls_threshold = BATCH * 2 + 8
        return client

    async def run(self) -> None:
        backoff = 1.0
        down_logged = False
        while not self._stopping:
            bdseq = self._next_bdseq()
            try:
                async with self._client(bdseq) as client:
                    self.connected.set()
                    cleared = self.health.clear_alarm("broker_unreachable")
                    if down_logged or cleared:
                        log.info("connected to broker %s:%s again", self.cfg.host, self.cfg.port)
                    down_logged = False
                    backoff = 1.0
                    self.health.count("mqtt_connects")
                    # A key rotation must reach the city before anything under the new key.
                    rotations = self.outbox.spool.pending(BATCH, kind="rotate")
                    if rotations:
                        await self._send_batch(client, rotations, replay=False)
                    birth = self.outbox.seal(self.birth_payload(bdseq))
                    await client.publish(
                        self.outbox.topic("birth"),
                        birth,
                        qos=1,
                        retain=True,
                        properties=self._pub_props,
                    )
                    await self._drain(client)
                    # Clean stop: say goodbye ourselves, as Sparkplug nodes do.
                    await client.publish(
                        self.outbox.topic("death"),
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
                self.connected.clear()
            if self._stopping:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _send_batch(
        self, client: aiomqtt.Client, rows: list[tuple[int, str, bytes, bool, str]], replay: bool
    ) -> None:
        """Publish concurrently (QoS 1), then delete what the broker acknowledged in one go."""
        props = self._replay_props if replay else self._pub_props
        results = await asyncio.gather(
            *(
                client.publish(topic, payload, qos=1, retain=retain, properties=props, timeout=30)
                for _id, topic, payload, retain, _kind in rows
            ),
            return_exceptions=True,
        )
        done = [row[0] for row, r in zip(rows, results, strict=True) if r is None]
        if done:
            self.outbox.spool.ack(*done)
            self.published += len(done)
            if replay:
                self.replayed += len(done)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Send live messages first, the backlog in between, each oldest first.

        Live = sealed after this connection was made; backlog = sealed before (during
        an outage or before a power cut). Every round sends up to BATCH live messages
        and then up to BATCH backlog messages, so a long backlog never holds live data
        back by more than one batch, and the backlog still drains at full speed.
        Backlog messages carry the MQTT user property ``replay=1`` (a hint; the signed
        iat and bt say when they were sealed and measured).
        """
        outbox = self.outbox
        spool = outbox.spool
        live_from = spool.last_id()
        backlog_after = 0
        while not self._stopping:
            while outbox.ram:
                topic, payload, retain, _kind = outbox.ram[0]
                await client.publish(
                    topic, payload, qos=1, retain=retain, properties=self._pub_props, timeout=30
                )
                outbox.ram.popleft()
                self.published += 1
            live = spool.pending(BATCH, after_id=live_from)
            backlog = spool.pending(BATCH, after_id=backlog_after, upto_id=live_from)
            if backlog:
                backlog_after = backlog[-1][0]
            if live:
                await self._send_batch(client, live, replay=False)
            if backlog:
                await self._send_batch(client, backlog, replay=True)
            if live or backlog:
                continue
            outbox.wakeup.clear()
            try:
                await asyncio.wait_for(outbox.wakeup.wait(), 1.0)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self.outbox.wakeup.set()
