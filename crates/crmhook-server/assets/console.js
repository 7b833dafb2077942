// The console's script, served as /console.js: the page's Content-Security-Policy allows no
// inline script or event-handler attribute, so handlers are set from here.
"use strict";
const $ = (s) => document.querySelector(s);
let token = sessionStorage.getItem("crmhook-token") || "";
let shown = null;      // id of the event in the detail pane
let searching = false; // the list shows a search, not the live feed
let sources = new Map(); // source id → source, from GET /v1/sources
let shownRejected = null; // id of the rejected piece in its detail pane
let rejectedAfter = null; // next_after of the last page of rejected pieces
let auditAfter = null; // next_after of the last page of the audit trail (newest first)
let auditLoads = 0; // the latest load of the audit trail: an earlier one's answer is dropped
                    // (two "Older" at once ask for the same page: the later answer is kept)
const AUDIT_PAGE = 50;

function esc(v) { return String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
function when(t) { return t ? new Date(t).toLocaleString() : "–"; }
function sourceName(id) { return sources.get(id)?.name ?? id; }
function sourceHtml(id) { return sources.has(id) ? `<strong>${esc(sourceName(id))}</strong> <span class="mono muted">${esc(id)}</span>` : `<span class="mono">${esc(id)}</span>`; }
function recordOf(p) { p = Array.isArray(p) ? p[0] : p; return (p && (p.recordId || p.sessionId || p.Id)) || ""; }

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...(opts.headers || {}) } });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) { const e = new Error((body && body.detail) || r.statusText); e.status = r.status; throw e; }
  return body;
}

function eventRow(e) {
  const tr = document.createElement("tr");
  tr.className = "event"; tr.dataset.id = e.id;
  tr.innerHTML = `<td>${esc(e.seq)}</td><td>${esc(e.type)}</td><td class="mono">${esc(recordOf(e.payload))}</td>
    <td${e.source_id ? ` data-source="${esc(e.source_id)}" title="${esc(e.source_id)}"` : ""}>${esc(e.source_id ? sourceName(e.source_id) : "")}</td><td>${esc(when(e.received_at))}</td>`;
  tr.onclick = () => showEvent(e.id);
  return tr;
}

function addLive(e) {
  if (searching || document.querySelector(`#live tr[data-id="${e.id}"]`)) return;
  $("#live").prepend(eventRow(e));
  while ($("#live").children.length > 200) $("#live").lastChild.remove();
}

async function showEvent(id) {
  shown = id;
  document.querySelectorAll("tr.event").forEach((r) => r.classList.toggle("selected", r.dataset.id === id));
  const e = await api(`/v1/events/${id}`);
  const deliveries = (e.deliveries || []).map((d) => `
    <div class="delivery" data-target="${esc(d.target_id)}">
      <strong>${esc(d.target_name || d.target_id)}</strong> <span class="mono muted">${esc(d.target_id)}</span>
      — <span class="status ${esc(d.status)}">${esc(d.status)}</span>
      ${d.target_deleted ? "" : `<button class="redeliver secondary" data-target="${esc(d.target_id)}">Redeliver</button>`}
      <table><thead><tr><th>#</th><th>at</th><th>answer</th><th>ms</th><th>result</th></tr></thead><tbody>
      ${(d.attempts || []).map((a) => `<tr class="attempt"><td>${esc(a.n)}</td><td>${esc(when(a.at))}</td>
        <td>${a.status_code ? "HTTP " + esc(a.status_code) : esc(a.error)}</td><td>${esc(a.duration_ms)}</td>
        <td class="${a.result === "delivered" ? "delivered" : a.result === "dead" ? "dead" : "pending"}">${esc(a.result)}${a.trigger === "redelivery" ? " (redelivery)" : ""}</td></tr>`).join("")}
      </tbody></table>
    </div>`).join("") || `<p class="muted">No target is owed this event.</p>`;
  $("#detail").innerHTML = `<h2>Event</h2>
    <p><span class="mono">${esc(e.id)}</span> · seq ${esc(e.seq)} · <strong>${esc(e.type)}</strong> · ${esc(when(e.received_at))}</p>
    ${e.source_id ? `<p class="source">Source: ${sourceHtml(e.source_id)}</p>` : ""}
    <pre>${esc(JSON.stringify(e.payload, null, 2))}</pre>
    <h2>Deliveries</h2>${deliveries}`;
  document.querySelectorAll("#detail .redeliver").forEach((b) => b.onclick = async () => {
    b.disabled = true;
    try { await api(`/v1/events/${id}/redeliver`, { method: "POST", body: JSON.stringify({ target_id: b.dataset.target }) }); }
    catch (err) { alert(err.message); }
    setTimeout(() => showEvent(id), 300);
  });
}

async function loadTargets() {
  const { targets } = await api("/v1/targets");
  $("#targets").innerHTML = targets.map((t) => {
    const h = t.health || {};
    return `<tr data-id="${esc(t.id)}"><td><strong>${esc(t.name)}</strong><br><span class="mono muted">${esc(t.url)}</span></td>
      <td class="${t.enabled ? "delivered" : "dead"}">${t.enabled ? "enabled" : "disabled"}</td>
      <td>${esc(when(h.last_success_at))}</td><td class="${h.failures_in_a_row ? "dead" : ""}">${esc(h.failures_in_a_row ?? 0)}</td>
      <td>${esc(h.pending ?? 0)}</td><td class="${h.dead ? "dead" : ""}">${esc(h.dead ?? 0)}</td>
            <td><button class="replay secondary" data-id="${esc(t.id)}" title="Queue this target's dead deliveries again">Replay</button></td></tr>`;
  }).join("") || `<tr><td colspan="7" class="muted">No targets yet.</td></tr>`;
  document.querySelectorAll("#targets .replay").forEach((b) => b.onclick = async () => {
    const r = await api(`/v1/targets/${b.dataset.id}/replay`, { method: "POST", body: JSON.stringify({ status: "dead" }) });
    b.textContent = `Queued ${r.queued}`;
    setTimeout(loadTargets, 1000);
  });
}

async function loadSources() {
  const list = (await api("/v1/sources")).sources;
  sources = new Map(list.map((s) => [s.id, s]));
  for (const select of [$("#q-source"), $("#r-source")]) {
    const keep = select.value;
    select.innerHTML = `<option value="">any source</option>` +
      list.map((s) => `<option value="${esc(s.id)}">${esc(s.name)} (${esc(s.kind)})</option>`).join("");
    select.value = sources.has(keep) ? keep : "";
  }
  $("#sources").innerHTML = list.map((s) => `<tr data-id="${esc(s.id)}"><td><strong>${esc(s.name)}</strong><br><span class="mono muted">${esc(s.id)}</span></td>
      <td>${esc(s.kind)}${s.kind === "maia" ? `<br><span class="${s.maia_secret_set ? "muted" : "dead"}">${s.maia_secret_set ? "secret set" : "no maia_secret yet"}</span>` : ""}</td>
      <td class="${s.enabled ? "delivered" : "dead"}">${s.enabled ? "enabled" : "disabled"}</td>
      <td><div class="copy-row"><input class="url mono" readonly value="${esc(s.ingest_url)}"><button type="button" class="copy secondary">Copy</button></div></td></tr>`).join("")
    || `<tr><td colspan="4" class="muted">No sources yet.</td></tr>`;
  document.querySelectorAll("#sources .copy").forEach((b) => b.onclick = async () => {
    const input = b.previousElementSibling;
    input.select();
    try { await navigator.clipboard.writeText(input.value); } catch (_) { document.execCommand("copy"); }
    b.textContent = "Copied";
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  });
  // Rows shown before a source was known show its id; now they can show its name.
  document.querySelectorAll("td[data-source]").forEach((td) => { td.textContent = sourceName(td.dataset.source); });
}

function rejectRow(r) {
  const tr = document.createElement("tr");
  tr.className = "reject"; tr.dataset.id = r.id;
  tr.classList.toggle("selected", r.id === shownRejected);
  tr.innerHTML = `<td>${esc(when(r.received_at))}</td><td data-source="${esc(r.source_id)}" title="${esc(r.source_id)}">${esc(sourceName(r.source_id))}</td>
    <td>${r.index == null ? `<span class="muted" title="the whole body">–</span>` : esc(r.index)}</td>
    <td class="reason">${esc(r.reason)}${r.retried ? ` <span class="delivered">(retried)</span>` : ""}</td>`;
  tr.onclick = () => showRejected(r.id);
  return tr;
}

// The quarantine pages forward from the oldest piece; "More" asks for the next page.
async function loadRejected(more) {
  const q = new URLSearchParams();
  if ($("#r-source").value) q.set("source_id", $("#r-source").value);
  if (more && rejectedAfter) q.set("after", rejectedAfter);
  q.set("limit", "100");
  const page = await api("/v1/rejected?" + q);
  if (!more) $("#rejected").innerHTML = "";
  page.rejected.forEach((r) => $("#rejected").appendChild(rejectRow(r)));
  if (!$("#rejected").children.length) $("#rejected").innerHTML = `<tr><td colspan="4" class="muted">Nothing was rejected.</td></tr>`;
  rejectedAfter = page.next_after;
  $("#r-more").hidden = !page.next_after;
}

async function showRejected(id) {
  shownRejected = id;
  document.querySelectorAll("tr.reject").forEach((r) => r.classList.toggle("selected", r.dataset.id === id));
  const r = await api(`/v1/rejected/${id}`);
  if (shownRejected !== id) return;
  $("#rejected-detail").innerHTML = `<h2>Rejected piece</h2>
    <p><span class="mono">${esc(r.id)}</span> · ${sourceHtml(r.source_id)} (${esc(r.kind)}) · ${esc(when(r.received_at))}${r.index == null ? " · the whole body" : ` · element ${esc(r.index)}`}</p>
    <p class="dead reason">${esc(r.reason)}</p>
    <pre id="rejected-body">${esc(r.body)}</pre>
    ${r.retried ? `<p class="delivered">Retried ${esc(when(r.retried.at))}: logged as <span class="mono">${esc(r.retried.event_id)}</span> (seq ${esc(r.retried.seq)}).</p>` : ""}
    <p><button type="button" id="r-retry">Retry</button> <span class="muted">reads the stored bytes again with today's rules</span></p>
    <div id="r-result"></div>`;
  $("#r-retry").onclick = async () => {
    const b = $("#r-retry");
    b.disabled = true;
    try {
      const res = await api(`/v1/rejected/${id}/retry`, { method: "POST" });
      const ev = res.events[0] || {};
      $("#r-result").innerHTML = `<p class="delivered">${res.duplicates ? "Already logged" : "Logged"} as event <span class="mono">${esc(ev.id)}</span> (seq ${esc(ev.seq)})
        <button type="button" class="secondary" id="r-open">Open event</button></p>`;
      $("#r-open").onclick = () => { showView("events"); showEvent(ev.id); };
      document.querySelector(`#rejected tr[data-id="${id}"]`)?.replaceWith(rejectRow(res.rejected));
    } catch (err) {
      $("#r-result").innerHTML = `<p class="dead">${esc(err.message)}</p>`;
    }
    b.disabled = false;
  };
}

// ---- the audit trail: built with textContent only (entries hold what clients sent) ----

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function shortValue(v) {
  const t = typeof v === "string" ? v : JSON.stringify(v ?? null);
  return t.length > 80 ? t.slice(0, 79) + "…" : t;
}

// One line about what an entry changed: the members that differ between before and after; for
// a record made or removed, its telling members; otherwise the value itself.
function auditSummary(before, after) {
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const skip = new Set(["id", "created_at", "updated_at"]);
  if (isObject(before) && isObject(after)) {
    const names = [...new Set([...Object.keys(before), ...Object.keys(after)])]
      .filter((k) => !skip.has(k) && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
    return names.length ? names.map((k) => `${k}: ${shortValue(before[k])} → ${shortValue(after[k])}`).join("; ") : "no visible change";
  }
  const one = isObject(after) ? after : isObject(before) ? before : null;
  if (one) {
    const telling = ["name", "kind", "url", "target_id", "event_types", "kanban_ids", "enabled", "status", "queued", "reason"];
    let names = telling.filter((k) => k in one);
    if (!names.length) names = Object.keys(one).filter((k) => !skip.has(k)).slice(0, 4);
    return (isObject(after) ? "" : "removed: ") + names.map((k) => `${k}: ${shortValue(one[k])}`).join("; ");
  }
  return after != null ? shortValue(after) : before != null ? "removed: " + shortValue(before) : "";
}

function auditRow(e) {
  const tr = el("tr", null, "audit");
  tr.dataset.cursor = e.cursor;
  tr.dataset.action = e.action;
  tr.dataset.subject = e.subject;
  const at = el("td", when(e.at)); at.title = e.at;
  const subject = el("td"); subject.appendChild(el("span", e.subject, "mono"));
  const change = el("td", null, "change");
  if (e.before == null && e.after == null) {
    change.appendChild(el("span", "–", "muted"));
  } else {
    // The records themselves open below the summary (a <details>: reachable by keyboard).
    const details = el("details");
    details.appendChild(el("summary", auditSummary(e.before, e.after)));
    for (const [label, value] of [["before", e.before], ["after", e.after]]) {
      if (value == null) continue;
      details.appendChild(el("div", label, "muted"));
      details.appendChild(el("pre", JSON.stringify(value, null, 2)));
    }
    change.appendChild(details);
  }
  tr.append(at, el("td", e.who), el("td", e.from ?? "–", "mono"),
    el("td", e.action, e.action === "auth.failed" ? "dead" : ""), subject, change);
  // Each cell names its column: a narrow window shows a row as a card of labelled lines.
  ["time", "who", "from", "action", "on", "change"].forEach((label, i) => { tr.children[i].dataset.label = label; });
  return tr;
}

// The trail pages newest first (`order=newest`); "Older" asks for the page after the last one
// shown, with the API's cursor.
async function loadAudit(older) {
  const load = ++auditLoads;
  const q = new URLSearchParams({ order: "newest", limit: String(AUDIT_PAGE) });
  if (older && auditAfter) q.set("after", auditAfter);
  const button = $("#a-older");
  let page;
  try {
    page = await api("/v1/audit?" + q);
  } catch (err) {
    if (load === auditLoads) $("#a-status").textContent = "Could not read the audit trail: " + err.message;
    return;
  }
  if (load !== auditLoads) return;
  const body = $("#audit");
  if (!older) body.replaceChildren();
  body.querySelector("tr.empty")?.remove();
  page.entries.forEach((e) => body.appendChild(auditRow(e)));
  const shown = body.querySelectorAll("tr.audit").length;
  if (!shown) {
    const tr = el("tr", null, "empty"); const td = el("td", "Nothing recorded yet.", "muted"); td.colSpan = 6;
    tr.appendChild(td); body.appendChild(tr);
  }
  auditAfter = page.next_after;
  const wasFocused = document.activeElement === button;
  button.hidden = !page.next_after;
  $("#a-status").textContent = shown ? `${shown} entries shown${page.next_after ? "" : ", back to the oldest kept"}.` : "";
  // The button goes away at the oldest entry: keep the keyboard's place on the page.
  if (wasFocused && button.hidden) $("#a-search button").focus();
}

function showView(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  document.querySelectorAll("#app > main").forEach((m) => { m.hidden = m.id !== "view-" + name; });
  // Sources may have been added elsewhere: the filters and names follow.
  loadSources().then(() => name === "rejected" && loadRejected(false)).catch(() => {});
  if (name === "audit") loadAudit(false);
}

async function loadRecent() {
    // The newest page: the last 50 seqs (the log pages forward from a seq).
  let head = 0;
  try { head = (await (await fetch("/readyz", { headers: { "Authorization": "Bearer " + token } })).json()).head || 0; } catch (_) {}
  const page = await api(`/v1/events?after=${Math.max(0, head - 50)}&limit=50`);
  $("#live").innerHTML = "";
  page.events.forEach(addLive);
}

async function follow() {
  for (;;) {
    try {
      const r = await fetch("/v1/stream", { headers: { "Authorization": "Bearer " + token } });
      if (!r.ok) throw new Error("stream: " + r.status);
      $("#conn").textContent = "live";
      const reader = r.body.getReader(); const text = new TextDecoder(); let buf = ""; let kind = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 1);
          if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) {
            const d = JSON.parse(line.slice(6));
            if (kind === "event") addLive(d);
            if (kind === "attempt") { if (d.event_id === shown) showEvent(shown); loadTargets(); }
          }
        }
      }
    } catch (err) { $("#conn").textContent = "reconnecting…"; }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

async function start() {
  try {
    await api("/v1/targets");
  } catch (err) {
    $("#login-error").textContent = err.status === 401 || err.status === 403 ? "That is not the admin token." : err.message;
    sessionStorage.removeItem("crmhook-token");
    return;
  }
  sessionStorage.setItem("crmhook-token", token);
  $("#login").hidden = true; $("#app").hidden = false; $("#tabs").hidden = false;
  await loadSources();
  await Promise.all([loadRecent(), loadTargets()]);
  follow();
}

$("#signin").onclick = () => { token = $("#token").value.trim(); start(); };
$("#token").onkeydown = (e) => { if (e.key === "Enter") $("#signin").click(); };
$("#search").onsubmit = async (e) => {
  e.preventDefault();
  const q = new URLSearchParams();
  if ($("#q-record").value.trim()) q.set("record_id", $("#q-record").value.trim());
  if ($("#q-type").value.trim()) q.set("type", $("#q-type").value.trim());
  if ($("#q-source").value) q.set("source_id", $("#q-source").value);
  q.set("limit", "200");
  searching = true;
  const { events } = await api("/v1/events?" + q);
  $("#live").innerHTML = "";
  events.reverse().forEach((ev) => $("#live").appendChild(eventRow(ev)));
};
$("#q-clear").onclick = () => { searching = false; $("#q-record").value = ""; $("#q-type").value = ""; $("#q-source").value = ""; loadRecent(); };
$("#q-source").onchange = () => $("#search").requestSubmit();
document.querySelectorAll("#tabs button").forEach((b) => b.onclick = () => showView(b.dataset.view));
$("#r-search").onsubmit = (e) => { e.preventDefault(); loadRejected(false); };
$("#r-source").onchange = () => loadRejected(false);
$("#r-more").onclick = () => loadRejected(true);
$("#a-search").onsubmit = (e) => { e.preventDefault(); loadAudit(false); };
$("#a-older").onclick = () => loadAudit(true);
if (token) start();
