"""The city's web service: Starlette routes over the store, served by uvicorn.

| path | what |
|---|---|
| ``/v1.1/...`` | OGC SensorThings API v1.1, read-only (city/web/sta.py) |
| ``/ngsi-ld/v1/entities`` | NGSI-LD Smart Data Models entities (city/web/ngsi.py) |
| ``/map`` | the live map (static/map.html, map.js, map.css) |
| ``/api/poles``, ``/api/poles/<id>`` | what the map draws: states, readings, last day |
| ``/api/events`` | alarms and state changes as they arrive (server-sent events) |
| ``/poles/<id>`` | the public page of a pole, the target of its label's QR code |
| ``/register/<id>.json``, ``/register.json`` | its register entry, every pole's |

The service only reads. A background task refreshes the fleet's state once a second
(``--refresh``) and wakes the event streams. Errors are the standard's own: a
SensorThings 400 for a malformed query option (``{"code": 400, "type": "error",
"message": ...}``, as FROST-Server answers), NGSI-LD problem details, 404 for what does
not exist, 503 while the database is unreachable; never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from city.store import StoreUnavailable
from city.web import db, ngsi, public, sta
from city.web.fleet import Fleet, fingerprint
from city.web.odata import QueryError, parse_options

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
STA_ROOT = "/v1.1"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclasses.dataclass
class Settings:
    """What a city configures for its service.

    Args:
        db: the store URL.
        public_url: base URL of the public pages, as the labels' QR codes name it
            (``<public_url>/<pole id>?fp=<fingerprint>``).
        owner: who owns and runs the poles (public pages, register, Things).
        contact: where residents ask (an address or URL), shown on the pages.
        title: the name of the service, shown on its pages.
        tile_url: an XYZ tile URL template (``https://.../{z}/{x}/{y}.png``) drawn under
            the map where a city has one; without it the map is a plain projection.
        refresh_s: how often the fleet's state is read from the store.
        silent_after_s: a pole from which nothing arrived for this long is silent.
        lookback_s: how far back readings count as current (NGSI-LD, first load).
    """

    db: str
    public_url: str = "http://127.0.0.1:8080/poles"
    owner: str = "the municipality"
    contact: str = ""
    title: str = "Light poles of the city"
    tile_url: str = ""
    refresh_s: float = 1.0
    silent_after_s: float = 120.0
    lookback_s: float = 86400.0


class Service:
    """The shared state of one running app: the store, the fleet, the catalogue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reader = db.Reader(settings.db)
        self.fleet = Fleet(
            self.reader, silent_after_s=settings.silent_after_s, lookback_s=settings.lookback_s
        )
        self.lock = threading.Lock()  # the catalogue cache
        self._catalogue: sta.Catalogue | None = None
        self.sta = sta.Service(self.reader, self.catalogue)
        self.changed: asyncio.Condition | None = None
        self.stopping = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.db_up = False

    @property
    def public_url(self) -> str:
        return self.settings.public_url.rstrip("/")

    def catalogue(self) -> sta.Catalogue:
        view = self.fleet.view
        with self.lock:
            c = self._catalogue
            if c is None or c.version != view.version:
                c = sta.Catalogue(view, self.settings.owner, self.public_url)
                self._catalogue = c
            return c

    def refresh(self) -> list[dict]:
        return self.fleet.refresh()

    async def run_refresh(self) -> None:
        """Refresh the fleet's state forever; tell the event streams what changed."""
        self.changed = asyncio.Condition()
        while not self.stopping.is_set():
            try:
                events = await self.reader.run(self.refresh)
                if not self.db_up:
                    log.info("store readable: %d poles", len(self.fleet.view.poles))
                self.db_up = True
                if events:
                    async with self.changed:
                        self.changed.notify_all()
            except StoreUnavailable as exc:
                if self.db_up:
                    log.error("store unavailable: %s", exc)
                self.db_up = False
            except Exception:
                log.exception("refreshing the fleet's state failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.settings.refresh_s)

    async def stop(self) -> None:
        """End the refresh loop and every event stream."""
        self.stopping.set()
        if self.changed is not None:
            async with self.changed:
                self.changed.notify_all()

    def events_after(self, last: int) -> list[dict]:
        return self.fleet.events_after(last)


def _svc(request: Request) -> Service:
    return request.app.state.service


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "type": "error", "message": message}, status_code=status)


# -- SensorThings ---------------------------------------------------------------------------------
async def sta_root(request: Request) -> Response:
    return JSONResponse(_svc(request).sta.root(_sta_base(request)))


def _sta_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + STA_ROOT


async def sta_path(request: Request) -> Response:
    svc = _svc(request)
    path = request.path_params["path"]
    items = request.query_params.multi_items()
    try:
        options = parse_options(items)
        base = _sta_base(request)
        url = base + "/" + path
        next_url = sta.next_link_factory(url, items)
        doc = await svc.reader.run(svc.sta.get, base, path, options, next_url)
    except QueryError as exc:
        return _error(400, str(exc))
    except sta.NotFound as exc:
        return _error(404, str(exc))
    except StoreUnavailable:
        return _error(503, "the database is unreachable; try again shortly")
    if isinstance(doc, tuple):
        if doc[0] == "value":
            return Response("" if doc[1] is None else str(doc[1]), media_type="text/plain")
        return JSONResponse({doc[1]: doc[2]})
    return JSONResponse(doc)


# -- NGSI-LD -------------------------------------------------------------------------------------
def _ngsi_response(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type="application/json")


async def ngsi_entities(request: Request) -> Response:
    svc = _svc(request)
    params = dict(request.query_params)
    if len(request.query_params.multi_items()) != len(params):
        return _ngsi_response(
            ngsi.NgsiError(400, "BadRequestData", "a parameter is given twice").body(), 400
        )
    try:
        found = await svc.reader.run(_ngsi_query, svc, params)
    except ngsi.NgsiError as exc:
        return _ngsi_response(exc.body(), exc.status)
    except StoreUnavailable:
        return _ngsi_response(
            ngsi.NgsiError(503, "InternalError", "the database is unreachable").body(), 503
        )
    return _ngsi_ld(found)


def _ngsi_query(svc: Service, params: dict) -> list[dict]:
    return ngsi.query(
        svc.fleet.view,
        svc.reader,
        params,
        owner=svc.settings.owner,
        public_url=svc.public_url,
        lookback_s=svc.settings.lookback_s,
    )


def _ngsi_ld(body: Any) -> JSONResponse:
    """application/json with the @context as a Link header (NGSI-LD 6.3.5)."""
    headers = {
        "Link": f'<{ngsi.CONTEXT[0]}>; rel="http://www.w3.org/ns/json-ld#context"; '
        'type="application/ld+json"'
    }
    return JSONResponse(body, headers=headers)


async def ngsi_entity(request: Request) -> Response:
    svc = _svc(request)
    eid = request.path_params["entity_id"]
    parts = eid.split(":")
    if len(parts) != 4 or parts[:2] != ["urn", "ngsi-ld"] or parts[2] not in ngsi.TYPES:
        return _ngsi_response(ngsi.NgsiError(404, "ResourceNotFound", "no such entity").body(), 404)
    params = {"type": parts[2], "id": eid, "limit": "1"}
    options = request.query_params.get("options")
    if options:
        params["options"] = options
    try:
        found = await svc.reader.run(_ngsi_query, svc, params)
    except ngsi.NgsiError as exc:
        return _ngsi_response(exc.body(), exc.status)
    if not found:
        return _ngsi_response(ngsi.NgsiError(404, "ResourceNotFound", "no such entity").body(), 404)
    return _ngsi_ld(found[0])


# -- the map's data -----------------------------------------------------------------------------
async def map_page(request: Request) -> Response:
    return FileResponse(STATIC / "map.html", headers=_csp(request))


def _csp(request: Request) -> dict[str, str]:
    tiles = _svc(request).settings.tile_url
    origin = ""
    if tiles.startswith(("https://", "http://")):
        origin = " " + "/".join(tiles.split("/")[:3])
    return {"Content-Security-Policy": CSP.format(tiles=origin)}


async def api_config(request: Request) -> Response:
    s = _svc(request).settings
    return JSONResponse(
        {
            "title": s.title,
            "owner": s.owner,
            "tileUrl": s.tile_url,
            "publicUrl": _svc(request).public_url,
            "sensorthings": _sta_base(request),
        }
    )


async def api_poles(request: Request) -> Response:
    svc = _svc(request)
    view = svc.fleet.view
    poles = [view.summary(p) for _, p in sorted(view.poles.items())]
    last = svc.fleet.event_id
    return JSONResponse({"poles": poles, "eventId": last, "databaseUp": svc.db_up})


async def api_pole(request: Request) -> Response:
    svc = _svc(request)
    pole_id = public.pole_id_or_none(request.path_params["pole_id"])
    view = svc.fleet.view
    p = view.poles.get(pole_id or "")
    summary = view.summary(p) if p else None
    if p is None or summary is None:
        return _error(404, "no such pole")
    try:
        detail = await svc.reader.run(_pole_detail, svc, p.pole_id)
    except StoreUnavailable:
        return _error(503, "the database is unreachable; try again shortly")
    return JSONResponse({"pole": summary, **detail})


def _verification(svc: Service, kid: bytes) -> dict:
    k = svc.fleet.view.keys.get(bytes(kid))
    status = k.status if k else "unknown"
    text = f"verified, key {fingerprint(bytes(kid))}"
    if status == "revoked":
        text += " (revoked since)"
    return {"text": text, "key": fingerprint(bytes(kid)), "keyStatus": status}


def _pole_detail(svc: Service, pole_id: str) -> dict:
    r = svc.reader
    last = db.epoch(r.query(db.LAST_T, {"pole": pole_id})[0][0])
    last_count = db.epoch(r.query(db.LAST_COUNT_T, {"pole": pole_id})[0][0])
    newest = max(last or 0.0, last_count or 0.0)
    since = newest - 86400.0
    tp = db.tparam(r.dialect, since)
    readings = []
    for sensor, field, unit, t, w, mean, lo, hi, n, kid, _cti in r.pick(
        db.LATEST, {"pole": pole_id, "since": tp}
    ):
        readings.append(
            {
                "sensor": sensor,
                "field": field,
                "unit": unit,
                "t": db.epoch(t),
                "window_s": w,
                "mean": mean,
                "min": lo,
                "max": hi,
                "count": n,
                "verification": _verification(svc, kid),
            }
        )
    counts = []
    for sensor, field, t, bin_s, count, supp, kid, _cti in r.pick(
        db.LATEST_COUNTS, {"pole": pole_id, "since": tp}
    ):
        counts.append(
            {
                "sensor": sensor,
                "field": field,
                "t": db.epoch(t),
                "bin_s": bin_s,
                "count": count,
                "suppressed": bool(supp),
                "verification": _verification(svc, kid),
            }
        )
    charts: dict[tuple[str, str], dict] = {}
    if last is not None:
        first = db.epoch(r.query(db.FIRST_T_SINCE, {"pole": pole_id, "since": tp})[0][0])
        span = max(1.0, last - (first or last))
        bucket = max(1, math.ceil(span / 240))
        units = {(x["sensor"], x["field"]): x["unit"] for x in readings}
        for sensor, field, b, mean, lo, hi, n in r.pick(
            db.BUCKETS, {"pole": pole_id, "since": tp, "b": bucket}
        ):
            c = charts.setdefault(
                (sensor, field),
                {
                    "sensor": sensor,
                    "field": field,
                    "unit": units.get((sensor, field)),
                    "kind": "data",
                    "bucket_s": bucket,
                    "points": [],
                },
            )
            c["points"].append([db.epoch(b), mean, lo, hi, int(n)])
    for sensor, field, t, count, supp in r.query(db.COUNT_BINS, {"pole": pole_id, "since": tp}):
        c = charts.setdefault(
            (sensor, field),
            {"sensor": sensor, "field": field, "unit": "count", "kind": "counts", "points": []},
        )
        c["points"].append([db.epoch(t), count, bool(supp)])
    p = svc.fleet.view.poles.get(pole_id)
    m = p.manifest if p else None
    manifest = (
        {"sha256": m.sha256, "key": fingerprint(m.kid), "signedAt": m.signed_at} if m else None
    )
    return {
        "readings": readings,
        "counts": counts,
        "charts": list(charts.values()),
        "manifest": manifest,
        "publicPage": f"{svc.public_url}/{pole_id}",
    }


async def api_events(request: Request) -> Response:
    """Server-sent events: ``pole`` (a state changed) and ``alarm`` (raised or cleared),
    each with an id; a client that reconnects with Last-Event-ID gets what it missed
    (of the last thousand)."""
    svc = _svc(request)
    header = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    last = int(header) if header.isdigit() and len(header) < 15 else svc.fleet.event_id

    async def stream() -> AsyncIterator[str]:
        nonlocal last
        yield "retry: 2000\n\n"
        while not svc.stopping.is_set():
            events = svc.events_after(last)
            for e in events:
                last = e["id"]
                yield f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n"
            if await request.is_disconnected():
                return
            cond = svc.changed
            if cond is None:
                await asyncio.sleep(0.5)
                continue
            try:
                async with cond:
                    await asyncio.wait_for(cond.wait(), 15)
            except TimeoutError:
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


# -- public pages --------------------------------------------------------------------------------
def _links(request: Request, svc: Service, pole_id: str) -> dict:
    base = str(request.base_url).rstrip("/")
    return {
        "publicPage": f"{svc.public_url}/{pole_id}",
        "register": f"{base}/register/{pole_id}.json",
        "sensorthings": f"{base}{STA_ROOT}/Things('{pole_id}')",
        "map": f"{base}/map#{pole_id}",
    }


def _entry(svc: Service, pole_id: str, links: dict) -> dict | None:
    view = svc.fleet.view
    p = view.poles.get(pole_id)
    if p is None:
        return None
    return public.entry(
        view, svc.reader, p, owner=svc.settings.owner, contact=svc.settings.contact, urls=links
    )


async def public_page(request: Request) -> Response:
    svc = _svc(request)
    pole_id = public.pole_id_or_none(request.path_params["pole_id"])
    entry = None
    if pole_id is not None:
        entry = await svc.reader.run(_entry, svc, pole_id, _links(request, svc, pole_id))
    if entry is None:
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found'
            "</title></head><body><main><h1>No such pole</h1><p>This city has no pole with "
            "that number.</p></main></body></html>",
            status_code=404,
        )
    fp = request.query_params.get("fp")
    body = public.page(entry, fp[:200] if fp is not None else None, title=svc.settings.title)
    return HTMLResponse(body, headers=_csp(request))


async def register_entry(request: Request) -> Response:
    svc = _svc(request)
    name = request.path_params["pole_id"]
    pole_id = public.pole_id_or_none(name[:-5]) if name.endswith(".json") else None
    entry = None
    if pole_id is not None:
        entry = await svc.reader.run(_entry, svc, pole_id, _links(request, svc, pole_id))
    if entry is None:
        return _error(404, "no such pole")
    return JSONResponse(entry)


async def register_all(request: Request) -> Response:
    svc = _svc(request)
    ids = sorted(svc.fleet.view.poles)
    out = []
    for pole_id in ids:
        e = await svc.reader.run(_entry, svc, pole_id, _links(request, svc, pole_id))
        if e is not None:
            out.append(e)
    return JSONResponse({"poles": out})


async def home(request: Request) -> Response:
    return RedirectResponse("/map", status_code=307)


class Headers:
    """Headers every response carries: no sniffing, no framing, no referrer leaks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ):
                    if k not in names:
                        headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with)


def create_app(settings: Settings) -> Starlette:
    """The Starlette application for ``settings`` (its refresh task starts with it)."""
    svc = Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc.stopping = asyncio.Event()
        svc.loop = asyncio.get_running_loop()
        task = asyncio.create_task(svc.run_refresh())
        try:
            yield
        finally:
            await svc.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.get_running_loop().run_in_executor(None, svc.reader.close)

    routes = [
        Route("/", home),
        Route("/map", map_page),
        Route("/api/config", api_config),
        Route("/api/poles", api_poles),
        Route("/api/poles/{pole_id}", api_pole),
        Route("/api/events", api_events),
        Route(STA_ROOT, sta_root),
        Route(STA_ROOT + "/", sta_root),
        Route(STA_ROOT + "/{path:path}", sta_path),
        Route("/ngsi-ld/v1/entities", ngsi_entities),
        Route("/ngsi-ld/v1/entities/{entity_id}", ngsi_entity),
        Route("/poles/{pole_id}", public_page),
        Route("/register.json", register_all),
        Route("/register/{pole_id}", register_entry),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(Headers)])
    app.state.service = svc

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "this service only reads: use GET")

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("request failed: %s", request.url.path[:200])
        return _error(500, "internal error; it was logged")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    app.add_exception_handler(500, server_error)
    return app


# -- running it ----------------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the URL is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(app: Starlette, log_level: str):
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=1,
        lifespan="on",
    )
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Run the service in this (main) thread until SIGINT or SIGTERM."""
    sock = bind(host, port)
    print(f"map: {url_of(sock)}/map", flush=True)
    print(f"SensorThings API: {url_of(sock)}{STA_ROOT}", flush=True)
    server = _server(create_app(settings), "info")
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found: a quiet one here, so a clean stop exits 0 (systemd: not a failure).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: None)
    server.run(sockets=[sock])
    return 0


class WebServer:
    """The service in a thread of its own (the demo, the tests): ``start`` returns once it
    answers; ``stop`` ends it within about a second.

    Args:
        settings: the service's settings.
        host, port: where to listen (port 0: a free one).
    """

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.app = create_app(settings)
        self.server = _server(self.app, "warning")
        self.thread = threading.Thread(target=self._run, name="city-web", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 30.0) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web service did not start")
            time.sleep(0.02)
        return self

    @property
    def service(self) -> Service:
        return self.app.state.service

    def stop(self, timeout: float = 5.0) -> None:
        svc = self.service
        if svc.loop is not None and not svc.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # its loop may have ended already
                asyncio.run_coroutine_threadsafe(svc.stop(), svc.loop)
        self.server.should_exit = True
        self.thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()
