// The city's live map: poles by state, alarms as they arrive, a pole's readings and its
// last day. Plain JavaScript, no build step, no library. Every value from the service is
// put into the page as text (textContent, setAttribute), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000;
let H = 640; // the map's height follows the poles' layout (fit)
const PAD = 60;
const state = {
  poles: new Map(), config: {}, selected: null, points: new Map(), lastEvent: 0,
  layout: null, markers: new Map(), rows: null, detail: null,
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function when(t) {
  if (t === null || t === undefined) return "never";
  return new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function clock(t) {
  // A time in a table: the time of day (UTC) when it is today's, else the full time.
  if (t === null || t === undefined) return "–";
  const full = when(t);
  return full.slice(0, 10) === new Date().toISOString().slice(0, 10) ? full.slice(11) : full;
}

function num(v, digits) {
  if (v === null || v === undefined) return "–";
  const d = digits === undefined ? 2 : digits;
  return Number(v).toFixed(Math.abs(v) >= 1000 ? 0 : d);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// -- projection (Web Mercator, so that a configured tile layer lines up) --------------------
function mercator(lat, lon) {
  const s = Math.sin((lat * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

function fit(located) {
  const xy = located.map((p) => mercator(p.lat, p.lon));
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of xy) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  }
  const min = 2e-6; // about 80 m: a single pole still gets a street around it
  const spanX = Math.max(x1 - x0, min);
  const spanY = Math.max(y1 - y0, min / 4);
  H = Math.round(Math.min(700, Math.max(300, (spanY / spanX) * (W - 2 * PAD) + 2 * PAD)));
  const map = document.getElementById("map");
  map.setAttribute("viewBox", `0 0 ${W} ${H}`);
  map.querySelector(".ground").setAttribute("height", H);
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
  return { scale, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
}

function project(view, lat, lon) {
  const [x, y] = mercator(lat, lon);
  return [W / 2 + (x - view.cx) * view.scale, H / 2 + (y - view.cy) * view.scale];
}

function drawTiles(view) {
  const g = document.getElementById("tiles");
  g.replaceChildren();
  const url = state.config.tileUrl;
  if (!url) return;
  const z = Math.max(0, Math.min(19, Math.floor(Math.log2(view.scale / 256))));
  const n = 2 ** z;
  const size = view.scale / n;
  const left = view.cx - W / 2 / view.scale;
  const top = view.cy - H / 2 / view.scale;
  for (let tx = Math.floor(left * n); tx <= Math.floor((left + W / view.scale) * n); tx++) {
    for (let ty = Math.floor(top * n); ty <= Math.floor((top + H / view.scale) * n); ty++) {
      if (tx < 0 || ty < 0 || tx >= n || ty >= n) continue;
      const href = url.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
      g.append(svg("image", {
        href, x: W / 2 + (tx / n - view.cx) * view.scale, y: H / 2 + (ty / n - view.cy) * view.scale,
        width: size, height: size, "aria-hidden": "true",
      }));
    }
  }
}

// -- markers -------------------------------------------------------------------------------
function shapeFor(stateName) {
  if (stateName === "alarm") return svg("path", { class: "shape", d: "M0,-13 L12,9 L-12,9 Z" });
  if (stateName === "revoked") return svg("rect", { class: "shape", x: -9, y: -9, width: 18, height: 18 });
  return svg("circle", { class: "shape", r: 9 });
}

function label(p) {
  const alarms = p.alarms.map((a) => a.alarm).join(", ");
  return `Pole ${p.id}: ${p.state}${alarms ? ` (${alarms})` : ""}`;
}

function placeMarker(m, p) {
  // A marker's state, in place: the element (and the keyboard focus on it) stays.
  if (m.getAttribute("data-state") !== p.state) {
    m.setAttribute("class", `pole state-${p.state}`);
    m.setAttribute("data-state", p.state);
    m.querySelector(".shape").replaceWith(shapeFor(p.state));
  }
  m.setAttribute("aria-label", label(p));
  m.setAttribute("aria-pressed", String(state.selected === p.id));
  m.querySelector("title").textContent = label(p);
}

function drawMarkers() {
  const located = [...state.poles.values()].filter((p) => p.lat !== null && p.lon !== null);
  const g = document.getElementById("markers");
  const layout = located.map((p) => `${p.id}@${p.lat},${p.lon}`).sort().join(";");
  if (layout === state.layout) {
    for (const p of located) placeMarker(state.markers.get(p.id), p);
    return;
  }
  state.layout = layout;
  state.markers = new Map();
  g.replaceChildren();
  state.points.clear();
  if (!located.length) return;
  const view = fit(located);
  drawTiles(view);
  for (const p of located) {
    const [x, y] = project(view, p.lat, p.lon);
    state.points.set(p.id, [x, y]);
    const m = svg("g", {
      class: `pole state-${p.state}`, transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`,
      tabindex: 0, role: "button", "data-pole": p.id, "data-state": p.state,
    });
    const text = svg("text", { y: 28, "text-anchor": "middle", "aria-hidden": "true" });
    text.textContent = p.id;
    m.append(svg("title"), svg("circle", { class: "focus-ring", r: 17 }), shapeFor(p.state), text);
    placeMarker(m, p);
    m.addEventListener("click", () => select(p.id));
    m.addEventListener("keydown", (ev) => onMarkerKey(ev, p.id));
    state.markers.set(p.id, m);
    g.append(m);
  }
}

function onMarkerKey(ev, id) {
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    select(id);
    return;
  }
  const dirs = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  const d = dirs[ev.key];
  if (!d) return;
  ev.preventDefault();
  const [x0, y0] = state.points.get(id);
  let best = null;
  for (const [other, [x, y]] of state.points) {
    const dx = x - x0;
    const dy = y - y0;
    const along = dx * d[0] + dy * d[1];
    if (other === id || along <= 0) continue;
    const cost = Math.hypot(dx, dy) + 2 * Math.abs(dx * d[1] - dy * d[0]);
    if (!best || cost < best[0]) best = [cost, other];
  }
  if (best) document.querySelector(`#markers [data-pole="${CSS.escape(best[1])}"]`).focus();
}

function fillRow(tr, p) {
  const alarms = p.alarms.map((a) => a.alarm + (a.detail ? `: ${a.detail}` : "")).join("; ");
  tr.setAttribute("data-state", p.state);
  tr.querySelector("button").setAttribute("aria-pressed", String(state.selected === p.id));
  const [, stateCell, alarmCell, heardCell] = tr.children;
  stateCell.replaceChildren(el("span", { class: `badge state-${p.state}` }, p.state));
  alarmCell.textContent = alarms || "none";
  heardCell.textContent = when(p.lastHeard);
}

function drawTable() {
  const body = document.querySelector("#poles tbody");
  const poles = [...state.poles.values()].sort((a, b) => a.id.localeCompare(b.id));
  const ids = poles.map((p) => p.id).join(";");
  if (ids !== state.rows) {
    state.rows = ids;
    body.replaceChildren();
    for (const p of poles) {
      const button = el("button", { type: "button", "data-pole": p.id }, p.id);
      button.addEventListener("click", () => select(p.id));
      body.append(el("tr", { "data-pole": p.id },
        el("th", { scope: "row" }, button), el("td"), el("td"), el("td")));
    }
  }
  for (const tr of body.children) fillRow(tr, state.poles.get(tr.getAttribute("data-pole")));
}

function redraw() {
  const focused = document.activeElement && document.activeElement.getAttribute("data-pole");
  const inMap = document.activeElement && document.activeElement.closest("#markers");
  drawMarkers();
  drawTable();
  if (focused) {
    const again = document.querySelector(`${inMap ? "#markers" : "#poles"} [data-pole="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  const counts = {};
  for (const p of state.poles.values()) counts[p.state] = (counts[p.state] || 0) + 1;
  setStatus(`${state.poles.size} poles: ` +
    ["ok", "alarm", "silent", "revoked"].map((s) => `${counts[s] || 0} ${s}`).join(", ") + ". Live.");
}

// -- a selected pole -------------------------------------------------------------------------
async function select(id) {
  state.selected = id;
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  redraw();
  await showDetail(id, true);
}

async function showDetail(id, focus) {
  let d;
  try {
    d = await getJSON(`/api/poles/${encodeURIComponent(id)}`);
  } catch (err) {
    return;
  }
  if (state.selected !== id) return;
  const seen = JSON.stringify(d);
  if (!focus && seen === state.detail) return; // nothing new: leave the panel as it is
  state.detail = seen;
  const section = document.getElementById("detail");
  section.setAttribute("data-pole", id);
  section.setAttribute("data-state", d.pole.state);
  document.getElementById("detail-heading").textContent = `Pole ${id}: ${d.pole.state}`;
  const body = document.getElementById("detail-body");
  const parts = [];
  const alarms = d.pole.alarms.length
    ? el("ul", { class: "alarms" }, ...d.pole.alarms.map((a) => el("li", {},
        el("strong", {}, a.alarm), a.detail ? `: ${a.detail}` : "", ` (since ${when(a.since)})`)))
    : el("p", {}, "No open alarms.");
  parts.push(alarms);
  parts.push(el("p", {}, `Last heard ${when(d.pole.lastHeard)}. `,
    el("a", { href: d.publicPage }, "What this pole measures, and its privacy"), " · ",
    el("a", { href: `/v1.1/Things('${encodeURIComponent(id)}')/Datastreams` }, "its data (SensorThings)")));
  parts.push(readingsTable(d.readings));
  if (d.counts.length) parts.push(countsTable(d.counts));
  const charts = el("div", { class: "charts" });
  for (const c of d.charts) charts.append(chart(c));
  parts.push(el("h3", {}, "The last day"), charts);
  body.replaceChildren(...parts);
  if (focus) section.focus();
}

function verified(v) {
  // "verified, key 5647:5aa7:5463:474c": the key that signed the value (and if it is
  // revoked since), the fingerprint kept on one line.
  const note = v.keyStatus === "revoked" ? " (revoked since)" : "";
  return el("td", { class: `verification key-${v.keyStatus}` },
    "verified, key ", el("span", { class: "key" }, v.key), note);
}

function readingsTable(rows) {
  const t = el("table", { class: "readings" },
    el("caption", {}, "Latest window of each series, and how it was verified"),
    el("thead", {}, el("tr", {}, ...["Series", "Mean", "Range", "n", "Window end (UTC)", "Verification"]
      .map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  for (const r of rows) {
    const range = r.count ? `${num(r.min)} – ${num(r.max)}` : "–";
    body.append(el("tr", { "data-series": `${r.sensor}/${r.field}` },
      el("th", { scope: "row" }, `${r.sensor} ${r.field}`, r.unit ? el("span", { class: "unit" }, ` (${r.unit})`) : ""),
      el("td", {}, num(r.mean)), el("td", {}, range),
      el("td", {}, r.count), el("td", {}, el("time", { datetime: when(r.t) }, clock(r.t))),
      verified(r.verification)));
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "No readings yet.")));
  t.append(body);
  return t;
}

function countsTable(rows) {
  const t = el("table", { class: "readings" },
    el("caption", {}, "Latest bin of each count, after the pole's privacy gate"),
    el("thead", {}, el("tr", {}, ...["Count", "Value", "Bin end (UTC)", "Verification"]
      .map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  for (const r of rows) {
    body.append(el("tr", { "data-series": `${r.sensor}/${r.field}` },
      el("th", { scope: "row" }, `${r.sensor} ${r.field}`),
      el("td", {}, r.suppressed ? "fewer than k (suppressed)" : r.count),
      el("td", {}, el("time", { datetime: when(r.t) }, clock(r.t))),
      verified(r.verification)));
  }
  t.append(body);
  return t;
}

function chart(c) {
  const id = `chart-${c.sensor}-${c.field}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const pts = c.points;
  const fig = el("figure", { class: "chart", "data-series": `${c.sensor}/${c.field}` });
  const cw = 320;
  const ch = 120;
  const values = c.kind === "counts" ? pts.map((p) => p[1]) : pts.flatMap((p) => [p[2], p[3]]);
  const clean = values.filter((v) => v !== null && Number.isFinite(v));
  const lo = clean.length ? Math.min(...clean) : 0;
  const hi = clean.length ? Math.max(...clean) : 1;
  const t0 = pts.length ? pts[0][0] : 0;
  const t1 = pts.length ? pts[pts.length - 1][0] : 1;
  const sx = (t) => 36 + ((t - t0) / Math.max(1, t1 - t0)) * (cw - 44);
  const sy = (v) => ch - 18 - ((v - lo) / Math.max(1e-9, hi - lo)) * (ch - 30);
  const pic = svg("svg", { viewBox: `0 0 ${cw} ${ch}`, role: "img", "aria-labelledby": `${id}-cap` });
  pic.append(svg("line", { class: "axis", x1: 36, y1: ch - 18, x2: cw - 8, y2: ch - 18 }));
  pic.append(svg("line", { class: "axis", x1: 36, y1: 8, x2: 36, y2: ch - 18 }));
  for (const [v, y] of [[hi, sy(hi)], [lo, sy(lo)]]) {
    const tick = svg("text", { x: 32, y: y + 4, "text-anchor": "end", class: "tick" });
    tick.textContent = num(v, 1);
    pic.append(tick);
  }
  if (c.kind === "counts") {
    for (const [t, v, supp] of pts) {
      pic.append(svg("rect", { class: supp ? "bar suppressed" : "bar", x: sx(t) - 2, y: sy(v), width: 4, height: Math.max(1, ch - 18 - sy(v)) }));
    }
  } else if (pts.length) {
    const band = pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[3]).toFixed(1)}`)
      .concat(pts.slice().reverse().map((p) => `${sx(p[0]).toFixed(1)},${sy(p[2]).toFixed(1)}`));
    pic.append(svg("polygon", { class: "band", points: band.join(" ") }));
    pic.append(svg("polyline", { class: "line", points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") }));
  }
  const latest = pts.length ? pts[pts.length - 1][1] : null;
  const unit = c.unit ? ` ${c.unit}` : "";
  const caption = el("figcaption", { id: `${id}-cap` },
    `${c.sensor} ${c.field}: ${pts.length} points from ${when(t0)} to ${when(t1)}; ` +
    `latest ${num(latest)}${unit}, lowest ${num(lo)}${unit}, highest ${num(hi)}${unit}.`);
  fig.append(pic, caption);
  return fig;
}

// -- live updates ---------------------------------------------------------------------------
function logAlarm(e) {
  const log = document.getElementById("alarm-log");
  const text = `${when(e.t)} ${e.pole}: ${e.alarm} ${e.raised ? "raised" : "cleared"}` +
    (e.detail ? ` (${e.detail})` : "");
  log.prepend(el("li", { class: e.raised ? "raised" : "cleared", "data-pole": e.pole }, text));
  while (log.children.length > 50) log.lastChild.remove();
}

async function reload() {
  const data = await getJSON("/api/poles");
  state.poles = new Map(data.poles.map((p) => [p.id, p]));
  state.lastEvent = Math.max(state.lastEvent, data.eventId);
  redraw();
}

let pending = null;
function reloadSoon(then) {
  // Many alarms at once (a storm, or the recent ones replayed) cost one reload.
  clearTimeout(pending);
  pending = setTimeout(() => reload().then(then).catch(() => {}), 250);
}

function listen() {
  // The last hundred events (those before this page opened, too) fill the alarm log.
  const source = new EventSource(`/api/events?after=${Math.max(0, state.lastEvent - 100)}`);
  source.addEventListener("pole", (ev) => {
    const p = JSON.parse(ev.data);
    reloadSoon(() => { if (state.selected === p.id) showDetail(p.id, false); });
  });
  source.addEventListener("alarm", (ev) => {
    const a = JSON.parse(ev.data);
    logAlarm(a);
    reloadSoon(() => { if (state.selected === a.pole) showDetail(a.pole, false); });
  });
  source.onerror = () => setStatus("Connection lost; reconnecting…");
  source.onopen = () => reloadSoon();
}

async function start() {
  try {
    state.config = await getJSON("/api/config");
    if (state.config.title) {
      document.getElementById("title").textContent = `${state.config.title}: live map`;
      document.title = `${state.config.title}: live map`;
    }
    await reload();
  } catch (err) {
    setStatus("The service does not answer; retrying…");
    setTimeout(start, 2000);
    return;
  }
  listen();
  setInterval(() => reload().catch(() => {}), 10000);
  setInterval(() => { if (state.selected) showDetail(state.selected, false); }, 5000);
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted && state.poles.has(wanted)) select(wanted);
}

document.addEventListener("DOMContentLoaded", start);
