"""The dashboard page: one self-contained HTML file (no CDN, no build step).

Plain DOM and inline SVG; it polls ``api/status`` every second and follows
``api/events/stream`` for the timeline. Paths are relative, so the page
works wherever the app is mounted. A ``?token=`` in the page URL is sent on
as a bearer header (and as ``token`` to the stream, which cannot send one).
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>paios reliability</title>
<link rel="icon" href="data:,">
<style>
:root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --mute: #57606a; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f8fa; color: #1f2328; }
header { display: flex; gap: 1em; align-items: center; padding: .8em 1.2em;
         background: #fff; border-bottom: 1px solid #d0d7de; }
h1 { font-size: 1.1em; margin: 0; }
h2 { font-size: .95em; margin: 0 0 .5em; color: var(--mute); text-transform: uppercase; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr));
       gap: 1em; padding: 1em; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: .8em; }
.chip { display: inline-block; padding: .25em .7em; margin: .15em; border-radius: 1em;
        color: #fff; font-weight: 600; }
.closed, .ok { background: var(--ok); }
.half_open, .degraded { background: var(--warn); }
.open, .failing { background: var(--bad); }
.verdict { padding: .2em .8em; border-radius: 4px; color: #fff; font-weight: 700; }
ul { list-style: none; margin: 0; padding: 0; }
li { padding: .2em 0; border-bottom: 1px solid #eaeef2; }
.lvl-error, .lvl-critical { color: var(--bad); }
.lvl-warning { color: var(--warn); }
.muted { color: var(--mute); }
#timeline { max-height: 24em; overflow-y: auto; font-family: ui-monospace, monospace;
            font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>paios reliability</h1>
  <span id="verdict" class="verdict">…</span>
  <span id="updated" class="muted"></span>
</header>
<main>
  <section><h2>Circuit breakers</h2><div id="breakers" class="muted">none</div></section>
  <section><h2>Why</h2><ul id="reasons"></ul></section>
  <section><h2>Health checks</h2><ul id="health"></ul></section>
  <section><h2>Bulkheads and rate limiters</h2><ul id="usage"></ul></section>
  <section><h2>Processes</h2><ul id="processes"></ul></section>
  <section><h2>Credentials</h2><ul id="credentials"></ul></section>
  <section><h2>Leak trend (MB/h)</h2><div id="leaks"></div></section>
  <section><h2>Errors by code</h2><ul id="errors"></ul></section>
  <section style="grid-column: 1 / -1"><h2>Timeline</h2><ul id="timeline"></ul></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function fill(id, items, render, empty) {
  const box = $(id);
  box.replaceChildren(...(items.length ? items.map(render) : [el("li", empty, "muted")]));
}

function leakChart(leaks) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 320, row = 22;
  svg.setAttribute("width", width);
  svg.setAttribute("height", Math.max(row, leaks.length * row));
  const top = Math.max(1, ...leaks.map((x) => Math.abs(x.slope_mb_per_hour || 0)));
  leaks.forEach((x, i) => {
    const bar = document.createElementNS(ns, "rect");
    const len = 150 * Math.abs(x.slope_mb_per_hour || 0) / top;
    bar.setAttribute("x", 160); bar.setAttribute("y", i * row + 4);
    bar.setAttribute("width", len); bar.setAttribute("height", row - 8);
    bar.setAttribute("fill", x.leaking ? "#cf222e" : "#1a7f37");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 0); label.setAttribute("y", i * row + 16);
    label.textContent = `${x.monitor} ${x.slope_mb_per_hour ?? "?"}`;
    svg.append(bar, label);
  });
  return svg;
}

function show(s) {
  const verdict = $("verdict");
  verdict.textContent = s.status.toUpperCase();
  verdict.className = "verdict " + s.status;
  $("updated").textContent = "updated " + s.generated_at;
  const chips = s.breakers.map((b) => {
    const chip = el("span", `${b.name}: ${b.state}`, "chip " + b.state);
    chip.dataset.breaker = b.name;
    chip.dataset.state = b.state;
    chip.title = b.since ? "since " + b.since : "never opened";
    return chip;
  });
  $("breakers").replaceChildren(...(chips.length ? chips : [el("span", "none", "muted")]));
  fill("reasons", s.reasons, (r) => el("li", r), "everything is OK");
  const checks = s.health ? s.health.checks : [];
  fill("health", checks, (c) => el("li", `${c.name}: ${c.status} ${c.detail || ""}`,
       c.status === "ok" ? "" : "lvl-error"), "no health registry");
  fill("usage", s.usage, (u) => el("li", u.kind === "bulkhead"
       ? `${u.name}: ${u.in_use}/${u.capacity ?? "?"} in use, ${u.waiting} waiting`
       : `${u.name}: ${u.in_use}s reserved ahead`), "none active");
  fill("processes", s.processes, (p) => el("li",
       `${p.service} pid ${p.pid} on ${p.host}: ${p.alive === false ? "GONE" : "running"}`,
       p.alive === false ? "lvl-error" : ""), "none marked running");
  fill("credentials", s.credentials, (c) => el("li",
       `${c.path}: ${c.ok ? "ok" : "problems"}; ` +
       c.attention.map((a) => `${a.name} ${a.state} (${a.expires_at})`).join(", "),
       c.ok && !c.attention.length ? "" : "lvl-warning"), "none configured");
  fill("errors", s.errors, (e) => el("li", `${e.code} x${e.count} (last ${e.last})`,
       "lvl-error"), "none in the window");
  $("leaks").replaceChildren(s.leaks.length ? leakChart(s.leaks)
                                            : el("span", "no warnings", "muted"));
}

async function refresh() {
  try {
    const response = await fetch("api/status", { headers });
    if (response.ok) show(await response.json());
    else $("updated").textContent = "status: HTTP " + response.status;
  } catch (err) {
    $("updated").textContent = "offline, retrying";
  }
}

function addEvent(e) {
  const name = `${e.category}.${e.action}`;
  const subject = (e.metadata && e.metadata.subject) || "";
  const line = `${e.ts} ${e.level} ${e.service ?? ""} ${name} ${subject}`;
  const item = el("li", line, "lvl-" + e.level);
  item.dataset.event = name;
  $("timeline").prepend(item);
  while ($("timeline").children.length > 200) $("timeline").lastChild.remove();
}

async function start() {
  await refresh();
  setInterval(refresh, 1000);
  const first = await fetch("api/events?limit=50", { headers });
  let after = 0;
  if (first.ok) {
    const page = await first.json();
    page.events.slice().reverse().forEach(addEvent);
    if (page.events.length) after = page.events[0].id;
  }
  const query = new URLSearchParams({ after: String(after) });
  if (token) query.set("token", token);
  const source = new EventSource("api/events/stream?" + query);
  source.addEventListener("event", (m) => { addEvent(JSON.parse(m.data)); refresh(); });
}
start();
</script>
</body>
</html>
"""
