// The console's sources and quarantine, served as /console-sources.js after console.js, whose
// helpers (`api`, `post`, `patch`, `del`, dialogs, `showOnce`, `confirmThen`, errors beside
// their field, `sources`, `showView`, `showEvent`) it uses: the sources with the steps to paste
// into each CRM, a new source, its secret or key rotated; the quarantine's pieces, each shown
// with why it was refused, and retried.
"use strict";

let shownRejected = null; // id of the rejected piece in its detail pane
let rejectedAfter = null; // next_after of the last page of rejected pieces

async function loadSources() {
  const list = (await api("/v1/sources")).sources;
  sources = new Map(list.map((s) => [s.id, s]));
  for (const select of [$("#q-source"), $("#r-source")]) {
    const keep = select.value;
    select.innerHTML = `<option value="">any source</option>` +
      list.map((s) => `<option value="${esc(s.id)}">${esc(s.name)} (${esc(s.kind)})</option>`).join("");
    select.value = sources.has(keep) ? keep : "";
  }
  // A row whose steps are open, or whose secret is being typed, is kept open.
  const open = new Set([...document.querySelectorAll("#sources details.steps[open]")].map((d) => d.closest("tr").dataset.id));
  $("#sources").innerHTML = list.map((s) => sourceRow(s, open.has(s.id))).join("")
    || `<tr><td colspan="5" class="muted">No sources yet. A source is one CRM posting to crmhook: make one with “New source”.</td></tr>`;
  document.querySelectorAll("#sources .copy").forEach(copyButton);
  document.querySelectorAll("#sources tr[data-id]").forEach(wireSource);
  applyRole($("#sources"));
  // Rows shown before a source was known show its id; now they can show its name.
  document.querySelectorAll("td[data-source]").forEach((td) => { td.textContent = visible(sourceName(td.dataset.source)); });
}

function ingestUrl(s) { return s.ingest_url || `${location.origin}/in/${s.id}`; }

// The steps to paste into the CRM, under the source's ingest URL.
function connectSteps(s) {
  const url = esc(ingestUrl(s));
  if (s.kind === "maia") {
    return `<ol>
      <li>In MAIA, open <strong>Settings → Webhooks → Add Webhook</strong>.</li>
      <li><strong>Name</strong>: anything, e.g. <code>crmhook</code>. <strong>URL</strong>: <code class="wrap">${url}</code>.
        <strong>Triggers</strong>: the events to send, any of <code>crm_field_update</code>, <code>crm_record_created</code>, <code>crm_record_deleted</code>, <code>ai_pause</code>.</li>
      <li>Save. MAIA shows the webhook's <strong>secret once</strong>: paste it here. Until it is set, MAIA's posts are refused (401) and nothing is stored.
        <form class="s-secret inline-form" novalidate>
          <label>Secret MAIA showed <input name="maia_secret" data-field="maia_secret" type="password" autocomplete="off"></label>
          <button type="submit" data-change>${s.maia_secret_set ? "Replace secret" : "Save secret"}</button>
          <div class="field-error" data-for="maia_secret"></div><div class="form-error error" role="alert"></div>
        </form></li>
    </ol>`;
  }
  return `<ol>
      <li>Maximizer's target URL is the ingest URL with the source's key: <code class="wrap">${url}?key=mxk_…</code>. The key was shown once, when the source was made;
        if you do not have it, <strong>Rotate key</strong> (the old key stops working at once).</li>
      <li>Register that URL with Maximizer's Webhooks API: a webhook subscription naming the target URL, the entity (e.g. <code>Opportunity</code>) and the operations (<code>Insert</code>, <code>Update</code>, <code>Delete</code>). Take the exact field names from Maximizer's Webhooks API reference.</li>
      <li>Check it: a POST of <code>[]</code> to the URL answers 200 and stores nothing.</li>
    </ol>`;
}

function sourceRow(s, open) {
  return `<tr data-id="${esc(s.id)}"><td><strong>${esc(s.name)}</strong><br><span class="mono muted">${esc(s.id)}</span></td>
      <td>${esc(s.kind)}${s.kind === "maia" ? `<br><span class="secret-state ${s.maia_secret_set ? "muted" : "dead"}">${s.maia_secret_set ? "secret set" : "no maia_secret yet"}</span>` : ""}</td>
      <td class="state ${s.enabled ? "delivered" : "dead"}">${s.enabled ? "enabled" : "disabled"}</td>
      <td><div class="copy-row"><input class="url mono" readonly value="${esc(ingestUrl(s))}" aria-label="ingest URL of ${esc(s.name)}"><button type="button" class="copy secondary">Copy</button></div>
        <details class="steps"${open ? " open" : ""}><summary>How to connect ${s.kind === "maia" ? "MAIA" : "Maximizer"}</summary>${connectSteps(s)}</details>
        <div class="row-error error" role="alert"></div></td>
      <td class="actions"><button type="button" class="secondary s-rename" data-change>Rename</button>
        <button type="button" class="secondary s-toggle" data-change>${s.enabled ? "Disable" : "Enable"}</button>
        ${s.kind === "maximizer" ? `<button type="button" class="secondary s-rotate" data-change>Rotate key</button>` : ""}
        <button type="button" class="danger s-delete" data-change>Delete</button></td></tr>`;
}

// A source's buttons. Errors show in the row (a 403 for an operator key among them).
function wireSource(tr) {
  const s = sources.get(tr.dataset.id);
  const rowError = (err) => { tr.querySelector(".row-error").textContent = (err.status === 403 ? "Refused (403): " : "") + err.message; };
  tr.querySelector(".s-toggle").onclick = async () => {
    try { await patch(`/v1/sources/${s.id}`, { enabled: !s.enabled }); await loadSources(); } catch (err) { rowError(err); }
  };
  tr.querySelector(".s-rename").onclick = () => renameThen(`Rename the source “${s.name}”`, s.name,
    async (name) => { await patch(`/v1/sources/${s.id}`, { name }); await loadSources(); },
    `#sources tr[data-id="${s.id}"] .s-rename`);
  tr.querySelector(".s-delete").onclick = () => confirmThen(
    `Delete the source “${s.name}”? Its ingest URL stops working at once (401); the events it posted stay in the log.`,
    "Delete source", async () => { await del(`/v1/sources/${s.id}`); await loadSources(); }, "#s-new");
  const rotate = tr.querySelector(".s-rotate");
  if (rotate) rotate.onclick = async () => {
    let r;
    try { r = await post(`/v1/sources/${s.id}/rotate-key`); } catch (err) { rowError(err); return; }
    await showOnce("The source's new key", maximizerKeyHtml(r, "The old key stopped working: put this URL in Maximizer now."));
  };
  const form = tr.querySelector("form.s-secret");
  if (form) form.onsubmit = async (e) => {
    e.preventDefault();
    const secret = form.elements.maia_secret.value;
    if (!secret.trim()) { fieldError(form, "maia_secret", "Paste the secret MAIA showed when the webhook was added."); return; }
    try { await patch(`/v1/sources/${s.id}`, { maia_secret: secret }); } catch (err) { showProblem(form, err); return; }
    form.elements.maia_secret.value = "";
    await loadSources();
  };
}

// A Maximizer key, shown once, with the URL to give Maximizer.
function maximizerKeyHtml(s, note) {
  const full = `${ingestUrl(s)}?key=${encodeURIComponent(s.key)}`;
  return `<p><strong>Copy it now: crmhook keeps only a hash of the key and will never show it again.</strong> ${esc(note)}</p>
    ${onceField("Maximizer's target URL (ingest URL and key)", full, "full-url")}
    ${onceField("The key alone (for Authorization: Bearer)", s.key, "key")}
    <p class="muted small">Register the URL with Maximizer's Webhooks API: see “How to connect Maximizer” in the source's row.</p>`;
}

// "New source": name, kind, and for MAIA the secret if it is already at hand.
function newSource() {
  const form = $("#source-form");
  form.reset();
  syncSourceKind();
  openDialog($("#dlg-source"));
}
function syncSourceKind() {
  const maia = $("#source-form").elements.kind.value === "maia";
  document.querySelectorAll("#source-form .maia-only").forEach((e) => { e.hidden = !maia; });
}
async function createSource(e) {
  e.preventDefault();
  const form = e.target, f = form.elements;
  const body = { name: f.name.value.trim(), kind: f.kind.value };
  if (!body.name) { fieldError(form, "name", "Give the source a name (1–200 characters)."); return; }
  if (body.kind === "maia" && f.maia_secret.value) body.maia_secret = f.maia_secret.value;
  let s;
  try { s = await post("/v1/sources", body); } catch (err) { showProblem(form, err); return; }
  $("#dlg-source").close();
  if (s.kind === "maximizer" && s.key) {
    await showOnce("Source created: its key", maximizerKeyHtml(s, ""));
  }
  await loadSources();
  // The new source's steps are opened for the next move in the CRM.
  const row = document.querySelector(`#sources tr[data-id="${CSS.escape(s.id)}"]`);
  const steps = row?.querySelector("details.steps");
  if (steps) { steps.open = true; steps.querySelector("summary").focus(); }
}

function rejectRow(r) {
  const tr = document.createElement("tr");
  tr.className = "reject"; tr.dataset.id = r.id;
  tr.classList.toggle("selected", r.id === shownRejected);
  tr.innerHTML = `<td>${esc(when(r.received_at))}</td><td data-source="${esc(r.source_id)}" title="${esc(r.source_id)}">${esc(sourceName(r.source_id))}</td>
    <td>${r.index == null ? `<span class="muted" title="the whole body">–</span>` : esc(r.index)}</td>
    <td class="reason">${esc(r.reason)}${r.retried ? ` <span class="delivered">(retried)</span>` : ""}</td>`;
  tr.onclick = () => showRejected(r.id);
  keyboardRow(tr);
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

$("#s-new").onclick = newSource;
$("#source-form").onsubmit = createSource;
document.querySelectorAll("#source-form input[name=kind]").forEach((r) => { r.onchange = syncSourceKind; });
$("#r-search").onsubmit = (e) => { e.preventDefault(); loadRejected(false); };
$("#r-source").onchange = () => loadRejected(false);
$("#r-more").onclick = () => loadRejected(true);
