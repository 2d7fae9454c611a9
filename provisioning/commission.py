"""``pole-admin commission POLE``: does the pole work, before the technician drives off?

Listens through the broker to the pole's signed messages, verifies each against the
trust list (exactly as the city's platform will), and checks:

- its messages verify (signature, known and active key, fresh counters);
- birth and manifest arrived (software version, location, installed sensors);
- every installed sensor is up and delivers values (counting sensors: up in health);
- values are plausible for a street: climate within range, tilt within the limit;
- no alarm is raised: a tilted pole, a lamp whose current does not match its command
  (lamp_failed, lamp_day_burner, lamp_degraded), a missing sensor, a full disk.

It waits for two data windows (the first may be partial) and a health message after
them, or gives up after ``timeout_s``. The report is printed and saved as text and JSON
(mode 0644 whatever the umask) for the technician to hand over. Each failed line says
what to do about it.

Only fresh messages are judged: one sealed (its signed ``iat``; without one, its arrival)
more than ``max_age_s`` before now, or that far ahead of this laptop's clock, is ignored
and the report says how many were. So a retained birth or manifest from an earlier
controller or configuration, or an old health report published again, cannot make a
pole pass. The pole sends birth and manifest once per session, though: an older one is
still current when it comes from the session the fresh messages come from (the same
key and the same boot epoch, the upper half of the signed cti).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from edge.state import atomic_write
from provisioning.verifier import Verdict

DEFAULT_MAX_AGE_S = 600.0  # 10 minutes
SESSION_KINDS = ("birth", "manifest")  # sent once per session, however long it runs

# What a street can plausibly show (SenML field name -> (low, high)); wider than this is a
# broken or misplaced sensor even where the sensor itself could measure it.
PLAUSIBLE = {
    "temperature": (-30.0, 50.0),
    "humidity": (1.0, 100.0),
    "pressure": (90000.0, 106000.0),
    "pm2_5": (0.0, 500.0),
    "pm10": (0.0, 600.0),
    "pm1_0": (0.0, 500.0),
    "voltage": (5.0, 260.0),
    "supplyVoltage": (100.0, 260.0),
    "driverTemperature": (-30.0, 90.0),
}
COUNT_ONLY = ("ld2450", "probe_sniffer")
ADVICE = {
    "lamp_test_failed": "switched on by day, the lamp did not burn: check lamp, driver and fuse",
    "pole_tilted": "the pole leans: check the foundation and the sensor's mounting before leaving",
    "lamp_failed": "the lamp does not burn although commanded on: check lamp, driver and fuse",
    "lamp_day_burner": "the lamp burns although commanded off: check the switching relay",
    "lamp_degraded": "the lamp draws too little current: check the LED module",
    "spool_unwritable": "the controller's storage is full or read-only: check the SD card",
    "broker_unreachable": "the pole cannot reach the broker: check network and credentials",
}


class Check:
    __slots__ = ("name", "ok", "detail")

    def __init__(self, name: str, ok: bool, detail: str) -> None:
        self.name = name
        self.ok = ok
        self.detail = detail


def _stamp(v: Verdict) -> float:
    return v.records[0].time if v.records else 0.0


def _session(v: Verdict) -> tuple[bytes, int]:
    """(key, boot epoch) of a message: the daemon run that sealed it."""
    return v.kid, v.cti >> 32


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


class Commissioning:
    """Collects one pole's verified messages and judges them."""

    def __init__(
        self,
        pole_id: str,
        tilt_max_deg: float = 5.0,
        min_data: int = 2,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pole_id = pole_id
        self.tilt_max = tilt_max_deg
        self.min_data = min_data
        self.max_age_s = max_age_s
        self.clock = clock
        self.birth: Verdict | None = None
        self.manifest: Verdict | None = None
        self._too_old_or_new: list[tuple[Verdict, float]] = []  # (message, age s; < 0: ahead)
        self._fresh_session: dict[str, Verdict] = {}  # fresh birth and manifest
        self._old_session: dict[str, Verdict] = {}  # older ones, current if their session is
        self.data: list[Verdict] = []
        self.all_health: list[Verdict] = []
        self.health: list[Verdict] = []  # reports made after the min_data-th window ended
        self.rejected: list[str] = []
        self.accepted = 0
        self.started = time.time()
        self.broker_error = ""  # the laptop's own connection to the broker failed

    def observe(self, topic: str, v: Verdict) -> None:
        parts = topic.split("/")
        if len(parts) < 3 or parts[-2] != self.pole_id:
            return
        if v.status == "rejected":
            self.rejected.append(v.reason)
            return
        if v.status != "accepted":
            return
        self.accepted += 1
        age = self._age(v)
        if age is not None:
            self._too_old_or_new.append((v, age))
            if v.kind in SESSION_KINDS and age > 0:
                self._old_session[v.kind] = v
        elif v.kind in SESSION_KINDS:
            self._fresh_session[v.kind] = v
        elif v.kind == "data":
            self.data.append(v)
        elif v.kind == "health":
            self.all_health.append(v)
        self.birth = self._current("birth")
        self.manifest = self._current("manifest")
        self._fresh()

    def _age(self, v: Verdict) -> float | None:
        """How old ``v`` is when it is too old or too far ahead to judge (< 0: ahead of
        this laptop's clock), else None. Its signed iat, or without one its arrival."""
        now = self.clock()
        age = now - (v.iat if v.iat is not None else now)
        return age if abs(age) > self.max_age_s else None

    def _current(self, kind: str) -> Verdict | None:
        """The fresh birth (manifest), or an older one of the session that fresh data
        and health reports come from."""
        if kind in self._fresh_session:
            return self._fresh_session[kind]
        old = self._old_session.get(kind)
        if old is not None and any(
            _session(m) == _session(old) for m in (*self.data, *self.all_health)
        ):
            return old
        return None

    def _fresh(self) -> None:
        """Health reports the pole made after its min_data-th window ended, by its own
        time stamps: spooled reports from before (say, from a first connection the broker
        refused) may arrive later, but describe a state that has passed."""
        if len(self.data) < self.min_data:
            return
        after = sorted(_stamp(d) for d in self.data)[self.min_data - 1]
        self.health = [h for h in self.all_health if _stamp(h) >= after]

    def complete(self) -> bool:
        return bool(
            self.manifest and len(self.data) >= self.min_data and self.health and self._lamp_known()
        )

    def _lamp_sensor(self) -> str | None:
        """The lamp's current sensor, from the manifest; None on a pole without one."""
        return next((n for n, m in self.sensors().items() if m in ("ina219", "ina226")), None)

    def _lamp_known(self) -> bool:
        """Is there a verdict on the lamp yet? By day the pole's lamp test gives one some
        20 s after its daemon starts, later than the first two windows: wait for it (or a
        lamp alarm, or current flowing) rather than fail a lamp nobody switched on yet."""
        sensor = self._lamp_sensor()
        if sensor is None:
            return True
        newest = self._field(max(self.health, key=_stamp), "")
        if any(k.startswith(("counter/lamp_test.", "alarm/lamp_")) for k in newest):
            return True
        data = [self._field(d, "/current/mean").get(f"{sensor}/current/mean") for d in self.data]
        return any(c is not None and float(c) >= 0.1 for c in data)  # type: ignore[arg-type]

    # -- judgement --------------------------------------------------------------------
    def _field(self, v: Verdict, suffix: str) -> dict[str, object]:
        """{record name without the pole's base name: value} of one message."""
        cut = len(self.pole_id) + 1
        return {r.name[cut:]: r.value for r in v.records if r.name.endswith(suffix) or not suffix}

    def _lamp_check(self, health: dict, values: dict, sensor: str) -> Check:
        """Does the lamp burn when commanded? By day it is off by its schedule, so no
        current proves nothing: the pole's lamp test by day (edge/lamptest.py) must have
        switched it on and seen it burn. At night the current itself shows it."""
        current = values.get(f"{sensor}/current/mean")
        shown = f"{float(current):.2f} A" if current is not None else "no reading"  # type: ignore[arg-type]
        bad = [a for a in ADVICE if a.startswith("lamp_") and health.get(f"alarm/{a}")]
        passed = health.get("counter/lamp_test.pass", 0)
        failed = health.get("counter/lamp_test.fail", 0)
        if bad:
            return Check("lamp burns when commanded", False, f"current {shown}; {', '.join(bad)}")
        if passed:
            what = f"the pole's lamp test switched it on and it burned; now {shown}"
            return Check("lamp burns when commanded", True, what)
        if current is not None and float(current) >= 0.1:  # type: ignore[arg-type]
            return Check("lamp burns when commanded", True, f"on, {shown}, no lamp alarm")
        unswitched = health.get("counter/lamp_test.not_switched", 0)
        why = (
            "its lamp test failed"
            if failed
            else "the pole could not switch it over DALI (is its D4i bridge answering?)"
            if unswitched
            else "it is off by its schedule and untested"
        )
        return Check(
            "lamp burns when commanded",
            False,
            f"current {shown}: {why}. The pole tests its lamp by day a few seconds after the "
            "daemon starts (lamp.test_by_day, needs the luminaire's D4i bridge): restart the "
            "daemon and commission again, or commission after dusk",
        )

    def _units(self, v: Verdict, suffix: str) -> dict[str, str]:
        """{record name without the pole's base name: SenML unit} of one message."""
        cut = len(self.pole_id) + 1
        return {r.name[cut:]: r.unit or "" for r in v.records if r.name.endswith(suffix)}

    def sensors(self) -> dict[str, str]:
        """name -> model, from the signed manifest (what was installed and configured)."""
        if self.manifest is None:
            return {}
        rec = self._field(self.manifest, "/model")
        return {k.split("/")[1]: str(val) for k, val in rec.items() if k.startswith("sensor/")}

    def checks(self) -> list[Check]:
        if self.broker_error:
            return [
                Check(
                    "connect to the broker",
                    False,
                    f"{self.broker_error}: this laptop cannot log in; check --broker, "
                    "--username, --password-file (and --ca-file for mqtts://). Nothing about "
                    "the pole was judged.",
                )
            ]
        out = []
        n_rej = len(self.rejected)
        if self.accepted:
            extra = f"; {n_rej} rejected ({self.rejected[0]})" if n_rej else ""
            out.append(Check("messages verify", True, f"{self.accepted} verified{extra}"))
        else:
            why = (
                f"{n_rej} rejected, first: {self.rejected[0]}: is the pole registered "
                "(pole-admin trust sync) and is the trust list current?"
                if n_rej
                else "nothing arrived: is the pole powered, online, and are its broker "
                "credentials loaded (reload Mosquitto)?"
            )
            out.append(Check("messages verify", False, why))
        out.append(self._freshness())
        if self.birth:
            b = self._field(self.birth, "")
            loc = (b.get("location/lat"), b.get("location/lon"))
            where = f"at {loc[0]}, {loc[1]}" if loc[0] is not None else "no location configured"
            out.append(Check("birth", True, f"{b.get('software', '?')}, {where}"))
        else:
            out.append(
                Check(
                    "birth",
                    False,
                    "no fresh birth message: the daemon did not connect"
                    + self._stale_hint("birth"),
                )
            )
        sensors = self.sensors()
        out.append(
            Check(
                "manifest",
                bool(sensors),
                ", ".join(f"{k} ({m})" for k, m in sensors.items())
                or "no fresh signed manifest" + self._stale_hint("manifest"),
            )
        )
        # The newest by the pole's own time stamp, not by arrival: after a broker hiccup
        # the spooled backlog (older health, older windows) arrives after live messages.
        health = self._field(max(self.health, key=_stamp), "") if self.health else {}
        data = max(self.data, key=_stamp) if len(self.data) >= self.min_data else None
        values = self._field(data, "/mean") if data else {}
        units = self._units(data, "/mean") if data else {}
        # Samples per sensor over every window seen: slow sensors (a D4i bridge polled
        # every 10 s) can miss a single short window without being absent.
        samples: dict[str, int] = {}
        for d in self.data:
            for k, c in self._field(d, "/count").items():
                sensor = k.split("/")[0]
                samples[sensor] = max(samples.get(sensor, 0), int(c))  # type: ignore[call-overload]
        for name, model in sensors.items():
            up = health.get(f"sensor/{name}/up")
            n = samples.get(name, 0)
            if model in COUNT_ONLY:
                ok = up is True
                detail = "counting" if ok else "not answering: check its cable and connector"
            else:
                ok = up is True and n > 0
                detail = (
                    f"up, {n} sample(s) per window"
                    if ok
                    else "not answering: check its cable and connector, then commission again"
                )
            out.append(Check(f"sensor {name} present", ok, detail))
        for key, value in sorted(values.items()):
            sensor, field = key.split("/")[0], key.split("/")[1]
            if field == "tilt":
                ok = float(value) <= self.tilt_max  # type: ignore[arg-type]
                detail = f"{float(value):.1f} deg (limit {self.tilt_max:g})"  # type: ignore[arg-type]
                if not ok:
                    detail += ": " + ADVICE["pole_tilted"]
                out.append(Check(f"{sensor} tilt", ok, detail))
            elif field in PLAUSIBLE:
                lo, hi = PLAUSIBLE[field]
                ok = lo <= float(value) <= hi  # type: ignore[arg-type]
                u = units.get(key, "")
                detail = f"{float(value):.2f} {u} (plausible {lo:g} to {hi:g} {u})"  # type: ignore[arg-type]
                if not ok:
                    detail += ": sensor broken, misplaced or misconfigured"
                out.append(Check(f"{sensor} {field}", ok, detail))
        lamp = self._lamp_sensor()
        if lamp and self.health:
            out.append(self._lamp_check(health, values, lamp))
        alarms = sorted(
            k.split("/")[1]
            for k, val in health.items()
            if k.startswith("alarm/") and not k.endswith("/detail") and val is True
        )
        if self.health:
            for a in alarms:
                detail = str(health.get(f"alarm/{a}/detail", ""))
                advice = ADVICE.get(a) or (
                    f"sensor {a[:-8]} stopped answering: check its cable and connector"
                    if a.endswith("_missing")
                    else "see docs/technician.md"
                )
                out.append(Check(f"alarm {a}", False, f"{detail}: {advice}".lstrip(": ")))
            if not alarms:
                out.append(Check("alarms", True, "none raised"))
        else:
            out.append(Check("health", False, "no health message after two data windows"))
        return out

    @property
    def ignored(self) -> list[tuple[str, float]]:
        """(kind, age in s; < 0: ahead of this laptop's clock) of every message left out
        of the judgement: too old or too new, and not the running session's birth or
        manifest."""
        current = (self.birth, self.manifest)
        return [(v.kind, age) for v, age in self._too_old_or_new if v not in current]

    def _freshness(self) -> Check:
        """What was ignored as too old or too new: said in the report, never silent."""
        limit = _minutes(self.max_age_s)
        ignored = self.ignored
        old = [k for k, age in ignored if age > 0]
        ahead = [k for k, age in ignored if age < 0]
        parts = []
        if old:
            kinds = ", ".join(sorted(set(old)))
            parts.append(
                f"ignored {len(old)} sealed more than {limit} ago ({kinds}): retained "
                "from an earlier session or controller, a spooled backlog, or a replay"
            )
        if ahead:
            parts.append(
                f"ignored {len(ahead)} sealed more than {limit} ahead of this laptop's "
                "clock: check the clocks of the pole and the laptop"
            )
        session = [
            k
            for k in SESSION_KINDS
            if k in self._old_session and getattr(self, k) is self._old_session[k]
        ]
        if session:
            parts.append(
                f"{' and '.join(session)} sent when the running session began, more than "
                f"{limit} ago: current"
            )
        return Check("fresh messages", not ahead, "; ".join(parts) or f"all from the last {limit}")

    def _stale_hint(self, kind: str) -> str:
        if kind not in self._old_session:
            return ""
        return (
            " (an older one, not from the session now running, was ignored): restart the "
            "pole's daemon (power-cycle the controller) and commission again"
        )

    def passed(self) -> bool:
        return self.complete() and all(c.ok for c in self.checks())

    def report(self) -> str:
        checks = self.checks()
        verdict = "PASS" if self.passed() else "FAIL"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        width = max(len(c.name) for c in checks)
        lines = [f"Commissioning report for pole {self.pole_id}, {stamp}", ""]
        for c in checks:
            lines.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
        if not self.complete() and not self.broker_error:
            lines.append(
                f"  FAIL  {'complete':<{width}}  timed out: got {len(self.data)} data "
                f"window(s), {len(self.health)} health message(s) after them, manifest "
                f"{'yes' if self.manifest else 'no'}"
                + ("" if not self.health or self._lamp_known() else ", no lamp test result")
            )
        lines += ["", f"Result: {verdict}"]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {
            "pole_id": self.pole_id,
            "result": "pass" if self.passed() else "fail",
            "complete": self.complete(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "max_age_s": self.max_age_s,
            "ignored": [{"kind": k, "age_s": round(age, 1)} for k, age in self.ignored],
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks()],
        }

    def to_html(self, label_svg: str | None = None) -> str:
        """The report as one self-contained HTML page (for the work order or a tablet):
        every check with its verdict, and the pole's label when there is one. Every value
        is escaped: details quote what the pole sent."""
        from html import escape

        doc = self.to_json()
        rows = "\n".join(
            f'<tr class="{"ok" if c["ok"] else "fail"}"><td>{"ok" if c["ok"] else "FAIL"}</td>'
            f"<td>{escape(c['name'])}</td><td>{escape(str(c['detail']))}</td></tr>"
            for c in doc["checks"]
        )
        verdict = "PASS" if self.passed() else "FAIL"
        label = f"<figure><figcaption>Label</figcaption>{label_svg}</figure>" if label_svg else ""
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Commissioning {escape(self.pole_id)}: {verdict}</title><style>"
            "body{font-family:sans-serif;margin:2em}td{padding:.2em .6em;vertical-align:top}"
            ".ok td:first-child{color:#1a6b1a}.fail td:first-child{color:#b00020;"
            "font-weight:bold}figure svg{width:62mm;height:29mm;border:1px solid #999}"
            "</style></head><body>"
            f"<h1>Commissioning report for pole {escape(self.pole_id)}</h1>"
            f"<p>{escape(doc['at'])}: <strong>{verdict}</strong></p>"
            f"<table><thead><tr><th>result</th><th>check</th><th>detail</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{label}</body></html>\n"
        )

    def save(self, directory: Path, label_svg: str | None = None) -> Path:
        """Write the report as .txt, .json and .html (with the label, if given), mode 0644
        whatever the umask, never through a symbolic link; returns the .txt path."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"commission-{self.pole_id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        doc = json.dumps(self.to_json(), indent=2) + "\n"
        atomic_write(directory / f"{stem}.json", doc.encode(), mode=0o644)
        atomic_write(directory / f"{stem}.html", self.to_html(label_svg).encode(), mode=0o644)
        path = directory / f"{stem}.txt"
        atomic_write(path, self.report().encode(), mode=0o644)
        return path


async def commission(
    pole_id: str,
    broker_url: str,
    verifier: object,
    login: object = None,
    timeout_s: float = 120.0,
    tilt_max_deg: float = 5.0,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> Commissioning:
    """Listen until the pole's messages are complete (or ``timeout_s``) and judge the
    fresh ones (sealed at most ``max_age_s`` ago)."""
    import aiomqtt

    from provisioning.receiver import _client, broker_address, run_receiver

    job = Commissioning(pole_id, tilt_max_deg=tilt_max_deg, max_age_s=max_age_s)
    # Our own connection first: if the laptop cannot log in, say so, instead of waiting
    # minutes and then blaming the pole.
    host, port, tls = broker_address(broker_url)
    try:
        async with _client(host, port, tls, None, login):  # type: ignore[arg-type]
            pass
    except (aiomqtt.MqttError, OSError) as exc:
        job.broker_error = f"{exc}"
        return job
    stop = asyncio.Event()

    def on(topic: str, v: Verdict) -> None:
        job.observe(topic, v)
        if job.complete():
            stop.set()

    loop = asyncio.get_running_loop()
    loop.call_later(timeout_s, stop.set)
    await run_receiver(broker_url, verifier, on, stop, login=login)  # type: ignore[arg-type]
    return job
