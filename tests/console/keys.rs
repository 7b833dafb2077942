//! The console's Keys view (admins only): a key made, its secret shown once and working; a
//! name already taken refused beside the form; a key rotated (the old secret stops, the new one
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

    // The same name again: refused, in the API's words, at the form's foot.
    browser.clicks("#k-new");
    browser.set("#key-form input[name=name]", "on-call");
    browser.enter("#key-form input[name=name]");
    browser.wait_text("#key-form .form-error", "the name's refusal", |t| t.starts_with("409") && t.contains("on-call"));
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
