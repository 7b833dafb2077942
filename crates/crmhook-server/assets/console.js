// The console's script, served as /console.js: the page's Content-Security-Policy allows no
// inline script or event-handler attribute, so handlers are set from here. Five files, loaded
// in this order, share the page's global scope:
// - console.js (this one): the API client, errors shown beside their field, dialogs, the role
//   of the key, the events and their live feed, the audit trail, and sign-in;
// - console-sources.js: the sources (the steps to connect a CRM) and the quarantine;
// - console-center.js: the Webhook Center: targets, their subscriptions (the builder with its
//   live preview) and test events;
// - console-charts.js: the health and ingest pictures, drawn as inline SVG;
// - console-keys.js: the API keys (admins only): made, rotated and revoked.
// Everything a client sent (payloads, names, receivers' answers) is shown as text: `esc` for
// markup built as a string, `textContent` (through `visible`) otherwise; either way with the
// characters that reorder or hide text written out.
"use strict";
const $ = (s) => document.querySelector(s);
let me = null; // the calling key, from GET /v1/me: {id, name, role}
let token = sessionStorage.getItem("crmhook-token") || "";
let shown = null;      // id of the event in the detail pane
let searching = false; // the list shows a search, not the live feed
let sources = new Map(); // source id → source, from GET /v1/sources
let auditAfter = null; // next_after of the last page of the audit trail (newest first)
let auditLoads = 0; // the latest load of the audit trail: an earlier one's answer is dropped
                    // (two "Older" at once ask for the same page: the later answer is kept)
const AUDIT_PAGE = 50;
let searchAfter = null; // next_after of the last page of a search (newest first)
let searchLoads = 0;    // the latest load of a search: an earlier one's answer is dropped
const SEARCH_PAGE = 100;
let newestSeq = null;   // the newest event's seq the list has held: the live feed resumes after it
let replayErrors = new Map(); // target id → why its Replay or Retry now failed, shown beside it

// The characters that reorder or hide text (bidi controls, zero-width ones, …): the table of
// `crmhook_core::name::hides_text`, which a test holds this one to. A name may not hold one
// (since 2026-12-07), but older names, event types, record ids and payloads may.
const HIDES_TEXT = /[\u{ad}\u{34f}\u{600}-\u{605}\u{61c}\u{6dd}\u{70f}\u{890}-\u{891}\u{8e2}\u{115f}-\u{1160}\u{17b4}-\u{17b5}\u{180b}-\u{180f}\u{200b}-\u{200f}\u{2028}-\u{202e}\u{2060}-\u{206f}\u{3164}\u{feff}\u{ffa0}\u{fff0}-\u{fffb}\u{110bd}\u{110cd}\u{13430}-\u{1343f}\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]/gu;
// `v` as text with each of those written out, as the CLI writes them (`\u{202e}`), so that
// `billing-\u{202e}fdp.exe` does not read as `billing-exe.pdf`; `json`: as JSON's escapes
// (`\u202e`), so that JSON shown stays JSON.
function visible(v, json) {
  return String(v ?? "").replace(HIDES_TEXT, (c) => json
    ? Array.from({ length: c.length }, (_, i) => "\\u" + c.charCodeAt(i).toString(16).padStart(4, "0")).join("")
    : `\\u{${c.codePointAt(0).toString(16)}}`);
}
// JSON as shown: indented, with what hides text escaped.
function jsonText(v) { return visible(JSON.stringify(v, null, 2), true); }
function esc(v) { return visible(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
function when(t) { return t ? new Date(t).toLocaleString() : "–"; }
function sourceName(id) { return sources.get(id)?.name ?? id; }
function sourceHtml(id) { return sources.has(id) ? `<strong>${esc(sourceName(id))}</strong> <span class="mono muted">${esc(id)}</span>` : `<span class="mono">${esc(id)}</span>`; }
// The record id the search finds an event by (none for `ai_pause`).
function recordOf(e) { return e.record_id || ""; }

// ---- JSON as it is written ---------------------------------------------------------------------

// Numbers kept exactly (`12345678901234567890`, `12000.00`) through JSON.parse and back through
// JSON.stringify, where the browser has JSON.parse's source text access and `JSON.rawJSON`
// (Chromium 114+, Firefox 135+); elsewhere they are read as JavaScript numbers, as before.
const EXACT_NUMBERS = typeof JSON.rawJSON === "function" && typeof JSON.isRawJSON === "function" && (() => {
  try { let seen = null; JSON.parse("1.0", (k, v, context) => { seen = context?.source; return v; }); return seen === "1.0"; }
  catch (_) { return false; }
})();
// A number whose JavaScript value does not write back as its text becomes that text, raw.
function exactReviver(key, v, context) {
  return typeof v === "number" && typeof context?.source === "string" && String(v) !== context.source ? JSON.rawJSON(context.source) : v;
}
function parseExact(text) { return EXACT_NUMBERS ? JSON.parse(text, exactReviver) : JSON.parse(text); }
const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
// A number typed in a form: its text as it stands when it is in JSON's grammar (and the browser
// can say so), else its JavaScript value.
function exactNumber(text) {
  text = text.trim();
  return EXACT_NUMBERS && JSON_NUMBER.test(text) && String(Number(text)) !== text ? JSON.rawJSON(text) : Number(text);
}
function isRawNumber(v) { return EXACT_NUMBERS && JSON.isRawJSON(v); }

// The text of member `name` of the JSON object `text` (a whole answer) exactly as it stands
// there; null when the object has no such member or `text` is not an object.
function rawMember(text, name) {
  let i = 0;
  const space = () => { while (i < text.length && " \t\r\n".includes(text[i])) i++; };
  const string = () => { // at a quote: to just past its string
    for (i++; i < text.length; i++) {
      if (text[i] === "\\") i++;
      else if (text[i] === '"') { i++; return; }
    }
    throw new Error("a string does not end");
  };
  const value = () => { // to just past one value
    if (text[i] === '"') { string(); return; }
    if (text[i] === "{" || text[i] === "[") {
      let depth = 0;
      while (i < text.length) {
        const c = text[i];
        if (c === '"') { string(); continue; }
        if (c === "{" || c === "[") depth++;
        else if (c === "}" || c === "]") depth--;
        i++;
        if (!depth) return;
      }
      throw new Error("a value does not end");
    }
    while (i < text.length && !",}] \t\r\n".includes(text[i])) i++;
  };
  try {
    space();
    if (text[i] !== "{") return null;
    for (i++; ;) {
      space();
      if (text[i] !== '"') return null;
      const k = i; string();
      const key = JSON.parse(text.slice(k, i));
      space();
      if (text[i] !== ":") return null;
      i++; space();
      const v = i; value();
      if (key === name) return text.slice(v, i);
      space();
      if (text[i] !== ",") return null;
      i++;
    }
  } catch (_) { return null; }
}

// JSON text laid out as JSON.stringify(v, null, 2) lays it out (two spaces a level), but with
// every string, number and literal copied as it is written (`1e2`, `12000.00`, `"\u00e9"`).
function prettyJson(raw) {
  const tokens = raw.match(/"(?:[^"\\]|\\.)*"|[{}[\]:,]|[^\s{}[\]:,"]+/g) || [];
  let out = "", depth = 0;
  const line = () => "\n" + "  ".repeat(Math.max(depth, 0));
  tokens.forEach((t, n) => {
    if (t === "{" || t === "[") {
      out += t;
      if (tokens[n + 1] !== "}" && tokens[n + 1] !== "]") { depth++; out += line(); }
    } else if (t === "}" || t === "]") {
      if (tokens[n - 1] !== "{" && tokens[n - 1] !== "[") { depth--; out += line(); }
      out += t;
    } else if (t === ",") out += "," + line();
    else if (t === ":") out += ": ";
    else out += t;
  });
  return out;
}

// One API call: answers the JSON body; an error answer throws an Error with `status` and
// `problem` (the problem+json body: `detail`, and for a 422 `field`). `exact`: numbers read
// exactly (`parseExact`); `raw`: answers {body, text}, the answer's text as well.
// A 401 once signed in (the key revoked or rotated elsewhere) signs the page out.
async function api(path, opts = {}) {
  const { exact, raw, ...init } = opts;
  let r;
  try {
    r = await fetch(path, { ...init, headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", ...(init.headers || {}) } });
  } catch (_) {
    // No answer at all (the browser says only "Failed to fetch"): the server is down or out of
    // reach. Nothing is known of what a change asked meanwhile did.
    const e = new Error("the server did not answer (stopped, restarting, or out of reach): try again in a moment");
    e.status = 0; e.problem = {};
    throw e;
  }
  const text = r.headers.get("content-type")?.includes("json") ? await r.text().catch(() => null) : null;
  let body = null;
  try { body = text === null ? null : exact ? parseExact(text) : JSON.parse(text); } catch (_) { body = null; }
  if (!r.ok) {
    if (r.status === 401 && me) signOut("The key no longer works (revoked or rotated): sign in again.");
    const e = new Error((body && body.detail) || r.statusText || `HTTP ${r.status}`);
    e.status = r.status; e.problem = body || {};
    throw e;
  }
  return raw ? { body, text } : body;
}
const post = (path, body) => api(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });
const patch = (path, body) => api(path, { method: "PATCH", body: JSON.stringify(body) });
const del = (path) => api(path, { method: "DELETE" });

// A route this server does not have yet (an older server): 405, or a 404 that names no record
// ("no resource at …", or no problem at all). A 404 for a record that is gone ("target … not
// found") is that record's problem, shown as any other.
function missing(err) {
  if (!err) return false;
  const detail = err.problem?.detail;
  return err.status === 405 || (err.status === 404 && (!detail || detail.startsWith("no resource at")));
}
function missingNote(what, err) {
  return `<p class="notice small missing">${esc(what)}: not available on this server (${esc(err.status)}: ${esc(err.message)}).</p>`;
}

// ---- the role of the key --------------------------------------------------------------------

// Only an admin key changes things. For any other, every control marked `data-change` is
// disabled; the API refuses the change anyway (403), and a change attempted regardless shows
// that refusal beside the control.
function canChange() { return me?.role === "admin"; }
function applyRole(root = document) {
  if (canChange()) return;
  root.querySelectorAll("[data-change]").forEach((c) => {
    c.disabled = true;
    c.title = "Read only: an operator key may not change this";
  });
}

// ---- errors beside their field ----------------------------------------------------------------

// The field a problem names: its `field` member (422), else the first `name` in backquotes in
// its `detail` that the form has a slot for.
function problemField(form, err) {
  const p = err.problem || {};
  const has = (f) => f && form.querySelector(`.field-error[data-for="${CSS.escape(f)}"]`);
  // `filters[2]` names the filters' third row; `headers.X-Key` the header row of that name.
  const candidates = [p.field, p.field?.replace(/\[\d+\]$/, ""), p.field?.split(".")[0]];
  for (const m of String(p.detail || "").matchAll(/`([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)`/g)) candidates.push(m[1], m[1].replace(/\[\d+\]$/, ""));
  return candidates.find(has) || null;
}

function clearProblems(form) {
  form.querySelectorAll(".field-error, .form-error").forEach((e) => { e.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((e) => { e.removeAttribute("aria-invalid"); });
  form.querySelectorAll(".invalid").forEach((e) => { e.classList.remove("invalid"); });
}

// Shows an error answer in `form`: beside the field it names, or at the form's foot.
function showProblem(form, err) {
  clearProblems(form);
  const words = (err.status === 403 ? "Refused (403): " : err.status ? `${err.status}: ` : "") + (err.problem?.detail || err.message);
  const field = problemField(form, err);
  const slot = field ? form.querySelector(`.field-error[data-for="${CSS.escape(field)}"]`) : form.querySelector(".form-error");
  if (!slot) { alert(words); return; }
  slot.textContent = words;
  if (field) {
    slot.id ||= `err-${Math.random().toString(36).slice(2)}`;
    // The row named by `filters[i]` or `headers.Name`, else the control of that name.
    const index = /^(.*)\[(\d+)\]$/.exec(err.problem?.field || "");
    const rows = [...form.querySelectorAll(`[data-row-of="${CSS.escape(field)}"]`)];
    const named = (err.problem?.field || "").startsWith(field + ".") ? err.problem.field.slice(field.length + 1) : null;
    const row = index && index[1] === field ? rows[Number(index[2])]
      : named !== null ? rows.find((r) => r.querySelector("input")?.value.trim().toLowerCase() === named.toLowerCase()) : null;
    const control = row?.querySelector("input, select") || form.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (control) { control.setAttribute("aria-invalid", "true"); control.setAttribute("aria-describedby", slot.id); }
    row?.classList.add("invalid");
  }
}

// A client-side check failed: the same place an API error would go.
function fieldError(form, field, detail) {
  const e = new Error(detail); e.problem = { field, detail }; e.status = 0;
  showProblem(form, e);
}

// ---- dialogs ----------------------------------------------------------------------------------

// Every dialog closes on Escape (the browser's modal dialog does) and on its Cancel button; what
// it showed is cleared when it closes.
function openDialog(dlg) {
  dlg.querySelectorAll("form").forEach(clearProblems);
  applyRole(dlg);
  if (!dlg.open) dlg.showModal();
  (dlg.querySelector("[autofocus]") || dlg.querySelector("input:not([type=hidden]):not([disabled]), select, textarea, button:not([disabled])"))?.focus();
}

// A secret or key shown this once: copied from here, gone from the page when the dialog closes.
function showOnce(title, html) {
  const dlg = $("#dlg-once");
  $("#dlg-once-title").textContent = title;
  $("#once-body").innerHTML = html;
  $("#once-body").querySelectorAll(".copy").forEach(copyButton);
  dlg.showModal();
  $("#once-body").querySelector("input")?.focus();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(), { once: true }));
}

function onceField(label, value, cls) {
  return `<label>${esc(label)}<div class="copy-row"><input class="once ${cls || ""} mono" readonly value="${esc(value)}"><button type="button" class="copy secondary">Copy</button></div></label>`;
}

function copyButton(b) {
  b.onclick = async () => {
    const input = b.previousElementSibling;
    input.select();
    try { await navigator.clipboard.writeText(input.value); } catch (_) { document.execCommand("copy"); }
    b.textContent = "Copied";
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  };
}

// Asks for a new name, then `action(name)`; its error shows in the dialog, which stays open.
// The keyboard goes back to `back` (a selector: the list was redrawn) once it is done.
function renameThen(title, current, action, back) {
  const dlg = $("#dlg-rename"), form = $("#rename-form");
  $("#dlg-rename-title").textContent = visible(title);
  form.elements.name.value = current;
  form.onsubmit = async (e) => {
    e.preventDefault();
    const name = form.elements.name.value.trim();
    if (!name) { fieldError(form, "name", "Give it a name (1–200 characters)."); return; }
    if (name === current) { dlg.close(); return; }
    try { await action(name); } catch (err) { showProblem(form, err); return; }
    dlg.close();
    $(back)?.focus();
  };
  openDialog(dlg);
  form.elements.name.select();
}

// Asks before `action` (a deletion); its error shows in the dialog, which stays open.
// `fallback` (a selector) takes the keyboard's place when the action removed the control that
// opened the dialog (a deletion redraws its list), so focus does not fall back to the page.
function confirmThen(text, label, action, fallback) {
  const dlg = $("#dlg-confirm"), form = $("#confirm-form");
  $("#confirm-text").textContent = visible(text);
  $("#confirm-yes").textContent = label;
  form.onsubmit = async (e) => {
    e.preventDefault();
    clearProblems(form);
    try { await action(); dlg.close(); } catch (err) { showProblem(form, err); return; }
    // Still in the closed dialog (the browser gives focus back later, to a control that may
    // be gone), on the page, or nowhere.
    const at = document.activeElement;
    if (fallback && (!at || at === document.body || !at.isConnected || dlg.contains(at))) $(fallback)?.focus();
  };
  openDialog(dlg);
  $("#confirm-no").focus();
}

function eventRow(e) {
  const tr = document.createElement("tr");
  tr.className = "event"; tr.dataset.id = e.id;
  tr.classList.toggle("test", !!e.test);
  tr.classList.toggle("selected", e.id === shown);
  tr.innerHTML = `<td>${esc(e.seq)}</td><td>${esc(e.type)}${testBadge(e)}</td><td class="mono">${esc(recordOf(e))}</td>
    <td${e.source_id ? ` data-source="${esc(e.source_id)}" title="${esc(e.source_id)}"` : ""}>${esc(e.source_id ? sourceName(e.source_id) : "")}</td><td>${esc(when(e.received_at))}</td>`;
  tr.onclick = () => showEvent(e.id);
  keyboardRow(tr);
  return tr;
}

// An event sent by a target's "Test event" button is marked as such wherever it is listed.
function testBadge(e) { return e.test ? ` <span class="badge test" title="sent by a Test event button">test</span>` : ""; }

// What the receiver answered to one attempt: its status, headers and body (as text, with a
// marker when crmhook kept only the start of it), or the words of the error when it did not
// answer. Open for the last attempt and for failures.
// (A server that does not report answers leaves `response` out: nothing more is shown.)
function hasAnswer(a) { return a.response || (a.response === null && a.error); }
function answerHtml(a, open) {
  const r = a.response;
  if (!r) return a.response === null && a.error ? `<p class="no-answer dead">No answer: ${esc(a.error)}</p>` : "";
  const headers = Object.entries(r.headers || {}).map(([k, v]) =>
    `<tr><th scope="row" class="mono">${esc(k)}</th><td class="mono">${esc(Array.isArray(v) ? v.join(", ") : v)}</td></tr>`).join("");
  const failed = !(r.status >= 200 && r.status < 300);
  return `<details class="response"${open || failed ? " open" : ""}>
    <summary>The receiver answered <strong class="${failed ? "dead" : "delivered"}">HTTP ${esc(r.status)}</strong>${a.error && a.error !== `answered HTTP ${r.status}` ? ` — ${esc(a.error)}` : ""}</summary>
    ${headers ? `<table class="resp-headers">${headers}</table>` : `<p class="muted small">no headers</p>`}
    <pre class="response-body">${r.body ? esc(r.body) : ""}</pre>${r.body ? "" : `<p class="muted small">empty body</p>`}
    ${r.body_truncated ? `<p class="muted small truncated">… the body was longer: only its start was kept.</p>` : ""}
  </details>`;
}

// A row that opens something on click opens it on Enter too, and takes the focus.
function keyboardRow(tr) {
  tr.tabIndex = 0;
  tr.onkeydown = (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); tr.onclick(); } };
}

function addLive(e) {
  if (searching || document.querySelector(`#live tr[data-id="${e.id}"]`)) return;
  $("#live").prepend(eventRow(e));
  while ($("#live").children.length > 200) $("#live").lastChild.remove();
}

/** A pending delivery whose last attempt failed and waits for its next one. */
function waitsForRetry(d) {
  const last = (d.attempts || [])[(d.attempts || []).length - 1];
  return d.status === "pending" && last && last.result === "retrying";
}

async function showEvent(id) {
  shown = id;
  document.querySelectorAll("tr.event").forEach((r) => r.classList.toggle("selected", r.dataset.id === id));
  // The payload is shown as the CRM sent it: its text, from the answer's own (`payload` is
  // written into the answer as it stands), never parsed and written again.
  const { body: e, text } = await api(`/v1/events/${id}`, { raw: true });
  if (shown !== id) return; // another event was opened meanwhile
  const payload = rawMember(text, "payload");
  // A redelivery's refusal stays beside its button when the event is drawn again.
  const refused = new Map([...document.querySelectorAll(`#detail[data-event="${CSS.escape(id)}"] .redeliver-error`)]
    .map((s) => [s.dataset.target, s.textContent]));
  const deliveries = (e.deliveries || []).map((d) => `
    <div class="delivery" data-target="${esc(d.target_id)}">
      <strong>${esc(d.target_name || d.target_id)}</strong> <span class="mono muted">${esc(d.target_id)}</span>
      — <span class="status ${esc(d.status)}">${esc(d.status)}</span>
      ${d.target_deleted || e.test ? "" : waitsForRetry(d)
        ? `<button class="redeliver secondary" data-target="${esc(d.target_id)}" title="Attempt it now instead of at its next retry">Retry now</button>`
        : `<button class="redeliver secondary" data-target="${esc(d.target_id)}">Redeliver</button>`}
      ${refused.has(d.target_id) ? `<span class="error redeliver-error" role="alert" data-target="${esc(d.target_id)}">${esc(refused.get(d.target_id))}</span>` : ""}
      <table><thead><tr><th>#</th><th>at</th><th>answer</th><th>ms</th><th>result</th></tr></thead><tbody>
      ${(d.attempts || []).map((a, i, all) => `<tr class="attempt"><td>${esc(a.n)}</td><td>${esc(when(a.at))}</td>
        <td>${a.status_code ? "HTTP " + esc(a.status_code) : esc(a.error)}</td><td>${esc(a.duration_ms)}</td>
        <td class="${a.result === "delivered" ? "delivered" : a.result === "dead" ? "dead" : "pending"}">${esc(a.result)}${a.trigger === "redelivery" ? " (redelivery)" : ""}</td></tr>
        ${hasAnswer(a) ? `<tr class="answer"><td></td><td colspan="4">${answerHtml(a, i === all.length - 1)}</td></tr>` : ""}`).join("")}
      </tbody></table>
    </div>`).join("") || `<p class="muted">No target is owed this event.</p>`;
  $("#detail").dataset.event = id;
  $("#detail").innerHTML = `<h2>Event</h2>
    <p><span class="mono">${esc(e.id)}</span> · seq ${esc(e.seq)} · <strong>${esc(e.type)}</strong>${testBadge(e)} · ${esc(when(e.received_at))}</p>
    ${e.source_id ? `<p class="source">Source: ${sourceHtml(e.source_id)}</p>` : ""}
    <pre class="payload">${esc(payload === null ? jsonText(e.payload) : visible(prettyJson(payload), true))}</pre>
    <h2>Deliveries</h2>${deliveries}`;
  // Drawn again once a redelivery is queued; a refusal stays beside the button.
  document.querySelectorAll("#detail .redeliver").forEach((b) => b.onclick = async () => {
    b.disabled = true;
    b.parentElement.querySelector(".redeliver-error")?.remove();
    try { await post(`/v1/events/${id}/redeliver`, { target_id: b.dataset.target }); }
    catch (err) {
      b.disabled = false;
      const said = document.createElement("span");
      said.className = "error redeliver-error"; said.setAttribute("role", "alert"); said.dataset.target = b.dataset.target;
      said.textContent = visible((err.status ? `${err.status}: ` : "") + err.message);
      b.after(said);
      return;
    }
    // Unless another event was opened meanwhile (the pane is that one's now).
    setTimeout(() => { if (shown === id) showEvent(id).catch(() => {}); }, 300);
  });
}

async function loadTargets() {
  const { targets } = await api("/v1/targets");
  $("#targets").innerHTML = targets.map((t) => {
    const h = t.health || {};
    return `<tr data-id="${esc(t.id)}"><td><strong>${esc(t.name)}</strong><br><span class="mono muted">${esc(t.url)}</span></td>
      <td class="${t.enabled ? "delivered" : "dead"}">${t.enabled ? "enabled" : "disabled"}</td>
      <td>${esc(when(h.last_success_at))}</td><td class="${h.failures_in_a_row ? "dead" : ""}">${esc(h.failures_in_a_row ?? 0)}</td>
      <td>${esc(h.pending ?? 0)}${h.blocked_by_retries_until ? `<br><span class="blocked pending" title="Its window is full of deliveries waiting for retries: newer events wait behind them. Retry now sends them once the receiver answers again.">waiting for retries until ${esc(when(h.blocked_by_retries_until))}</span>` : h.retrying ? `<br><span class="retrying pending" title="Deliveries that failed and wait for their next attempt. Retry now sends them once the receiver answers again.">${esc(h.retrying)} waiting for a retry, the next ${esc(when(h.next_retry_at))}</span>` : ""}</td><td class="${h.dead ? "dead" : ""}">${esc(h.dead ?? 0)}</td>
            <td><button class="replay secondary" data-id="${esc(t.id)}" title="Queue this target's dead deliveries again">Replay</button>
            ${h.pending ? `<button class="retry-now secondary" data-id="${esc(t.id)}" title="The receiver is back: attempt now the deliveries waiting for a retry, instead of at their next time">Retry now</button>` : ""}
            ${replayErrors.has(t.id) ? `<div class="error replay-error" role="alert">${esc(replayErrors.get(t.id))}</div>` : ""}</td></tr>`;
  }).join("") || `<tr><td colspan="7" class="muted">No targets yet.</td></tr>`;
  // Each cell names its column: a narrow window shows a target as a card of labelled lines.
  document.querySelectorAll("#targets tr[data-id]").forEach((tr) => {
    ["", "", "last success", "failing", "pending", "dead", ""].forEach((label, i) => { if (label) tr.children[i].dataset.label = label; });
  });
  for (const id of replayErrors.keys()) if (!targets.some((t) => t.id === id)) replayErrors.delete(id);
  for (const [cls, status] of [["replay", "dead"], ["retry-now", "pending"]]) {
    document.querySelectorAll(`#targets .${cls}`).forEach((b) => b.onclick = async () => {
      const id = b.dataset.id;
      b.disabled = true;
      replayErrors.delete(id);
      $("#targets-note").textContent = "";
      b.parentElement.querySelector(".replay-error")?.remove();
      let r;
      try { r = await api(`/v1/targets/${id}/replay`, { method: "POST", body: JSON.stringify({ status }) }); }
      catch (err) {
        b.disabled = false;
        const words = (err.status ? `${err.status}: ` : "") + err.message;
        const said = document.createElement("div");
        said.className = "error replay-error"; said.setAttribute("role", "alert"); said.textContent = visible(words);
        b.parentElement.appendChild(said);
        // Gone (deleted elsewhere): the table follows, and says why the row went.
        if (err.status === 404) {
          $("#targets-note").textContent = visible(`${b.textContent}: ${words}`);
          loadTargets().catch(() => {});
        } else replayErrors.set(id, words);
        return;
      }
      b.textContent = `Queued ${r.queued}`;
      setTimeout(() => loadTargets().catch(() => {}), 1000);
    });
  }
}

// ---- the audit trail: built with textContent only (entries hold what clients sent) ----

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = visible(text);
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
      details.appendChild(el("pre", jsonText(value)));
    }
    change.appendChild(details);
  }
  tr.append(at, el("td", e.who), el("td", e.from ?? "–", "mono"),
    el("td", e.action, e.action === "auth.failed" ? "dead" : ""), subject, change);
  // Each cell names its column: a narrow window shows a row as a card of labelled lines.
  ["time", "who", "from", "action", "on", "change"].forEach((label, i) => { tr.children[i].dataset.label = label; });
  return tr;
}

// One page of a list the page loads again and again (a search, the audit trail, the keys): the
// answer, or null after saying `failure` and why in `status`, if this load is still the
// latest (`latest()`; an earlier load's answer or failure is dropped).
async function latestPage(path, latest, status, failure) {
  try {
    const page = await api(path);
    return latest() ? page : null;
  } catch (err) {
    if (latest()) $(status).textContent = failure + err.message;
    return null;
  }
}

// The trail pages newest first (`order=newest`); "Older" asks for the page after the last one
// shown, with the API's cursor.
async function loadAudit(older) {
  const load = ++auditLoads;
  const q = new URLSearchParams({ order: "newest", limit: String(AUDIT_PAGE) });
  if (older && auditAfter) q.set("after", auditAfter);
  const button = $("#a-older");
  const page = await latestPage("/v1/audit?" + q, () => load === auditLoads, "#a-status", "Could not read the audit trail: ");
  if (!page) return;
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

// The view `name` shown, the others hidden (nothing loaded).
function selectView(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  document.querySelectorAll("#app > main").forEach((m) => { m.hidden = m.id !== "view-" + name; });
}

function showView(name) {
  selectView(name);
  // Sources may have been added elsewhere: the filters and names follow.
  loadSources().then(() => name === "rejected" && loadRejected(false)).catch(() => {});
  if (name === "audit") loadAudit(false);
  if (name === "keys") loadKeys();
  if (name === "webhooks") loadCenter();
  // Targets may have been changed or deleted in the Webhooks view, or elsewhere.
  if (name === "events") { loadIngestChart(); loadTargets().catch(() => {}); }
}

async function loadRecent() {
  // The newest 50 events, newest first; the live feed puts each new one on top.
  const page = await api("/v1/events?order=newest&limit=50");
  $("#live").innerHTML = "";
  $("#q-older").hidden = true; $("#q-status").textContent = "";
  page.events.slice().reverse().forEach(addLive);
  page.events.forEach((e) => sawSeq(e.seq));
}

function sawSeq(seq) {
  if (typeof seq === "number" && (newestSeq === null || seq > newestSeq)) newestSeq = seq;
}

// A search pages newest first (`order=newest`); "Older" asks for the page after the last one
// shown, with the API's cursor.
async function loadSearch(older) {
  const load = ++searchLoads;
  const q = new URLSearchParams({ order: "newest", limit: String(SEARCH_PAGE) });
  if ($("#q-record").value.trim()) q.set("record_id", $("#q-record").value.trim());
  if ($("#q-type").value.trim()) q.set("type", $("#q-type").value.trim());
  if ($("#q-source").value) q.set("source_id", $("#q-source").value);
  if (older && searchAfter) q.set("after", String(searchAfter));
  searching = true;
  const page = await latestPage("/v1/events?" + q, () => load === searchLoads && searching, "#q-status", "Could not search: ");
  if (!page) return;
  const body = $("#live");
  if (!older) body.replaceChildren();
  page.events.forEach((ev) => body.appendChild(eventRow(ev)));
  searchAfter = page.next_after;
  const button = $("#q-older");
  const wasFocused = document.activeElement === button;
  button.hidden = !page.next_after;
  const n = body.querySelectorAll("tr.event").length;
  $("#q-status").textContent = n ? `${n} events found, newest first${page.next_after ? "" : ", back to the oldest kept"}.` : "No event matches.";
  // The button goes away at the oldest match: keep the keyboard's place on the page.
  if (wasFocused && button.hidden) $("#search button[type=submit]").focus();
}

// Reloads the targets' list at most once a second, however many attempts arrive (each reloaded
// it: 1,357 requests in 5 s for 300 events to three targets, from one open tab).
let targetsSoon = null;
function loadTargetsSoon() {
  if (targetsSoon) return;
  targetsSoon = setTimeout(() => { targetsSoon = null; loadTargets().catch(() => {}); }, 1000);
}

// Back to the sign-in form, the key forgotten (and said why, if `why`): the page is loaded
// again, so that nothing of the session (what it showed, what its script held, its stream)
// is left for the next key to see. The reason waits in the tab's session storage.
function signOut(why) {
  following++;
  sessionStorage.removeItem("crmhook-token");
  if (why) sessionStorage.setItem("crmhook-signed-out", why); else sessionStorage.removeItem("crmhook-signed-out");
  token = ""; me = null;
  location.reload();
}

// The live feed, opened again when it ends. A key that no longer works (revoked, rotated: 401)
// signs the page out: retrying it would count as a failed authentication every time, and lock
// the page's address out (every client behind it, the CRMs too). A 429 or 503 is retried after
// its `Retry-After`; anything else after a pause that doubles, up to a minute.
let following = 0; // the live feed's loop that runs: an older one ends
async function follow() {
  const mine = ++following;
  let pause = 2, connected = false;
  for (;;) {
    if (mine !== following) return; // signed out, or in again: that sign-in's loop follows
    try {
      // Back after a break: what changed meanwhile (the list, unless it shows a search, and
      // the targets); then the feed resumes after the newest event the list has held.
      if (connected) {
        if (!searching) await loadRecent();
        await loadTargets();
        if (mine !== following) return;
      }
      const r = await fetch(`/v1/stream?after=${newestSeq ?? 0}`, { headers: { "Authorization": "Bearer " + token } });
      if (r.status === 401 || r.status === 403) {
        signOut("The key no longer works (revoked or rotated): sign in again.");
        return;
      }
      if (!r.ok) {
        const after = Number(r.headers.get("retry-after"));
        if (after > 0) pause = Math.min(Math.max(after, 2), 600);
        throw new Error("stream: " + r.status);
      }
      $("#conn").textContent = "live";
      pause = 2; connected = true;
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
            if (kind === "event") { sawSeq(d.seq); addLive(d); ingestArrived(); }
            if (kind === "attempt") { if (d.event_id === shown) showEvent(shown).catch(() => {}); loadTargetsSoon(); centerAttempt(d); }
          }
        }
      }
      $("#conn").textContent = "reconnecting…"; // the stream ended (the server stopping, …)
    } catch (err) { $("#conn").textContent = "reconnecting…"; }
    await new Promise((res) => setTimeout(res, pause * 1000));
    pause = Math.min(pause * 2, 60);
  }
}

async function start() {
  let who;
  try {
    who = await api("/v1/me");
    if (who.role === "ingest") throw Object.assign(new Error("An ingest key only posts events: sign in with the admin token or an admin or operator key."), { status: 403 });
  } catch (err) {
    $("#login-error").textContent = err.status === 401 ? "That is not the admin token or an operator key." : err.message;
    // Only a key that is refused is forgotten: a server restarting (503), an address limited for
    // a while (429) or no answer at all keeps it for the next try (a reload signed out).
    if (err.status === 401 || err.status === 403) { sessionStorage.removeItem("crmhook-token"); token = ""; }
    return;
  }
  me = who;
  sessionStorage.setItem("crmhook-token", token);
  $("#token").value = "";
  document.body.classList.toggle("read-only", !canChange());
  $("#who").textContent = `${who.name} · ${who.role}`;
  $("#signout").hidden = false;
  $("#read-only").hidden = canChange();
  // The audit trail is the admins'.
  document.querySelector("#tabs button[data-view='audit']").hidden = !canChange();
  document.querySelector("#tabs button[data-view='keys']").hidden = !canChange();
  applyRole();
  selectView("events");
  $("#login").hidden = true; $("#app").hidden = false; $("#tabs").hidden = false;
  await loadSources();
  await Promise.all([loadRecent(), loadTargets()]);
  loadIngestChart();
  follow();
}

$("#login-form").onsubmit = (e) => { e.preventDefault(); token = $("#token").value.trim(); start(); };
$("#signout").onclick = () => signOut();
// Every dialog's Cancel closes it; the shown-once dialog forgets what it showed.
document.querySelectorAll("dialog .close").forEach((b) => { b.onclick = () => b.closest("dialog").close(); });
$("#once-form").onsubmit = (e) => { e.preventDefault(); $("#once-body").replaceChildren(); $("#dlg-once").close(); };
$("#dlg-once").addEventListener("cancel", () => { $("#once-body").replaceChildren(); });
$("#dlg-once").addEventListener("close", () => { $("#once-body").replaceChildren(); });
$("#search").onsubmit = (e) => { e.preventDefault(); loadSearch(false); };
$("#q-older").onclick = () => loadSearch(true);
$("#q-clear").onclick = () => { searching = false; searchLoads++; $("#q-record").value = ""; $("#q-type").value = ""; $("#q-source").value = ""; loadRecent(); };
$("#q-source").onchange = () => $("#search").requestSubmit();
document.querySelectorAll("#tabs button").forEach((b) => b.onclick = () => showView(b.dataset.view));
$("#a-search").onsubmit = (e) => { e.preventDefault(); loadAudit(false); };
$("#a-older").onclick = () => loadAudit(true);
// Signed out (then loaded again): why, if there was a reason.
const signedOut = sessionStorage.getItem("crmhook-signed-out");
if (signedOut !== null) { sessionStorage.removeItem("crmhook-signed-out"); $("#login-error").textContent = signedOut; }
// The other files are loaded by then.
if (token) document.addEventListener("DOMContentLoaded", start);
