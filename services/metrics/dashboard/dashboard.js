// The live desk: reads the metrics REST API with an ops key and draws it, no build step.
// Every value from the API goes into the page as text (textContent), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WINDOWS = { "24h": [24 * 3600e3, "1h"], "7d": [7 * 86400e3, "1d"], "30d": [30 * 86400e3, "1d"] };
const PRIORITIES = ["urgent", "high", "normal", "low"];
const REFRESH_MS = 15000;

function takeKey() {
  const match = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("switchboard-ops-key", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("switchboard-ops-key");
}

async function fetchPage(url, path) {
  const answer = await fetch(url, { headers: { Authorization: `Bearer ${takeKey()}` } });
  if (answer.status === 401 || answer.status === 403) {
    sessionStorage.removeItem("switchboard-ops-key");
    throw new Error("the key was refused: an ops key is needed");
  }
  if (!answer.ok) throw new Error(`${path} answered ${answer.status}`);
  const next = /<([^>]+)>;\s*rel="next"/.exec(answer.headers.get("Link") || "");
  return [await answer.json(), next ? new URL(next[1], location.origin) : null];
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [name, value] of params || []) url.searchParams.append(name, value);
  return (await fetchPage(url, path))[0];
}

// Every page of a list, following its Link rel="next" headers.
async function apiAll(path) {
  let items = [];
  let url = new URL(path, location.origin);
  while (url) {
    const [page, next] = await fetchPage(url, path);
    items = items.concat(page);
    url = next;
  }
  return items;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function percent(share) {
  return share === null || share === undefined ? "–" : `${Math.round(share * 1000) / 10}%`;
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function rows(table, items, cells) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const value of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    body.append(tr);
  }
}

// A line chart of p50 and p90 of one measure per time bucket.
function lineChart(svg, buckets, measure) {
  svg.replaceChildren();
  const [w, h, left, bottom] = [720, 220, 60, 24];
  const points = buckets.filter((b) => b[measure].count > 0);
  if (points.length === 0) {
    svg.append(el("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, "no data in this window"));
    return;
  }
  const times = points.map((b) => Date.parse(b.start));
  const [t0, t1] = [Math.min(...times), Math.max(...times) || 1];
  const top = Math.max(...points.map((b) => b[measure].p90)) || 1;
  const x = (t) => left + (t1 === t0 ? (w - left) / 2 : ((t - t0) / (t1 - t0)) * (w - left - 10));
  const y = (v) => h - bottom - (v / top) * (h - bottom - 10);
  svg.append(el("line", { x1: left, y1: h - bottom, x2: w, y2: h - bottom, class: "axis" }));
  svg.append(el("line", { x1: left, y1: 10, x2: left, y2: h - bottom, class: "axis" }));
  for (const fraction of [0, 0.5, 1]) {
    svg.append(el("text", { x: left - 6, y: y(top * fraction) + 4, "text-anchor": "end" }, duration(top * fraction)));
  }
  svg.append(el("text", { x: left, y: h - 6 }, new Date(t0).toISOString().slice(0, 16).replace("T", " ")));
  svg.append(el("text", { x: w, y: h - 6, "text-anchor": "end" }, new Date(t1).toISOString().slice(0, 16).replace("T", " ")));
  for (const p of ["p50", "p90"]) {
    const d = points.map((b, i) => `${i ? "L" : "M"}${x(Date.parse(b.start)).toFixed(1)},${y(b[measure][p]).toFixed(1)}`).join(" ");
    svg.append(el("path", { d, class: `series ${p}` }));
    for (const b of points) {
      const dot = el("circle", { cx: x(Date.parse(b.start)), cy: y(b[measure][p]), r: 3, class: p });
      dot.append(el("title", {}, `${b.start} ${p}: ${duration(b[measure][p])} (${b[measure].count} conversations)`));
      svg.append(dot);
    }
    svg.append(el("text", { x: w - 10, y: p === "p50" ? 20 : 34, "text-anchor": "end", class: `legend-${p}` }, p));
  }
}

// Bars of first-response and resolution attainment per priority.
function slaChart(svg, groups) {
  svg.replaceChildren();
  const [w, h, bottom] = [720, 180, 24];
  const byPriority = Object.fromEntries(groups.map((g) => [g.group.priority, g]));
  const slot = (w - 40) / PRIORITIES.length;
  svg.append(el("line", { x1: 20, y1: h - bottom, x2: w - 20, y2: h - bottom, class: "axis" }));
  PRIORITIES.forEach((priority, i) => {
    const g = byPriority[priority] || {};
    [["sla_first_response_attainment", "first response"], ["sla_resolution_attainment", "resolution"]].forEach(([key, label], j) => {
      const share = g[key];
      const x = 30 + i * slot + j * (slot / 2 - 10);
      const height = share === null || share === undefined ? 0 : share * (h - bottom - 30);
      const bar = el("rect", { x, y: h - bottom - height, width: slot / 2 - 20, height, class: "bar sla" });
      bar.append(el("title", {}, `${priority} ${label}: ${percent(share)}`));
      svg.append(bar);
      svg.append(el("text", { x: x + 4, y: h - bottom - height - 4 }, percent(share)));
    });
    svg.append(el("text", { x: 30 + i * slot, y: h - 6 }, priority));
  });
  svg.append(el("text", { x: w - 20, y: 14, "text-anchor": "end" }, "left bar: first response · right bar: resolution"));
}

async function refresh() {
  const clock = document.getElementById("clock").value;
  const [span, interval] = WINDOWS[document.getElementById("window").value];
  const from = new Date(Date.now() - span).toISOString();
  const [queues, agents, series, summary] = await Promise.all([
    api("/v1/live/queues"),
    apiAll("/v1/live/agents"),
    api("/v1/metrics/timeseries", [["interval", interval], ["from", from], ["clock", clock]]),
    api("/v1/metrics/summary", [["from", from], ["clock", clock], ["group_by", "priority"]]),
  ]);
  const waiting = queues.reduce((n, q) => n + q.depth, 0);
  const oldest = queues.length ? Math.max(...queues.map((q) => q.oldest_wait_s)) : null;
  const online = agents.filter((a) => a.status === "online");
  const sum = (items, field) => items.reduce((n, a) => n + Object.values(a[field]).reduce((m, v) => m + v, 0), 0);
  document.getElementById("waiting").textContent = waiting;
  document.getElementById("oldest").textContent = duration(oldest);
  document.getElementById("stuck").textContent = queues.reduce((n, q) => n + (q.stuck || 0), 0);
  document.getElementById("online").textContent = `${online.length} / ${agents.length}`;
  document.getElementById("load").textContent = `${sum(online, "load")} / ${sum(online, "capacity")}`;
  document.getElementById("frt90").textContent = duration(summary.first_response_s.p90);
  document.getElementById("sla-frt").textContent = percent(summary.sla_first_response_attainment);
  lineChart(document.getElementById("frt-chart"), series.buckets, "first_response_s");
  lineChart(document.getElementById("res-chart"), series.buckets, "resolution_s");
  slaChart(document.getElementById("sla-chart"), summary.groups);
  rows(document.getElementById("queues"), queues, (q) => [q.channel, q.priority, q.skill || "", q.language || "", q.depth, duration(q.oldest_wait_s), q.stuck || 0]);
  rows(document.getElementById("agents"), agents, (a) => [
    a.agent_id, a.team || "", a.status,
    Object.entries(a.capacity).map(([c, n]) => `${c} ${a.load[c] || 0}/${n}`).join(", "),
  ]);
  document.getElementById("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = "true";
}

async function tick() {
  try {
    await refresh();
  } catch (error) {
    document.getElementById("status").textContent = String(error.message || error);
    if (!takeKey()) show();
  }
}

function show() {
  const haveKey = Boolean(takeKey());
  document.getElementById("login").hidden = haveKey;
  document.getElementById("board").hidden = !haveKey;
  if (haveKey) tick();
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("switchboard-ops-key", document.getElementById("key").value.trim());
  show();
});
for (const id of ["clock", "window"]) document.getElementById(id).addEventListener("change", tick);
setInterval(() => takeKey() && tick(), REFRESH_MS);
show();
