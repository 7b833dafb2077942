//! The console's Keys view (admins only): a key made, its secret shown once and working; a
//! name already taken refused beside its field; a key rotated (the old secret stops, the new one
//! works), the console's own key rotated without signing it out; a key revoked; and a server
//! that does not answer said in words.

use super::*;

/// `GET /v1/me` with `key`: its role, or the status it got.
fn role_of(server: &Server, key: &str) -> Result<String, u16> {
    let bearer = format!("Bearer {key}");
    let r = http("GET", &server.url("/v1/me"), &[("Authorization", bearer.as_str())], None);
    if r.status == 200 {
        Ok(r.json()["role"].as_str().expect("role").to_owned())
    } else {
        Err(r.status)
    }
}

/// Confirms the open confirmation dialog, and answers the secret then shown once.
fn confirmed_secret(browser: &Driver) -> String {
    browser.wait("#dlg-confirm[open]");
    browser.enter("#confirm-yes");
    let key = browser.property(&browser.wait("#dlg-once[open] input.once"), "value");
    browser.clicks("#once-done");
    key
}

#[test]
fn the_console_makes_rotates_and_revokes_api_keys() {
    let mut server = Server::start();
    // Signed in with an admin key of its own (not the configuration's), to rotate it.
    let r = server.admin("POST", "/v1/keys", Some(&json!({"name": "second admin", "role": "admin"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let (mine, mine_id) =
        (r.json()["key"].as_str().expect("key").to_owned(), r.json()["id"].as_str().expect("id").to_owned());
    let browser = signed_in_as(&server, &mine);
    browser.clicks("#tabs button[data-view='keys']");
    browser.wait_text(&format!("#keys tr[data-id='{mine_id}']"), "this console's key", |t| t.contains("you"));
    browser
        .wait_text("#keys", "the configuration's keys", |t| t.contains("admin_token") && t.contains("configuration"));

    // A new operator key: shown once, and it works.
    browser.clicks("#k-new");
    browser.set("#key-form input[name=name]", "on-call");
    browser.choose("#key-form select[name=role]", "operator");
    browser.enter("#key-form input[name=name]");
    let first = browser.property(&browser.wait("#dlg-once[open] input.once"), "value");
    browser.clicks("#once-done");
    assert_eq!(role_of(&server, &first), Ok("operator".to_owned()));
    let row = browser.wait_text("#keys", "the new key listed", |t| t.contains("on-call"));
    assert!(!row.contains(&first), "the secret is not in the list");
    let listed = server.admin("GET", "/v1/keys", None).json();
    let id = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "on-call")
        .and_then(|k| k["id"].as_str())
        .expect("on-call listed")
        .to_owned();

    // The same name again: refused, in the API's words, beside the name (it was at the form's
    // foot).
    browser.clicks("#k-new");
    browser.set("#key-form input[name=name]", "on-call");
    browser.enter("#key-form input[name=name]");
    browser.wait_text("#key-form .field-error[data-for='name']", "the name's refusal", |t| {
        t.starts_with("409") && t.contains("on-call")
    });
    assert_eq!(browser.text(&browser.wait("#key-form .form-error")), "", "not at the form's foot");
    assert_eq!(browser.attr(&browser.wait("#key-form input[name=name]"), "aria-invalid"), "true");
    browser.clicks("#dlg-key .close");

    // Rotated: the old secret stops, the new one works.
    browser.clicks(&format!("#keys tr[data-id='{id}'] .k-rotate"));
    let second = confirmed_secret(&browser);
    assert_ne!(second, first);
    assert_eq!((role_of(&server, &first), role_of(&server, &second)), (Err(401), Ok("operator".to_owned())));

    // The console's own key rotated: the console goes on with the new secret.
    browser.clicks(&format!("#keys tr[data-id='{mine_id}'] .k-rotate"));
    let renewed = confirmed_secret(&browser);
    assert_eq!((role_of(&server, &mine), role_of(&server, &renewed)), (Err(401), Ok("admin".to_owned())));
    assert_eq!(browser.execute("return sessionStorage.getItem('crmhook-token')"), json!(renewed));

    // Revoked, with the console's renewed key: listed as revoked, its secret refused.
    browser.clicks(&format!("#keys tr[data-id='{id}'] .k-revoke"));
    browser.wait("#dlg-confirm[open]");
    browser.enter("#confirm-yes");
    browser.wait_text(&format!("#keys tr[data-id='{id}']"), "the key revoked", |t| t.contains("revoked"));
    assert_eq!(role_of(&server, &second), Err(401));
    assert!(browser.find(&format!("#keys tr[data-id='{id}'] .k-rotate")).is_none(), "no button on a revoked key");
    let status = browser.text(&browser.wait("#k-status"));
    assert!(status.contains("1 revoked"), "{status}");
    browser.shot("console-keys.png");

    // The server gone: the page says so in words, not the browser's "Failed to fetch".
    assert!(server.stop().success());
    browser.clicks("#tabs button[data-view='keys']");
    browser.wait_text("#k-status", "the server's silence", |t| {
        t.starts_with("Could not read the keys: the server did not answer")
    });
}

/// The audit trail's `auth.failed` entries.
fn failed_authentications(server: &Server) -> usize {
    let page = server.admin("GET", "/v1/audit?limit=1000", None).json();
    page["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "auth.failed").count()
}

/// A tab signed in with a key that is then revoked goes back to the sign-in form, saying why,
/// and stops asking: it used to retry the stream with the dead key every 2 s for as long as it
/// was open, each try a failed authentication (audited), until its address was limited and
/// every client behind it, the CRMs' posts included, got 429. A sign-out button signs out.
#[test]
fn a_tab_whose_key_is_revoked_signs_out_and_stops_asking() {
    let server = Server::start();
    let r = server.admin("POST", "/v1/keys", Some(&json!({"name": "on-call", "role": "operator"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let (key, id) =
        (r.json()["key"].as_str().expect("key").to_owned(), r.json()["id"].as_str().expect("id").to_owned());
    let browser = signed_in_as(&server, &key);
    let r = server.admin("DELETE", &format!("/v1/keys/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    // The stream ends before its next frame: an event brings one at once.
    server.post_ok(&maia("ai_pause", json!({})));
    browser.wait_text("#login-error", "the reason to sign in again", |t| t.contains("no longer works"));
    assert!(browser.find("#login:not([hidden])").is_some(), "the sign-in form is back");
    assert_eq!(browser.execute("return sessionStorage.getItem('crmhook-token')"), Value::Null);
    let failed = failed_authentications(&server);
    assert!(failed <= 1, "{failed} failed authentications: the tab retried its dead key");
    // No event can show a request that is not made: a quiet time of three old retry periods.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(failed_authentications(&server), failed, "the signed-out tab kept asking");

    // Signed in again (the admin token), then out with the button.
    browser.wait("#token");
    browser.set("#token", ADMIN);
    browser.click(&browser.wait("#signin"));
    browser.wait_text("#conn", "the live stream", |t| t == "live");
    browser.clicks("#signout");
    browser.wait_text("#conn", "signed out", |t| t == "signed out");
    assert_eq!(browser.execute("return sessionStorage.getItem('crmhook-token')"), Value::Null);
}
