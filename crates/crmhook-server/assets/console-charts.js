// The console's pictures, served as /console-charts.js (after /console.js): small stacked bar
// charts drawn as inline SVG, no library. A target's deliveries per minute (the last hour) or
// per quarter hour (the last day), with its backlog, last success and last failure, from
// GET /v1/targets/{id}/stats; and the events that came in, per type, from GET /v1/stats/ingest.
// Colours come from console.css (classes), so the page's style policy holds.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 600, CHART_H = 100;
const PERIODS = { minutes: ["the last hour", "60 min ago"], days: ["the last day", "24 h ago"] };
const DELIVERY_SERIES = [
  { key: "succeeded", cls: "s-ok", label: "succeeded" },
  { key: "failed", cls: "s-failed", label: "failed" },
  { key: "dead", cls: "s-dead", label: "dead" },
];
const INGEST_COLOURS = 8; // classes s-t0 … s-t7; the eighth is "other types"

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function ago(ms) {
  if (ms == null) return "";
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

// A stacked bar per bucket, `series` from the bottom up. `value(bucket, key)` reads a count.
function stackedBars(buckets, series, value, label) {
  const max = Math.max(1, ...buckets.map((b) => series.reduce((n, s) => n + (value(b, s.key) || 0), 0)));
  const chart = svg("svg", { viewBox: `0 0 ${CHART_W} ${CHART_H}`, preserveAspectRatio: "none", role: "img", class: "bars" });
  chart.setAttribute("aria-label", label);
  const w = CHART_W / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    const g = svg("g", { class: "bucket" });
    let y = CHART_H;
    const parts = [];
    for (const s of series) {
      const n = value(b, s.key) || 0;
      if (!n) continue;
      parts.push(`${n} ${s.label}`);
      const h = (n / max) * (CHART_H - 2);
      y -= h;
      g.appendChild(svg("rect", { x: (i * w + 0.5).toFixed(2), y: y.toFixed(2), width: Math.max(0.5, w - 1).toFixed(2), height: h.toFixed(2), class: s.cls }));
    }
    // The whole column is the tooltip's target, bars or not.
    const hit = svg("rect", { x: (i * w).toFixed(2), y: 0, width: w.toFixed(2), height: CHART_H, class: "hit" });
    const title = svg("title");
    title.textContent = `${b.at ? new Date(b.at).toLocaleString() : ""}: ${parts.join(", ") || "nothing"}`;
    hit.appendChild(title);
    g.appendChild(hit);
    chart.appendChild(g);
  });
  chart.appendChild(svg("line", { x1: 0, y1: CHART_H - 0.5, x2: CHART_W, y2: CHART_H - 0.5, class: "axis" }));
  const box = el("div", null, "chart-box");
  box.appendChild(el("div", `max ${max} per bar`, "chart-max muted small"));
  box.appendChild(chart);
  return { box, max };
}

function legend(items) {
  const ul = el("ul", null, "legend");
  for (const { cls, label } of items) {
    const li = el("li");
    const swatch = svg("svg", { viewBox: "0 0 10 10", class: "swatch", "aria-hidden": "true" });
    swatch.appendChild(svg("rect", { x: 0, y: 0, width: 10, height: 10, class: cls }));
    li.append(swatch, " ", label);
    ul.appendChild(li);
  }
  return ul;
}

function axis(period) {
  const row = el("div", null, "chart-axis muted small");
  row.append(el("span", PERIODS[period][1]), el("span", "now"));
  return row;
}

// Two buttons choosing the period; `draw(period)` redraws `box`, and the keyboard stays on the
// button pressed.
function periodTabs(current, draw, box) {
  const tabs = el("div", null, "chart-tabs");
  tabs.setAttribute("role", "group");
  tabs.setAttribute("aria-label", "period");
  for (const [period, text] of [["minutes", "Last hour"], ["days", "Last day"]]) {
    const b = el("button", text, "secondary" + (period === current ? " active" : ""));
    b.type = "button"; b.dataset.period = period;
    b.setAttribute("aria-pressed", String(period === current));
    b.onclick = () => { draw(period); box.querySelector(`.chart-tabs button[data-period="${period}"]`)?.focus(); };
    tabs.appendChild(b);
  }
  return tabs;
}

// ---- a target's health ------------------------------------------------------------------------

async function loadTargetHealth(id) {
  const box = $("#t-health");
  if (!box || box.dataset.target !== id) return;
  let stats;
  try { stats = await api(`/v1/targets/${id}/stats`); }
  catch (err) {
    if ($("#t-health")?.dataset.target !== id) return;
    const t = centerTargets.find((x) => x.id === id), h = t?.health || {};
    box.innerHTML = `<div class="health-facts">
        <div><span class="k">Pending</span> <strong>${esc(h.pending ?? 0)}</strong></div>
        <div><span class="k">Dead</span> <strong class="${h.dead ? "dead" : ""}">${esc(h.dead ?? 0)}</strong></div>
        <div><span class="k">Last success</span> ${esc(when(h.last_success_at))}</div>
        <div><span class="k">Failing</span> ${esc(h.failures_in_a_row ?? 0)} in a row</div></div>
      ${missing(err) ? missingNote("The delivery pictures", err) : `<p class="error">${esc(err.message)}</p>`}`;
    return;
  }
  if ($("#t-health")?.dataset.target !== id) return;
  drawHealth(box, stats);
}

// "HTTP 500", "timed out", or both when the error says more than the status.
function failureWords(f) {
  const status = f.status_code ? `HTTP ${f.status_code}` : "";
  const error = f.error && f.error !== `answered HTTP ${f.status_code}` ? f.error : "";
  return [status, error].filter(Boolean).join(": ") || "failed";
}

function drawHealth(box, st) {
  const lf = st.last_failure;
  const facts = `<div class="health-facts">
      <div><span class="k">Backlog</span> <strong class="backlog">${esc(st.backlog)}</strong>${st.backlog ? ` <span class="muted">oldest ${esc(ago(st.backlog_age_ms))} old${st.backlog_oldest_at ? ` (${esc(when(st.backlog_oldest_at))})` : ""}</span>` : ""}</div>
      <div><span class="k">Last success</span> <span class="last-success">${esc(when(st.last_success_at))}</span></div>
      <div><span class="k">Last failure</span> <span class="last-failure">${lf ? `${esc(when(lf.at))} — <span class="dead">${esc(failureWords(lf))}</span>` : "none"}</span></div>
    </div>`;
  const draw = (period) => {
    box.dataset.period = period;
    box.innerHTML = facts;
    const buckets = st[period] || [];
    const totals = Object.fromEntries(DELIVERY_SERIES.map((s) => [s.key, buckets.reduce((n, b) => n + (b[s.key] || 0), 0)]));
    const { box: chart } = stackedBars(buckets, DELIVERY_SERIES, (b, k) => b[k],
      `Deliveries over ${PERIODS[period][0]}: ${totals.succeeded} succeeded, ${totals.failed} failed, ${totals.dead} dead`);
    chart.classList.add("delivery-chart");
    box.append(periodTabs(period, draw, box), chart, axis(period),
      legend(DELIVERY_SERIES.map((s) => ({ cls: s.cls, label: `${s.label} ${totals[s.key]}` }))));
  };
  draw(PERIODS[box.dataset.period] ? box.dataset.period : "minutes");
}

// ---- events in, per type ----------------------------------------------------------------------

let ingestPeriod = "minutes", ingestTimer = null;

// The stream saw an event: the picture follows within 5 s while the Events view is shown.
function ingestArrived() {
  if (ingestTimer || $("#view-events").hidden) return;
  ingestTimer = setTimeout(() => { ingestTimer = null; loadIngestChart(); }, 5000);
}

async function loadIngestChart() {
  const box = $("#ingest-chart");
  let stats;
  try { stats = await api("/v1/stats/ingest"); }
  catch (err) {
    box.innerHTML = missing(err) ? missingNote("The ingest picture", err) : `<p class="error">${esc(err.message)}</p>`;
    return;
  }
  drawIngest(box, stats);
}

function drawIngest(box, st) {
  const draw = (period) => {
    ingestPeriod = period;
    document.querySelectorAll("#ingest-section > .chart-tabs button").forEach((b) => {
      b.classList.toggle("active", b.dataset.period === period);
      b.setAttribute("aria-pressed", String(b.dataset.period === period));
    });
    const buckets = st[period] || [];
    // The busiest types get a colour each; the rest are counted together.
    const totals = new Map();
    for (const b of buckets) for (const [t, n] of Object.entries(b.types || {})) totals.set(t, (totals.get(t) || 0) + n);
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]);
    const own = ranked.slice(0, ranked.length > INGEST_COLOURS ? INGEST_COLOURS - 1 : INGEST_COLOURS);
    const series = own.map(([t], i) => ({ key: t, cls: `s-t${i}`, label: t }));
    const rest = ranked.slice(own.length);
    if (rest.length) series.push({ key: "\u0000other", cls: `s-t${INGEST_COLOURS - 1}`, label: "other types" });
    const value = (b, k) => k === "\u0000other"
      ? rest.reduce((n, [t]) => n + ((b.types || {})[t] || 0), 0)
      : (b.types || {})[k] || 0;
    const total = buckets.reduce((n, b) => n + (b.total || 0), 0);
    const { box: chart } = stackedBars(buckets, series, value, `${total} events in over ${PERIODS[period][0]}`);
    chart.classList.add("ingest-chart");
    const items = own.map(([t, n], i) => ({ cls: `s-t${i}`, label: `${t} ${n}` }));
    if (rest.length) items.push({ cls: `s-t${INGEST_COLOURS - 1}`, label: `${rest.length} other types ${rest.reduce((n, [, c]) => n + c, 0)}` });
    box.replaceChildren(el("p", `${total} events over ${PERIODS[period][0]}`, "muted small ingest-total"), chart, axis(period), legend(items));
  };
  document.querySelectorAll("#ingest-section > .chart-tabs button").forEach((b) => { b.onclick = () => draw(b.dataset.period); });
  draw(ingestPeriod);
}
