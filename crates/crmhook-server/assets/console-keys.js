// The console's API keys (admins only), served as /console-keys.js after console.js, whose
// helpers (`api`, `post`, `del`, dialogs, `showOnce`, `confirmThen`, errors beside their field)
// it uses: the list of keys, a new key, and a key rotated or revoked. A secret is shown once,
// in the shown-once dialog, and is gone from the page when it closes.
"use strict";

let keysLoads = 0; // the latest load of the list: an earlier one's answer is dropped

function keyState(k) {
  if (k.revoked_at) return `<span class="dead">revoked ${esc(when(k.revoked_at))}</span>`;
  return `<span class="delivered">active</span>${k.rotated_at ? ` <span class="muted small">rotated ${esc(when(k.rotated_at))}</span>` : ""}`;
}

function keyRow(k) {
  const tr = document.createElement("tr");
  tr.className = "key"; tr.dataset.id = k.id;
  const self = me && me.id === k.id;
  tr.innerHTML = `<td>${esc(k.name)}${self ? ` <span class="badge" title="the key this console is signed in with">you</span>` : ""}</td>
    <td>${esc(k.role)}${k.bootstrap ? ` <span class="badge" title="set by the configuration (${esc(k.bootstrap)})">configuration</span>` : ""}</td>
    <td class="mono">${esc(k.id)}</td><td>${esc(when(k.created_at))}</td><td>${keyState(k)}</td>
    <td>${k.revoked_at ? "" : `<div class="actions"><button type="button" class="secondary k-rotate">Rotate</button><button type="button" class="danger k-revoke">Revoke</button></div>`}</td>`;
  // Each cell names its column: a narrow window shows a row as a card of labelled lines.
  ["name", "role", "id", "created", "state", ""].forEach((label, i) => { tr.children[i].dataset.label = label; });
  tr.querySelector(".k-rotate")?.addEventListener("click", () => rotateKey(k));
  tr.querySelector(".k-revoke")?.addEventListener("click", () => revokeKey(k));
  return tr;
}

async function loadKeys() {
  const load = ++keysLoads;
  const page = await latestPage("/v1/keys", () => load === keysLoads, "#k-status", "Could not read the keys: ");
  if (!page) return;
  // Active keys first, each group oldest first (as the API lists them).
  const keys = [...page.keys.filter((k) => !k.revoked_at), ...page.keys.filter((k) => k.revoked_at)];
  $("#keys").replaceChildren(...keys.map(keyRow));
  const active = page.keys.filter((k) => !k.revoked_at).length;
  $("#k-status").textContent = `${active} active of at most 100${page.keys.length > active ? `, ${page.keys.length - active} revoked` : ""}.`;
}

// What rotating or revoking a key set by the configuration means for the next start.
function bootstrapWarning(k) {
  return k.bootstrap ? ` It is the configuration's ${k.bootstrap}: put the new token in the configuration (or remove the setting) before the next restart, or the server refuses to start with the old one.` : "";
}

function rotateKey(k) {
  const self = me && me.id === k.id;
  confirmThen(`Rotate ${k.name} (${k.id})? Its current secret stops working at once; the new one is shown once.${bootstrapWarning(k)}${self ? " This console goes on with the new one." : ""}`,
    "Rotate", async () => {
      const r = await post(`/v1/keys/${k.id}/rotate`);
      if (self) { token = r.key; sessionStorage.setItem("crmhook-token", token); }
      await loadKeys();
      await showOnce(`New secret of ${r.name}`, `<p>Copy it now: it is not shown again.</p>${onceField("Key", r.key)}`);
    }, "#k-new");
}

function revokeKey(k) {
  const self = me && me.id === k.id;
  confirmThen(`Revoke ${k.name} (${k.id}) for good? Its secret stops working at once.${bootstrapWarning(k)}${self ? " This console is signed in with it: you will be signed out." : ""}`,
    "Revoke", async () => {
      await del(`/v1/keys/${k.id}`);
      if (self) { sessionStorage.removeItem("crmhook-token"); location.reload(); return; }
      await loadKeys();
    }, "#k-new");
}

$("#k-new").onclick = () => { $("#key-form").reset(); openDialog($("#dlg-key")); };
$("#key-form").onsubmit = async (e) => {
  e.preventDefault();
  const form = e.target, f = form.elements;
  const body = { name: f.name.value.trim(), role: f.role.value };
  if (!body.name) { fieldError(form, "name", "Give the key a name (1–100 characters)."); return; }
  let r;
  try { r = await post("/v1/keys", body); } catch (err) {
    // 409: the name is taken (the only conflict a new key has): said beside the name.
    if (err.status === 409 && !err.problem?.field) err.problem = { ...err.problem, field: "name" };
    showProblem(form, err);
    return;
  }
  $("#dlg-key").close();
  await loadKeys();
  await showOnce(`New ${r.role} key ${r.name}`, `<p>Copy it now: it is not shown again. The server keeps only its hash.</p>${onceField("Key", r.key)}`);
  $("#k-new").focus();
};
