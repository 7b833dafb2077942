// The Webhook Center, served as /console-center.js (after /console.js, whose helpers it uses):
// targets (create, edit, enable and disable, delete, rotate the secret, send a test event),
// their health pictures (drawn by console-charts.js), and their subscriptions, built with
// pickers fed by what the log has seen and a live preview of what they match.
"use strict";

const KNOWN_TYPES = ["crm_field_update", "crm_record_created", "crm_record_deleted", "ai_pause"];
const OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "exists"];
// The value kinds each operator takes (the first is the default). "json" is any JSON value
// (null, an object…), for the operators that take any value (docs/SUBSCRIPTIONS.md).
const OP_KINDS = {
  eq: ["string", "number", "true", "false", "array", "json"], ne: ["string", "number", "true", "false", "array", "json"],
  gt: ["number", "string"], gte: ["number", "string"], lt: ["number", "string"], lte: ["number", "string"],
  in: ["array"], nin: ["array"], contains: ["string", "number", "true", "false", "array", "json"], exists: ["true", "false"],
};
const KIND_LABEL = { number: "number", string: "text", true: "true", false: "false", array: "JSON array", json: "JSON value" };
// A number as a filter's number kind takes it.
const NUMBER_TEXT = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;
// Pointers into the payloads of MAIA and Maximizer, offered while typing a filter's path.
const KNOWN_PATHS = ["/fieldName", "/newValue", "/previousValue", "/kanbanId", "/kanbanName", "/recordId", "/updatedBy",
  "/externalUserId", "/assignedUserIds", "/customFields/", "/Entity", "/WorkspaceId", "/Data/Op", "/Data/Version",
  "/Data/New/", "/Data/Original/", "/Data/New/Revenue", "/Data/Original/Revenue", "/Data/New/SalesStageSetupName"];

let centerTargets = [];   // GET /v1/targets
let subsByTarget = new Map(); // target id → its subscriptions
let openTarget = null;    // id of the target in the pane
let editingTarget = null; // the target the form edits; null: a new one
let headersDirty = false; // the form's headers were touched: send the whole set
let subTarget = null;     // the target the subscription form is for
let editingSub = null;    // the subscription the form edits; null: a new one
let previewTimer = null, previewRun = 0, previewMissing = null;
let lastAttemptRefresh = 0, healthTimer = null;

function msText(ms) {
  if (ms < 1000) return `${ms} ms`;
  for (const [unit, n] of [["d", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]]) {
    if (ms >= n && ms % n === 0) return `${ms / n} ${unit}`;
  }
  return `${(ms / 1000).toFixed(1)} s`;
}

// ---- the list of targets ----------------------------------------------------------------------

async function loadCenter() {
  let targets, subs;
  try {
    // Filters' numbers read exactly, so that a subscription saved unchanged keeps them.
    [targets, subs] = await Promise.all([api("/v1/targets"), api("/v1/subscriptions", { exact: true })]);
  } catch (err) {
    $("#center-targets").innerHTML = `<li class="error">Could not read the targets: ${esc(err.message)}</li>`;
    return;
  }
  centerTargets = targets.targets;
  subsByTarget = new Map();
  for (const s of subs.subscriptions) {
    if (!subsByTarget.has(s.target_id)) subsByTarget.set(s.target_id, []);
    subsByTarget.get(s.target_id).push(s);
  }
  $("#center-targets").innerHTML = centerTargets.map((t) => {
    const h = t.health || {}, n = (subsByTarget.get(t.id) || []).length;
    return `<li class="card target-card${t.id === openTarget ? " selected" : ""}" data-id="${esc(t.id)}">
      <button type="button" class="linkish t-open" aria-label="Open target ${esc(t.name)}"><strong>${esc(t.name)}</strong></button>
      <span class="state ${t.enabled ? "delivered" : "dead"}">${t.enabled ? "enabled" : "disabled"}</span>
      <div class="mono muted wrap">${esc(t.url)}</div>
      <div class="small">${n} subscription${n === 1 ? "" : "s"} · ${esc(h.pending ?? 0)} pending · <span class="${h.dead ? "dead" : ""}">${esc(h.dead ?? 0)} dead</span>${h.failures_in_a_row ? ` · <span class="dead">failing ${esc(h.failures_in_a_row)}×</span>` : ""}</div>
    </li>`;
  }).join("") || `<li class="muted">No targets yet: “New target” makes one.</li>`;
  document.querySelectorAll("#center-targets .t-open").forEach((b) => { b.onclick = () => showTarget(b.closest("li").dataset.id); });
  filterTargets();
  if (openTarget && centerTargets.some((t) => t.id === openTarget)) renderTarget(openTarget);
  else if (openTarget) { openTarget = null; $("#target-pane").innerHTML = `<h2>Target</h2><p class="muted">Select a target.</p>`; }
}

// The list narrowed to the targets whose name, URL or id holds the filter's text (case
// ignored), and to those failing or with dead deliveries when that box is ticked.
function filterTargets() {
  const text = $("#t-filter").value.trim().toLowerCase(), failing = $("#t-failing").checked;
  let shown = 0;
  for (const t of centerTargets) {
    const li = document.querySelector(`#center-targets li[data-id="${CSS.escape(t.id)}"]`);
    if (!li) continue;
    const h = t.health || {};
    const hit = (!text || [t.name, t.url, t.id].some((v) => String(v).toLowerCase().includes(text)))
      && (!failing || h.failures_in_a_row > 0 || h.dead > 0 || !t.enabled);
    li.hidden = !hit;
    if (hit) shown++;
  }
  const all = centerTargets.length;
  $("#t-count").textContent = !all ? "" : shown === all ? `${all} target${all === 1 ? "" : "s"}` : `${shown} of ${all} targets`;
}
$("#t-filter").addEventListener("input", filterTargets);
$("#t-filter-form").onsubmit = (e) => e.preventDefault();
$("#t-failing").addEventListener("change", filterTargets);

async function showTarget(id) {
  openTarget = id;
  document.querySelectorAll("#center-targets li").forEach((li) => li.classList.toggle("selected", li.dataset.id === id));
  renderTarget(id);
  $("#target-pane h3")?.scrollIntoView({ block: "nearest" });
  $("#target-pane .t-edit")?.focus();
}

// ---- one target -------------------------------------------------------------------------------

function renderTarget(id) {
  const t = centerTargets.find((x) => x.id === id);
  if (!t) return;
  const headers = Object.keys(t.headers || {});
  const subs = subsByTarget.get(id) || [];
  const keepTest = $("#t-test-result")?.dataset.target === id ? $("#t-test-result").innerHTML : "";
  const keepPeriod = $("#t-health")?.dataset.period || "minutes";
  $("#target-pane").innerHTML = `<h2>Target</h2>
    <div class="t-head" data-id="${esc(t.id)}"><h3>${esc(t.name)}</h3>
      <span class="state t-state ${t.enabled ? "delivered" : "dead"}">${t.enabled ? "enabled" : "disabled"}</span></div>
    <p class="mono muted">${esc(t.id)}</p>
    <dl class="props">
      <dt>URL</dt><dd class="mono wrap t-url">${esc(t.url)}</dd>
      <dt>Headers</dt><dd class="t-headers">${headers.length ? headers.map((h) => `<code>${esc(h)}</code>`).join(" ") + ` <span class="muted small">(values are write-only)</span>` : `<span class="muted">none</span>`}</dd>
      <dt>Format</dt><dd>${t.format ? esc(t.format) : "each CRM's own shape"}</dd>
      <dt>Timeout</dt><dd>${esc(msText(t.timeout_ms))}</dd>
      <dt>Retries</dt><dd>${t.retry_schedule_ms.length ? t.retry_schedule_ms.map(msText).map(esc).join(", ") : "none: one attempt"}</dd>
      <dt>Ordered</dt><dd>${t.ordered ? "yes: one at a time, in log order" : "no"}</dd>
      <dt>Rate limit</dt><dd class="t-rate">${t.rate_limit_per_s ? `at most ${esc(String(t.rate_limit_per_s))} attempts a second` : "none"}</dd>
      <dt>Answers kept</dt><dd class="t-body-bytes">${t.response_body_bytes === 0 ? "status and headers, no body" : `status, headers and the body's first ${esc(String(t.response_body_bytes ?? 4096))} bytes`}</dd>
      <dt>Secret</dt><dd>shown only when the target is made or its secret rotated${t.previous_secret_expires_at ? `; the previous secret stays valid until ${esc(when(t.previous_secret_expires_at))}` : ""}</dd>
      ${t.enabled ? "" : `<dt>Disabled</dt><dd class="dead">${esc(when(t.disabled_at))}${t.disabled_reason ? `: ${esc(t.disabled_reason)}` : ""}</dd>`}
    </dl>
    <div class="actions">
      <button type="button" class="t-edit" data-change>Edit</button>
      <button type="button" class="secondary t-toggle" data-change>${t.enabled ? "Disable" : "Enable"}</button>
      <button type="button" class="secondary t-rotate" data-change>Rotate secret</button>
      <button type="button" class="danger t-delete" data-change>Delete</button>
    </div>
    <div class="row-error error t-error" role="alert"></div>
    <h3>Health</h3>
    <div id="t-health" class="health" data-target="${esc(t.id)}" data-period="${esc(keepPeriod)}"><p class="muted">Loading…</p></div>
    <h3>Test event</h3>
    <form id="t-test" class="inline-form" novalidate>
      <label>Type <select name="type"><option value="">the default</option>${KNOWN_TYPES.map((k) => `<option value="${esc(k)}">${esc(k)}</option>`).join("")}</select></label>
      <button type="submit" data-change>Send test event</button>
      <div class="form-error error" role="alert"></div>
    </form>
    <div id="t-test-result" data-target="${esc(t.id)}" role="status" aria-live="polite">${keepTest}</div>
    <h3>Subscriptions</h3>
    <p class="muted small">The target gets an event once when at least one of its subscriptions matches it; with none, it gets nothing.</p>
    <ul id="t-subs" class="subs">${subs.map(subItem).join("") || `<li class="muted">No subscription yet.</li>`}</ul>
    <p><button type="button" id="sub-new" data-change>Add subscription</button></p>`;
  wireTarget(t);
  applyRole($("#target-pane"));
  loadTargetHealth(t.id);
}

function subSummary(s) {
  const list = (xs) => xs.map((x) => `<code>${esc(x)}</code>`).join(" ");
  const filterText = (f) => `<code>${esc(f.path)} ${esc(f.op)}${f.op === "exists" && f.value === true ? "" : " " + esc(JSON.stringify(f.value))}</code>`;
  const parts = [
    `<span class="k">types</span> ${s.event_types.length ? list(s.event_types) : "every type"}`,
    s.kanban_ids.length ? `<span class="k">kanbans</span> ${list(s.kanban_ids)}` : "",
    s.field_names.length ? `<span class="k">fields</span> ${list(s.field_names)}` : "",
    s.version_major != null ? `<span class="k">version</span> ${esc(s.version_major)}` : "",
    s.filters.length ? `<span class="k">filters</span> ${s.filters.map(filterText).join(" and ")}` : "",
  ];
  return parts.filter(Boolean).join(" · ");
}

function subItem(s) {
  return `<li class="sub" data-id="${esc(s.id)}"><div class="sub-summary">${subSummary(s)}</div>
    <span class="mono muted small">${esc(s.id)}</span>
    <span class="actions"><button type="button" class="secondary sub-edit" data-change>Edit</button>
    <button type="button" class="danger sub-delete" data-change>Delete</button></span></li>`;
}

function wireTarget(t) {
  const pane = $("#target-pane");
  const rowError = (err) => { pane.querySelector(".t-error").textContent = (err.status === 403 ? "Refused (403): " : "") + err.message; };
  pane.querySelector(".t-edit").onclick = () => openTargetForm(t);
  pane.querySelector(".t-toggle").onclick = async () => {
    try { await patch(`/v1/targets/${t.id}`, { enabled: !t.enabled }); } catch (err) { rowError(err); return; }
    await loadCenter();
    $("#target-pane .t-toggle")?.focus();
  };
  pane.querySelector(".t-rotate").onclick = async () => {
    let r;
    try { r = await post(`/v1/targets/${t.id}/rotate-secret`); } catch (err) { rowError(err); return; }
    await showOnce("The target's new secret", `<p><strong>Copy it now: it is shown this once and never again.</strong></p>
      ${onceField("New secret", r.secret, "secret")}
      <p class="rotation-note">The old secret stays valid for 24 hours${r.previous_secret_expires_at ? ` (until ${esc(when(r.previous_secret_expires_at))})` : ""}: deliveries meanwhile carry both signatures in <code>webhook-signature</code>, and <code>X-Maia-Signature</code> by the new secret. Give the receiver the new secret before then.</p>`);
    await loadCenter();
  };
  pane.querySelector(".t-delete").onclick = () => confirmThen(
    `Delete the target “${t.name}”? Its subscriptions and what it is still owed go with it; its attempts stay in the log.`,
    "Delete target", async () => { await del(`/v1/targets/${t.id}`); await loadCenter(); }, "#t-new");
  $("#t-test").onsubmit = (e) => sendTest(e, t);
  $("#sub-new").onclick = () => openSubForm(t.id, null);
  pane.querySelectorAll("#t-subs li.sub").forEach((li) => {
    const s = (subsByTarget.get(t.id) || []).find((x) => x.id === li.dataset.id);
    li.querySelector(".sub-edit").onclick = () => openSubForm(t.id, s);
    li.querySelector(".sub-delete").onclick = () => confirmThen(
      "Delete this subscription? The target stops getting the events only it matched.",
      "Delete subscription", async () => {
        // Deleted elsewhere already: said, and the list no longer shows it.
        try { await del(`/v1/subscriptions/${s.id}`); } catch (err) { if (err.status === 404) await loadCenter(); throw err; }
        await loadCenter();
      }, "#sub-new");
  });
}

// The stream saw an attempt: the open target's pictures follow, at most every 2 s (an attempt
// within 2 s of the last redraw is drawn at the end of those 2 s).
function centerAttempt(a) {
  if (!openTarget || a.target_id !== openTarget || $("#view-webhooks").hidden || healthTimer) return;
  const wait = Math.max(0, lastAttemptRefresh + 2000 - Date.now());
  healthTimer = setTimeout(() => {
    healthTimer = null;
    lastAttemptRefresh = Date.now();
    if (openTarget) loadTargetHealth(openTarget);
  }, wait);
}

// ---- test events ------------------------------------------------------------------------------

async function sendTest(e, t) {
  e.preventDefault();
  const form = e.target, out = $("#t-test-result"), button = form.querySelector("button[type=submit]");
  clearProblems(form);
  const type = form.elements.type.value;
  button.disabled = true;
  out.innerHTML = `<p class="muted">Sending a test event to ${esc(t.name)}…</p>`;
  let r;
  try { r = await post(`/v1/targets/${t.id}/test`, type ? { type } : {}); }
  catch (err) {
    out.innerHTML = missing(err) ? missingNote("Sending a test event", err) : "";
    if (!missing(err)) showProblem(form, err);
    button.disabled = false;
    return;
  }
  button.disabled = false;
  const a = r.attempt || {}, ev = r.event || {};
  const ok = a.status_code >= 200 && a.status_code < 300;
  out.innerHTML = `<div class="test-result ${ok ? "ok" : "failed"}">
    <p><span class="badge test">test</span> <strong>${esc(ev.type)}</strong> <span class="mono muted">${esc(ev.id)}</span></p>
    <p class="test-outcome"><strong class="${ok ? "delivered" : "dead"}">${a.status_code ? `HTTP ${esc(a.status_code)}` : "no answer"}</strong>
      in <span class="latency">${esc(a.duration_ms)} ms</span>${a.error && a.error !== `answered HTTP ${a.status_code}` ? ` — ${esc(a.error)}` : ""}</p>
    ${answerHtml(a, true)}</div>`;
}

// ---- the target form --------------------------------------------------------------------------

function headerRow(name, existing) {
  const row = document.createElement("div");
  row.className = "header-row"; row.dataset.rowOf = "headers";
  if (existing) row.dataset.existing = "1";
  row.innerHTML = `<input class="h-name mono" placeholder="Header-Name" aria-label="header name" autocomplete="off">
    <input class="h-value mono" placeholder="${existing ? "kept (write-only): type to replace" : "value"}" aria-label="header value" autocomplete="off">
    <button type="button" class="secondary h-remove">Remove</button>`;
  const nameInput = row.querySelector(".h-name");
  nameInput.value = name || "";
  nameInput.readOnly = !!existing;
  row.querySelector(".h-remove").setAttribute("aria-label", `Remove header ${name || ""}`.trim());
  row.querySelector(".h-remove").onclick = () => { headersDirty = true; row.remove(); $("#t-header-add").focus(); };
  row.querySelectorAll("input").forEach((i) => { i.oninput = () => { headersDirty = true; }; });
  return row;
}

function openTargetForm(t) {
  editingTarget = t;
  headersDirty = false;
  const form = $("#target-form"), f = form.elements;
  form.reset();
  $("#dlg-target-title").textContent = t ? `Edit target “${visible(t.name)}”` : "New target";
  form.querySelector("button[type=submit]").textContent = t ? "Save target" : "Create target";
  f.name.value = t?.name ?? "";
  f.url.value = t?.url ?? "";
  f.timeout_ms.value = t ? t.timeout_ms : "";
  f.retry_schedule_ms.value = t ? (t.retry_schedule_ms.length ? t.retry_schedule_ms.join(", ") : "none") : "";
  f.ordered.checked = !!t?.ordered;
  f.rate_limit_per_s.value = t?.rate_limit_per_s ?? "";
  f.response_body_bytes.value = t?.response_body_bytes ?? "";
  f.format.value = t?.format ?? "";
  f.enabled.checked = t ? t.enabled : true;
  $("#t-headers").replaceChildren(...Object.keys(t?.headers || {}).map((h) => headerRow(h, true)));
  openDialog($("#dlg-target"));
}

// "none" is no retry; empty leaves the server's default (when creating).
function parseSchedule(text) {
  text = text.trim();
  if (!text) return undefined;
  if (/^none$/i.test(text)) return [];
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (!parts.every((p) => /^\d+$/.test(p))) return null;
  return parts.map(Number);
}

// The body to send, or null after showing what is wrong.
function targetBody(form) {
  const f = form.elements, t = editingTarget, body = {};
  const name = f.name.value.trim(), url = f.url.value.trim();
  if (!name) return fieldError(form, "name", "Give the target a name."), null;
  if (!url) return fieldError(form, "url", "The URL the events are posted to."), null;
  if (!t || name !== t.name) body.name = name;
  if (!t || url !== t.url) body.url = url;
  const timeout = f.timeout_ms.value.trim();
  if (timeout && !/^\d+$/.test(timeout)) return fieldError(form, "timeout_ms", "A whole number of milliseconds, 1–300000."), null;
  if (timeout && (!t || Number(timeout) !== t.timeout_ms)) body.timeout_ms = Number(timeout);
  const schedule = parseSchedule(f.retry_schedule_ms.value);
  if (schedule === null) return fieldError(form, "retry_schedule_ms", "Delays in milliseconds, separated by commas (e.g. 1000, 60000), or none."), null;
  if (schedule === undefined && t) return fieldError(form, "retry_schedule_ms", "Give the delays, or none for a single attempt."), null;
  if (schedule !== undefined && (!t || JSON.stringify(schedule) !== JSON.stringify(t.retry_schedule_ms))) body.retry_schedule_ms = schedule;
  if (!t ? f.ordered.checked : f.ordered.checked !== t.ordered) body.ordered = f.ordered.checked;
  // Empty: no limit (null lifts the one a target has).
  const rate = f.rate_limit_per_s.value.trim();
  if (rate && !/^\d+$/.test(rate)) return fieldError(form, "rate_limit_per_s", "A whole number of attempts a second, 1–10000, or empty for no limit."), null;
  const rateLimit = rate ? Number(rate) : null;
  if (!t ? rateLimit !== null : rateLimit !== (t.rate_limit_per_s ?? null)) body.rate_limit_per_s = rateLimit;
  // Empty: the server's default when creating, unchanged when editing.
  const kept = f.response_body_bytes.value.trim();
  if (kept && !/^\d+$/.test(kept)) return fieldError(form, "response_body_bytes", "A whole number of bytes, 0–4096."), null;
  if (kept && (!t || Number(kept) !== t.response_body_bytes)) body.response_body_bytes = Number(kept);
  const format = f.format.value || null;
  if (!t ? format : format !== (t.format ?? null)) body.format = format;
  if (!t || headersDirty) {
    const headers = {};
    for (const row of $("#t-headers").querySelectorAll(".header-row")) {
      const hn = row.querySelector(".h-name").value.trim(), hv = row.querySelector(".h-value").value;
      if (!hn && !hv) continue;
      if (!hn) return fieldError(form, "headers", "Each header needs a name."), null;
      // A kept header left empty keeps its value: the API's "<redacted>".
      headers[hn] = row.dataset.existing && hv === "" ? "<redacted>" : hv;
    }
    if (t || Object.keys(headers).length) body.headers = headers;
  }
  if (t && f.enabled.checked !== t.enabled) body.enabled = f.enabled.checked;
  return body;
}

async function saveTarget(e) {
  e.preventDefault();
  const form = e.target, t = editingTarget;
  clearProblems(form);
  const body = targetBody(form);
  if (!body) return;
  let saved;
  try {
    if (t) saved = Object.keys(body).length ? await patch(`/v1/targets/${t.id}`, body) : t;
    else saved = await post("/v1/targets", body);
  } catch (err) { showProblem(form, err); return; }
  $("#dlg-target").close();
  if (!t) {
    // A target made disabled: created, then paused, before anything is owed to it.
    if (!form.elements.enabled.checked) { try { await patch(`/v1/targets/${saved.id}`, { enabled: false }); } catch (_) { /* shown as enabled below */ } }
    openTarget = saved.id;
    await showOnce("Target created: its secret", `<p><strong>Copy the secret now: it is shown this once and never again.</strong>
      The receiver checks each delivery's signature with it (<code>X-Maia-Signature</code>, as MAIA signs, or the Standard Webhooks <code>webhook-signature</code>).</p>
      ${onceField("Secret", saved.secret, "secret")}
      <p class="muted small">Lost it? Rotate the secret: the old one stays valid for 24 hours.</p>`);
  }
  await loadCenter();
  showTarget(saved.id);
}

// ---- the subscription builder -----------------------------------------------------------------

function splitList(text) { return text.split(",").map((x) => x.trim()).filter(Boolean); }

// Checkboxes for `values` ({value, count}), those in `chosen` checked.
function picks(box, values, chosen) {
  box.replaceChildren();
  for (const { value, count, known } of values) {
    const label = document.createElement("label");
    label.className = "pick";
    const input = document.createElement("input");
    input.type = "checkbox"; input.value = value; input.checked = chosen.includes(value);
    label.append(input, " ", el("span", value, "mono"));
    if (count) label.append(" ", el("span", `${count} seen`, "count muted"));
    else if (known) label.append(" ", el("span", "MAIA", "count muted"));
    box.appendChild(label);
  }
  if (!values.length) box.appendChild(el("span", "none seen in the recent log", "muted small"));
}

// The values seen in the last 1,000 events, and the known MAIA types; null when this server
// cannot say.
async function loadFacets() {
  try { return await api("/v1/events/facets?last=1000"); }
  catch (err) {
    const note = $("#sub-facets-note");
    note.hidden = false;
    note.textContent = `Values seen in the log are not available on this server (${err.status}: ${err.message}); type them in the fields below.`;
    return null;
  }
}

async function openSubForm(targetId, s) {
  subTarget = targetId; editingSub = s;
  previewMissing = null;
  const form = $("#sub-form");
  form.reset();
  $("#sub-facets-note").hidden = true;
  const t = centerTargets.find((x) => x.id === targetId);
  $("#dlg-sub-title").textContent = `${s ? "Edit" : "New"} subscription for “${visible(t?.name ?? targetId)}”`;
  $("#sub-filters").replaceChildren();
  $("#sub-preview").innerHTML = `<p class="muted">Loading what the log has seen…</p>`;
  openDialog($("#dlg-sub"));
  const facets = await loadFacets();
  const chosenTypes = s?.event_types || [], chosenKanbans = s?.kanban_ids || [], chosenFields = s?.field_names || [];
  const known = facets?.known_types || KNOWN_TYPES;
  const seenTypes = (facets?.types || []).map((x) => ({ value: x.type, count: x.count }));
  const types = [...seenTypes];
  for (const k of known) if (!types.some((x) => x.value === k)) types.push({ value: k, known: true });
  for (const c of chosenTypes) if (!types.some((x) => x.value === c)) types.push({ value: c });
  const withChosen = (seen, chosen) => {
    const list = (seen || []).map((x) => ({ value: x.value, count: x.count }));
    for (const c of chosen) if (!list.some((x) => x.value === c)) list.push({ value: c });
    return list;
  };
  picks($("#sub-types"), types, chosenTypes);
  picks($("#sub-kanbans"), withChosen(facets?.kanban_ids, chosenKanbans), chosenKanbans);
  picks($("#sub-fields"), withChosen(facets?.field_names, chosenFields), chosenFields);
  $("#sub-version").value = s?.version_major ?? "";
  (s?.filters || []).forEach((f) => $("#sub-filters").appendChild(filterRow(f)));
  form.querySelector("button[type=submit]").textContent = s ? "Save subscription" : "Create subscription";
  applyRole($("#dlg-sub"));
  schedulePreview(0);
}

function kindOf(value) {
  if (value === true) return "true";
  if (value === false) return "false";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number" || isRawNumber(value)) return "number";
  return typeof value === "string" ? "string" : "json";
}

// One filter: path, operator, the kind of value and the value.
function filterRow(f) {
  const row = document.createElement("div");
  row.className = "filter-row"; row.dataset.rowOf = "filters";
  row.innerHTML = `<input class="f-path mono" placeholder="/newValue" aria-label="path (JSON Pointer)" list="sub-paths" autocomplete="off">
    <select class="f-op" aria-label="operator">${OPS.map((o) => `<option>${o}</option>`).join("")}</select>
    <select class="f-kind" aria-label="kind of value"></select>
    <input class="f-value mono" aria-label="value" autocomplete="off">
    <button type="button" class="secondary f-remove">Remove</button>`;
  const [path, op, kind, value] = ["f-path", "f-op", "f-kind", "f-value"].map((c) => row.querySelector("." + c));
  path.value = f?.path ?? "";
  op.value = f?.op ?? "eq";
  const syncKinds = (want) => {
    const kinds = OP_KINDS[op.value];
    kind.innerHTML = kinds.map((k) => `<option value="${k}">${KIND_LABEL[k]}</option>`).join("");
    kind.value = kinds.includes(want) ? want : kinds[0];
    value.hidden = kind.value === "true" || kind.value === "false";
    value.placeholder = { array: '["Won", "Lost"]', number: "10000", json: 'null, {"a": 1}' }[kind.value] || "text";
  };
  syncKinds(f ? kindOf(f.value) : "string");
  // (JSON.stringify writes a number read exactly as it was written.)
  if (f && !value.hidden) value.value = typeof f.value === "string" ? f.value : JSON.stringify(f.value);
  // A number typed under eq stays a number under gt (and the others that take one).
  op.onchange = () => {
    const number = !value.hidden && NUMBER_TEXT.test(value.value.trim()) && OP_KINDS[op.value].includes("number");
    syncKinds(number ? "number" : kind.value);
    schedulePreview();
  };
  kind.onchange = () => { syncKinds(kind.value); schedulePreview(); };
  row.querySelector(".f-remove").onclick = () => { row.remove(); $("#sub-filter-add").focus(); schedulePreview(); };
  return row;
}

// The subscription the form describes: {body} or {error: [field, detail]}.
function subBody() {
  const checked = (box) => [...$(box).querySelectorAll("input:checked")].map((i) => i.value);
  const merge = (a, b) => [...new Set([...a, ...b])];
  const body = {
    event_types: merge(checked("#sub-types"), splitList($("#sub-types-extra").value)),
    kanban_ids: merge(checked("#sub-kanbans"), splitList($("#sub-kanbans-extra").value)),
    field_names: merge(checked("#sub-fields"), splitList($("#sub-fields-extra").value)),
    filters: [],
    version_major: null,
  };
  const version = $("#sub-version").value.trim();
  if (version) {
    if (!/^\d+$/.test(version)) return { error: ["version_major", "A whole number (the 1 of \"1.1\"), or empty."] };
    body.version_major = Number(version);
  }
  const rows = [...$("#sub-filters").querySelectorAll(".filter-row")];
  for (const [i, row] of rows.entries()) {
    const path = row.querySelector(".f-path").value.trim(), op = row.querySelector(".f-op").value;
    const kind = row.querySelector(".f-kind").value, text = row.querySelector(".f-value").value;
    const bad = (why) => ({ error: [`filters[${i}]`, `filter ${i + 1}: ${why}`] });
    if (!path.startsWith("/")) return bad("the path is a JSON Pointer starting with /, like /newValue or /Data/New/Revenue");
    let value;
    if (kind === "true" || kind === "false") value = kind === "true";
    else if (kind === "number") {
      if (!NUMBER_TEXT.test(text.trim())) return bad("the value is not a number");
      value = exactNumber(text);
    } else if (kind === "array") {
      try { value = parseExact(text); } catch (_) { value = null; }
      if (!Array.isArray(value)) return bad('the value is not a JSON array, like ["Won", "Lost"]');
    } else if (kind === "json") {
      try { value = parseExact(text); } catch (_) { return bad('the value is not JSON, like null or {"a": 1}'); }
    } else value = text;
    body.filters.push({ path, op, value });
  }
  return { body };
}

function schedulePreview(delay = 300) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(runPreview, delay);
}

// What the subscription being built matches among the last 100 events.
async function runPreview() {
  const out = $("#sub-preview");
  if (!$("#dlg-sub").open) return;
  if (previewMissing) return;
  const { body, error } = subBody();
  if (error) { out.innerHTML = `<p class="muted">${esc(error[1])}: fix it to see the preview.</p>`; return; }
  const run = ++previewRun;
  let r;
  try { r = await post("/v1/subscriptions/preview?last=100", { ...body, target_id: subTarget }); }
  catch (err) {
    if (run !== previewRun) return;
    if (missing(err)) { previewMissing = err; out.innerHTML = missingNote("The preview", err); return; }
    out.innerHTML = `<p class="error preview-error">${esc(err.message)}</p>`;
    return;
  }
  if (run !== previewRun) return;
  const rows = r.events.map((e) => `<tr class="preview-event" data-id="${esc(e.id)}"><td>${esc(e.seq)}</td><td>${esc(e.type)}</td>
    <td class="mono">${esc(e.record_id ?? "")}</td><td>${esc(when(e.received_at))}</td></tr>`).join("");
  out.innerHTML = `<p class="preview-count"><strong>${esc(r.matched)}</strong> of the last ${esc(r.scanned)} events match.</p>
    ${rows ? `<table><thead><tr><th>seq</th><th>type</th><th>record</th><th>received</th></tr></thead><tbody>${rows}</tbody></table>` : `<p class="muted">None of them.</p>`}`;
}

// Whether `body` (the form's) asks for what subscription `s` is: the same lists (in any order),
// version and filters (in order, values written the same).
function sameSub(s, body) {
  const set = (xs) => JSON.stringify([...(xs || [])].sort());
  const filters = (fs) => JSON.stringify((fs || []).map((f) => [f.path, f.op, f.value]));
  return ["event_types", "kanban_ids", "field_names"].every((k) => set(s[k]) === set(body[k]))
    && (s.version_major ?? null) === body.version_major && filters(s.filters) === filters(body.filters);
}

async function saveSub(e) {
  e.preventDefault();
  const form = e.target;
  clearProblems(form);
  const { body, error } = subBody();
  if (error) { fieldError(form, ...error); return; }
  // Nothing changed: nothing to send (a PATCH would be recorded in the audit trail).
  if (editingSub && sameSub(editingSub, body)) { $("#dlg-sub").close(); $("#target-pane #sub-new")?.focus(); return; }
  try {
    if (editingSub) await patch(`/v1/subscriptions/${editingSub.id}`, body);
    else await post("/v1/subscriptions", { target_id: subTarget, ...body });
  } catch (err) {
    if (editingSub && missing(err)) err.problem = { detail: `Editing a subscription is not available on this server (${err.status}); delete it and add a new one.` };
    showProblem(form, err);
    return;
  }
  $("#dlg-sub").close();
  await loadCenter();
  $("#target-pane #sub-new")?.focus();
}

// ---- wiring -----------------------------------------------------------------------------------

(function wireCenter() {
  const paths = document.createElement("datalist");
  paths.id = "sub-paths";
  paths.innerHTML = KNOWN_PATHS.map((p) => `<option value="${esc(p)}"></option>`).join("");
  document.body.appendChild(paths);
  $("#t-new").onclick = () => openTargetForm(null);
  $("#target-form").onsubmit = saveTarget;
  $("#t-header-add").onclick = () => {
    headersDirty = true;
    const row = headerRow("", false);
    $("#t-headers").appendChild(row);
    row.querySelector("input").focus();
  };
  $("#sub-form").onsubmit = saveSub;
  $("#sub-form").addEventListener("input", () => schedulePreview());
  $("#sub-form").addEventListener("change", () => schedulePreview());
  $("#sub-filter-add").onclick = () => {
    const row = filterRow(null);
    $("#sub-filters").appendChild(row);
    row.querySelector("input").focus();
  };
  $("#dlg-sub").addEventListener("close", () => { clearTimeout(previewTimer); previewRun++; });
})();
