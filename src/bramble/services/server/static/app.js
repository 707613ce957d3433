// bramble dashboard: fetches /api/v1/cluster once, then follows /api/v1/stream (server-sent
// events read with fetch, so the admin token can go in a header, never in a URL or the page).
"use strict";

const STATES = ["up", "down", "booting", "off", "unharvested"];
const METRICS = { temp: [30, 85, "°C"], cpu: [0, 100, "%"], mem: [0, 100, "%"] };
const view = { cells: new Map(), colourBy: "state", selected: null, warbles: new Map() };

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
};
const token = () => sessionStorage.getItem("brambleToken") || "";
const fmt = (v, unit) => (v === null || v === undefined ? "–" : `${v}${unit}`);
const clock = (ts) => new Date(ts * 1000).toLocaleTimeString();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  const text = await response.text();
  let body = {};
  try { body = text ? JSON.parse(text) : {}; } catch (e) { body = { error: text }; }
  if (!response.ok) {
    const err = new Error(body.error || `HTTP ${response.status}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text || "";
}

// -- the map --

function metricColour(value, kind) {
  const [low, high] = METRICS[kind];
  const f = Math.max(0, Math.min(1, (value - low) / (high - low)));
  return `hsl(${Math.round(140 - 140 * f)}, 70%, ${Math.round(45 + 6 * f)}%)`;
}

function paint(cell) {
  const node = cell.node;
  node.className = `cell s-${cell.state}${view.selected === cell.key ? " selected" : ""}`;
  const value = cell[view.colourBy];
  node.style.backgroundColor =
    view.colourBy !== "state" && cell.state === "up" && value !== undefined && value !== null
      ? metricColour(value, view.colourBy) : "";
  const parts = [cell.name || `bank ${cell.bank} slot ${cell.slot}`, cell.state];
  if (cell.cpu !== undefined) parts.push(`CPU ${cell.cpu}%`, `mem ${cell.mem}%`, `temp ${fmt(cell.temp, "°C")}`);
  node.title = parts.join(" · ");
  node.dataset.state = cell.state;
}

function renderMap(snap) {
  const map = $("map");
  map.replaceChildren();
  view.cells.clear();
  // as large as the panel allows: one column per bank, the cabinet's height within the screen
  const across = Math.floor((map.clientWidth || 800) / Math.max(1, snap.banks)) - 8;
  const down = Math.floor((0.6 * window.innerHeight) / Math.max(1, snap.slots)) - 2;
  const size = Math.max(10, Math.min(56, across, down));
  map.style.setProperty("--cell", `${size}px`);
  map.classList.toggle("big", size >= 28);
  const columns = new Map();
  for (let b = 1; b <= snap.banks; b++) {
    const column = el("div", "bank");
    column.append(el("div", "label", String(b).padStart(2, "0")));
    columns.set(b, column);
    map.append(column);
  }
  const sorted = [...snap.cells].sort((a, b) => a.bank - b.bank || a.slot - b.slot);
  for (const data of sorted) {
    const key = `${data.bank}-${data.slot}`;
    const node = el("div", "cell");
    node.id = `cell-${key}`;
    if (size >= 28) node.append(el("span", "name", data.slot));
    const cell = { ...data, key, node };
    node.addEventListener("click", () => select(key));
    view.cells.set(key, cell);
    columns.get(data.bank).append(node);
    paint(cell);
  }
}

function updateCells(list) {
  for (const data of list) {
    const cell = view.cells.get(`${data.bank}-${data.slot}`);
    if (!cell) continue;
    for (const k of ["cpu", "mem", "temp", "ts"]) delete cell[k];
    Object.assign(cell, data);
    paint(cell);
    if (view.selected === cell.key) showDetails(cell, false);
  }
}

function legend() {
  const box = $("legend");
  box.replaceChildren();
  if (view.colourBy === "state") {
    for (const s of STATES) {
      const item = el("span");
      const swatch = el("i", `cell s-${s}`);
      swatch.style.width = swatch.style.height = "10px";
      item.append(swatch, s);
      box.append(item);
    }
  } else {
    const [low, high, unit] = METRICS[view.colourBy];
    box.append(`${low}${unit}`, el("span", "scale"), `${high}${unit}`, el("span", "muted", "(up Pis)"));
  }
}

// -- totals, banks, events --

function renderTotals(t) {
  const tiles = [
    ["slots", t.slots, ""], ["up", t.up, "up"], ["down", t.down, "down"],
    ["booting", t.booting, "booting"], ["off", t.off, ""], ["unharvested", t.unharvested, ""],
    ["untrusted", t.untrusted, t.untrusted ? "down" : ""],
    ["CPU avg", fmt(t.cpu_percent_avg, "%"), ""], ["hottest", fmt(t.temp_c_max, "°C"), ""],
  ];
  $("totals").replaceChildren(...tiles.map(([label, value, cls]) => {
    const tile = el("div", `tile ${cls}`);
    tile.id = `total-${label.replace(/\W+/g, "-")}`;
    tile.append(el("div", "value", value), el("div", "label", label));
    return tile;
  }));
}

function renderBanks(rows) {
  $("banks").tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = el("tr");
    tr.id = `bank-${r.bank}`;
    const bar = el("div", "bar");
    const total = Math.max(1, r.slots);
    for (const s of ["up", "booting", "down"]) {
      const part = el("span", `b-${s}`);
      part.style.width = `${(100 * r[s]) / total}%`;
      bar.append(part);
    }
    const cells = [String(r.bank).padStart(2, "0"), `${r.up}/${r.slots}`, bar, r.down, r.booting,
      r.off, fmt(r.cpu_percent_avg, "%"), fmt(r.temp_c_max, "°C")];
    tr.append(...cells.map((c) => { const td = el("td"); td.append(c); return td; }));
    return tr;
  }));
}

function addEvent(e, atTop = true) {
  const li = el("li");
  li.append(el("time", "", clock(e.ts)), el("span", `kind ${e.kind}`, e.kind), el("span", "", e.message));
  const list = $("events");
  if (atTop) list.prepend(li); else list.append(li);
  while (list.children.length > 200) list.lastChild.remove();
}

async function loadEvents() {
  const found = await api("/api/v1/events?limit=50");
  $("events").replaceChildren();
  for (const e of found.events) addEvent(e, false);
}

// -- details of one Pi --

function chart(samples, key, unit, max) {
  const wrap = el("div");
  const values = samples.map((s) => s[key]).filter((v) => v !== null && v !== undefined);
  const label = el("div", "chart-label");
  label.append(el("span", "", key === "temp_c" ? "temperature" : key.replace(/_/g, " ")),
    el("span", "", values.length ? `${values[values.length - 1]}${unit}` : "–"));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 300 70");
  svg.setAttribute("preserveAspectRatio", "none");
  if (values.length > 1) {
    const top = Math.max(max, ...values);
    const pts = values.map((v, i) => `${(300 * i) / (values.length - 1)},${68 - (66 * v) / top}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#4aa3ff");
    line.setAttribute("stroke-width", "1.5");
    svg.append(line);
  }
  wrap.append(label, svg);
  return wrap;
}

async function showDetails(cell, withHistory = true) {
  $("details-empty").hidden = true;
  const body = $("details-body");
  body.hidden = false;
  const dl = el("dl");
  const rows = [["name", cell.name || "–"], ["bank / slot", `${cell.bank} / ${cell.slot}`],
    ["state", cell.state], ["IP", cell.ip || "–"], ["MAC", cell.mac || "not harvested"],
    ["CPU", fmt(cell.cpu, "%")], ["memory", fmt(cell.mem, "%")], ["temperature", fmt(cell.temp, "°C")],
    ["last sample", cell.ts ? clock(cell.ts) : "–"]];
  for (const [k, v] of rows) dl.append(el("dt", "", k), el("dd", "", v));
  const charts = withHistory ? el("div") : body.querySelector(".charts") || el("div");
  charts.className = "charts";
  body.replaceChildren(dl, charts);
  if (!withHistory || !cell.mac || cell.state === "off" || cell.state === "unharvested") return;
  try {
    const node = await api(`/api/v1/nodes/${cell.mac}?history=120`);
    const samples = node.history || []; // oldest first, as the API gives them
    charts.replaceChildren(chart(samples, "cpu_percent", "%", 100),
      chart(samples, "temp_c", "°C", 85), chart(samples, "mem_used_percent", "%", 100));
  } catch (e) {
    charts.replaceChildren(el("p", "muted", `no history: ${e.message}`));
  }
}

function select(key) {
  const old = view.cells.get(view.selected);
  view.selected = key;
  if (old) paint(old);
  const cell = view.cells.get(key);
  paint(cell);
  showDetails(cell);
}

// -- warbles, leaderboard, power --

function renderWarble(w) {
  let li = view.warbles.get(w.id);
  if (!li) {
    li = el("li");
    li.id = `warble-${w.id}`;
    view.warbles.set(w.id, li);
    $("warbles").prepend(li);
  }
  const head = el("div");
  head.append(el("strong", "", `#${w.id}`), ` ${w.user} · `, el("span", `kind ${w.state}`, w.state),
    w.node ? ` on ${w.node}` : "", w.digits ? ` · ${w.digits} digits of pi` : "");
  if ((w.state === "queued" || w.state === "waiting") && token()) {
    const cancel = el("button", "cancel", "cancel");
    cancel.type = "button";
    cancel.title = "cancel this Warble: no node has it yet (admin token)";
    cancel.addEventListener("click", () => cancelWarble(w.id));
    head.append(" ", cancel);
  }
  const parts = [head];
  if (w.output) parts.push(el("pre", "output", w.output));
  if (w.error) parts.push(el("pre", "error", w.error));
  li.replaceChildren(...parts);
}

async function loadWarbles() {
  try {
    const found = await api("/api/v1/warbles?limit=20");
    for (const w of found.warbles.slice().reverse()) renderWarble(w);
    const board = await api("/api/v1/leaderboard?limit=10");
    $("leaderboard").tBodies[0].replaceChildren(...board.leaderboard.map((l) => {
      const tr = el("tr");
      tr.append(el("td", "", l.rank), el("td", "", l.user), el("td", "", l.digits), el("td", "", `#${l.warble}`));
      return tr;
    }));
  } catch (e) {
    $("warble-status").textContent = `Warbles: ${e.message}`;
  }
}

async function followWarble(id) {
  for (let i = 0; i < 120; i++) {
    const w = await api(`/api/v1/warbles/${id}`);
    renderWarble(w);
    if (!["queued", "waiting", "running"].includes(w.state)) { loadWarbles(); return; }
    await sleep(1000);
  }
}

async function cancelWarble(id) {
  const status = $("warble-status");
  try {
    await api(`/api/v1/jobs/${id}/cancel`, { method: "POST" });
    renderWarble(await api(`/api/v1/warbles/${id}`));
    status.textContent = `Warble #${id} cancelled`;
    status.className = "muted";
  } catch (e) {
    status.textContent = e.status === 401 || e.status === 403
      ? `refused: cancelling needs the admin token (${e.message})` : `not cancelled: ${e.message}`;
    status.className = "error";
  }
}

async function submitWarble(event) {
  event.preventDefault();
  const status = $("warble-status");
  try {
    const body = JSON.stringify({ user: $("warble-user").value, source: $("warble-source").value });
    const job = await api("/api/v1/warbles", { method: "POST", body });
    status.textContent = `Warble #${job.id} ${job.state}`;
    status.className = "muted";
    await followWarble(job.id);
  } catch (e) {
    status.textContent = `not submitted: ${e.message}`;
    status.className = "error";
  }
}

async function power(event) {
  event.preventDefault();
  const status = $("power-status");
  const action = event.submitter ? event.submitter.value : "on";
  const group = Number($("power-group").value);
  try {
    const answer = await api("/api/v1/power", { method: "POST", body: JSON.stringify({ group, action }) });
    status.textContent = `group ${group} ${action}: ${answer.message}`;
    status.className = "muted";
  } catch (e) {
    status.textContent = e.status === 401 || e.status === 403
      ? `refused: power needs the admin token (${e.message})` : `group ${group} ${action}: ${e.message}`;
    status.className = "error";
  }
}

// -- live stream --

function handle(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (kind === "cells") updateCells(payload.cells);
  else if (kind === "summary") { renderTotals(payload.totals); renderBanks(payload.bank_summary); }
  else if (kind === "log") addEvent(payload);
  else if (kind === "resync") load();
}

function setLive(on, text) {
  const live = $("live");
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = text || (on ? "live" : "offline");
}

async function load() {
  const snap = await api("/api/v1/cluster");
  $("cluster-name").textContent = snap.cluster;
  document.title = `bramble · ${snap.cluster}`;
  renderMap(snap);
  renderTotals(snap.totals);
  renderBanks(snap.bank_summary);
  document.body.dataset.loaded = String(Date.now());
  await loadEvents();
}

async function follow() {
  for (;;) {
    try {
      const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
      const response = await fetch("/api/v1/stream", { headers, cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        notice("This dashboard needs the admin token: the operator has not allowed anonymous read.");
        setLive(false, "no access");
        await sleep(3000);
        continue;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      notice("");
      await load();
      setLive(true);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      console.warn("stream:", e);
    }
    setLive(false, "reconnecting");
    await sleep(2000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token").addEventListener("change", (e) => {
    if (e.target.value) sessionStorage.setItem("brambleToken", e.target.value);
    else sessionStorage.removeItem("brambleToken");
    load().catch(() => {});
    loadWarbles();
  });
  $("colour-by").addEventListener("change", (e) => {
    view.colourBy = e.target.value;
    for (const cell of view.cells.values()) paint(cell);
    legend();
  });
  $("warble-form").addEventListener("submit", submitWarble);
  $("power-form").addEventListener("submit", power);
  legend();
  follow();
  loadWarbles();
  setInterval(loadWarbles, 15000);
});
