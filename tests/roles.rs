//! Named API keys with roles: an operator key is refused on every admin-only route and served
//! on its own (the routes and their roles are read from `docs/openapi.json`, so a new route is
//! covered as soon as it is documented); an ingest key only posts events; keys are created,
//! listed, rotated and revoked by the API and by `crmhook keys`, audited under their names, and
//! kept only as hashes; a bootstrap token rotated away never comes back, even when the
//! configuration still holds it; a stream ends with its key.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn ok(r: Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    r.json()
}

fn create_key(server: &Server, name: &str, role: &str) -> (String, String) {
    let k = ok(server.admin("POST", "/v1/keys", Some(&json!({"name": name, "role": role}))), 201);
    (k["id"].as_str().expect("id").to_owned(), k["key"].as_str().expect("key").to_owned())
}

/// Every documented operation with the roles its `security` names.
fn operations() -> Vec<(String, String, BTreeSet<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("openapi.json")).expect("JSON");
    let mut ops = Vec::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            let roles = op["security"]
                .as_array()
                .map(|s| s.iter().filter_map(|r| r.as_object()?.keys().next().cloned()).collect())
                .unwrap_or_default();
            ops.push((method.to_uppercase(), path.clone(), roles));
        }
    }
    ops
}

/// Answers a request with `token`, the stream by its status line only.
fn call(server: &Server, method: &str, path: &str, token: &str) -> (u16, String) {
    if path == "/v1/stream" {
        return match ureq::get(&server.url(path)).set("Authorization", &format!("Bearer {token}")).call() {
            Ok(r) => (r.status(), String::new()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("stream: {e}"),
        };
    }
    let body = (method == "POST" || method == "PATCH").then(|| json!({}));
    let r = server.request(method, path, Some(token), body.as_ref());
    (r.status, r.text)
}

#[test]
fn each_role_is_served_on_its_routes_and_refused_on_every_other() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/r?token=receiver-credential-7"), Some(json!({})), json!({}));
    let sub = ok(server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None), 200)["subscriptions"][0]
        ["id"]
        .as_str()
        .expect("sub")
        .to_owned();
    let source = ok(server.admin("POST", "/v1/sources", Some(&json!({"name": "mx", "kind": "maximizer"}))), 201);
    let src = source["id"].as_str().expect("src").to_owned();
    let event = server.post_ok(&maia("crm_record_created", json!({})));
    let eid = event["events"][0]["id"].as_str().expect("event id").to_owned();
    rcv.wait_count("/r", 1, Duration::from_secs(10));
    let (_, operator) = create_key(&server, "night shift", "operator");
    let (_, ingest) = create_key(&server, "crm", "ingest");
    let keys_before = ok(server.admin("GET", "/v1/keys", None), 200);
    let (victim, _) = create_key(&server, "victim", "operator");
    let concrete = |p: &str| {
        p.replace("/v1/events/{id}", &format!("/v1/events/{eid}"))
            .replace("/v1/targets/{id}", &format!("/v1/targets/{tid}"))
            .replace("/v1/subscriptions/{id}", &format!("/v1/subscriptions/{sub}"))
            .replace("/v1/sources/{id}", &format!("/v1/sources/{src}"))
            .replace("/v1/rejected/{id}", "/v1/rejected/rej_00000000000000000000000000")
            .replace("/v1/keys/{id}", &format!("/v1/keys/{victim}"))
    };
    let (mut admin_only, mut for_operators) = (0, 0);
    for (method, path, roles) in operations() {
        if roles.is_empty() || path.starts_with("/in/") {
            continue; // open routes, and the sources' own authentication
        }
        let url = concrete(&path);
        let (status, text) = call(&server, &method, &url, &operator);
        if roles.contains("operator") {
            for_operators += 1;
            assert!(status != 401 && status != 403, "operator key on {method} {path}: {status} {text}");
        } else {
            admin_only += roles.contains("admin") as usize;
            assert_eq!(status, 403, "operator key on {method} {path}: {text}");
            assert!(text.contains("operator key"), "{method} {path}: {text}");
        }
        let (status, text) = call(&server, &method, &url, &ingest);
        if roles.contains("ingest") {
            assert!(status != 401 && status != 403, "ingest key on {method} {path}: {status} {text}");
        } else {
            assert_eq!(status, 403, "ingest key on {method} {path}: {text}");
        }
    }
    assert!(admin_only >= 16 && for_operators >= 15, "{admin_only} admin-only, {for_operators} operator routes");
    // Nothing an operator or ingest key asked for changed anything.
    let target = ok(server.admin("GET", &format!("/v1/targets/{tid}"), None), 200);
    assert!(target["enabled"].as_bool().expect("enabled"));
    assert_eq!(ok(server.admin("GET", &format!("/v1/keys/{victim}"), None), 200)["revoked_at"], Value::Null);
    let keys_after = ok(server.admin("GET", "/v1/keys", None), 200);
    assert_eq!(keys_after["keys"].as_array().map(Vec::len), keys_before["keys"].as_array().map(|k| k.len() + 1));
    // An operator sees the target, but not the credential in its URL; an admin sees it whole.
    assert!(target["url"].as_str().expect("url").contains("receiver-credential-7"));
    let seen = ok(server.request("GET", &format!("/v1/targets/{tid}"), Some(&operator), None), 200);
    assert!(!seen.to_string().contains("receiver-credential-7"), "{seen}");
    let listed = ok(server.request("GET", "/v1/targets", Some(&operator), None), 200);
    assert!(!listed.to_string().contains("receiver-credential-7"), "{listed}");
    // What an operator may do, it does: a redelivery reaches the receiver again.
    let r = server.request("POST", &format!("/v1/events/{eid}/redeliver"), Some(&operator), Some(&json!({})));
    assert_eq!(r.status, 202, "{}", r.text);
    rcv.wait_count("/r", 3, Duration::from_secs(10)); // the first delivery, the `{}` above, this one
                                                      // The ingest key posts.
    let r = server.request("POST", "/v1/events", Some(&ingest), Some(&maia("crm_record_created", json!({}))));
    assert_eq!(r.status, 202, "{}", r.text);
    // Each key says who it is.
    let me = ok(server.request("GET", "/v1/me", Some(&operator), None), 200);
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("night shift"), Some("operator")));
}

#[test]
fn keys_are_managed_by_api_and_cli_audited_by_name_and_kept_only_as_hashes() {
    let server = Server::start();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
            .args(["--url", &server.base, "--token", ADMIN])
            .args(args)
            .env_remove("CRMHOOK_ADMIN_TOKEN")
            .output()
            .expect("crmhook runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Created by the CLI, the secret printed once.
    let (success, out, err) = cli(&["keys", "create", "--name", "deploy bot", "--role", "admin"]);
    assert!(success, "{err}");
    let secret = out.lines().find_map(|l| l.strip_prefix("key: ")).expect("the secret is printed").to_owned();
    assert!(secret.starts_with("adm_"), "{out}");
    let id = out.split_whitespace().next().expect("id").to_owned();
    // It works, and what it changes is audited under its name.
    let target = server.request(
        "POST",
        "/v1/targets",
        Some(&secret),
        Some(&json!({"name": "t", "url": "http://127.0.0.1:9/x"})),
    );
    assert_eq!(target.status, 201, "{}", target.text);
    let audit = ok(server.admin("GET", "/v1/audit?limit=1000", None), 200);
    let entries = audit["entries"].as_array().expect("entries").clone();
    let by_bot = entries.iter().find(|e| e["action"] == "target.create").expect("target.create audited");
    assert_eq!(by_bot["who"], format!("deploy bot ({id})"));
    // Rotated by the CLI into a 0600 file: the old secret stops at once.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bot.key");
    let (success, out, err) = cli(&["keys", "rotate", &id, "--output", file.to_str().expect("path")]);
    assert!(success, "{err}");
    assert!(!out.contains("adm_"), "the secret is not printed with --output: {out}");
    let rotated = std::fs::read_to_string(&file).expect("key file").trim().to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(server.request("GET", "/v1/targets", Some(&secret), None).status, 401);
    assert_eq!(server.request("GET", "/v1/targets", Some(&rotated), None).status, 200);
    // Into a file that exists already: refused before the server is asked, so the key is not
    // rotated (its secret would be lost) and the file is left as it was.
    let (success, _, err) = cli(&["keys", "rotate", &id, "--output", file.to_str().expect("path")]);
    assert!(!success && err.contains("nothing was asked of the server"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).expect("key file").trim(), rotated);
    assert_eq!(server.request("GET", "/v1/targets", Some(&rotated), None).status, 200, "still the key");
    // A refusal by the server leaves no empty file behind.
    let nowhere = dir.path().join("nowhere.key");
    let (success, _, _) =
        cli(&["keys", "rotate", "key_00000000000000000000000000", "--output", nowhere.to_str().expect("path")]);
    assert!(!success && !nowhere.exists(), "an empty file left by a refused rotation");
    // Listed (by the CLI and the API) without any secret.
    let (success, out, err) = cli(&["keys", "list"]);
    assert!(success, "{err}");
    assert!(
        out.contains("deploy bot") && out.contains("admin_token (configuration)") && !out.contains("adm_"),
        "{out}"
    );
    let listed = ok(server.admin("GET", "/v1/keys", None), 200).to_string();
    assert!(!listed.contains(&rotated) && !listed.contains(&secret) && !listed.contains(ADMIN), "{listed}");
    // Revoked: refused from then on, still listed as revoked.
    let (success, _, err) = cli(&["keys", "revoke", &id]);
    assert!(success, "{err}");
    assert_eq!(server.request("GET", "/v1/targets", Some(&rotated), None).status, 401);
    assert!(ok(server.admin("GET", &format!("/v1/keys/{id}"), None), 200)["revoked_at"].is_string());
    // The last admin key cannot be revoked.
    let me = ok(server.admin("GET", "/v1/me", None), 200);
    let r = server.admin("DELETE", &format!("/v1/keys/{}", me["id"].as_str().expect("id")), None);
    assert_eq!(r.status, 409, "{}", r.text);
    // Every change of a key is audited, never with its secret.
    let audit = ok(server.admin("GET", "/v1/audit?limit=1000", None), 200).to_string();
    for action in ["key.create", "key.rotate", "key.revoke"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    assert!(!audit.contains(&secret) && !audit.contains(&rotated), "{audit}");
    // Survives a restart; and the data dir holds no secret of a key in clear.
    let mut server = server;
    server.restart();
    assert_eq!(server.request("GET", "/v1/targets", Some(&rotated), None).status, 401);
    assert_eq!(server.admin("GET", "/v1/targets", None).status, 200);
    for secret in [&secret, &rotated, ADMIN, INGEST] {
        assert!(!data_dir_holds(&server.data_dir(), secret.as_bytes()), "{secret} is in the data dir in clear");
    }
}

fn data_dir_holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("data dir").flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            return data_dir_holds(&path, needle);
        }
        std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

/// Starts the binary on `data_dir` expecting it to refuse: answers its stderr.
fn refused_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmhook"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied()).env("NO_COLOR", "1").stdin(Stdio::null());
    let out = cmd.output().expect("crmhook runs");
    assert!(!out.status.success(), "the start was not refused: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bootstrap_token_rotated_by_the_api_never_comes_back_even_when_configured() {
    let mut server = Server::start();
    let me = ok(server.admin("GET", "/v1/me", None), 200);
    let id = me["id"].as_str().expect("id").to_owned();
    assert_eq!(me["name"], "admin_token");
    let rotated = ok(server.admin("POST", &format!("/v1/keys/{id}/rotate"), None), 200);
    let new = rotated["key"].as_str().expect("new secret").to_owned();
    assert_eq!(server.admin("GET", "/v1/targets", None).status, 401, "the old token stops at once");
    assert_eq!(server.request("GET", "/v1/targets", Some(&new), None).status, 200);
    let status = server.stop();
    assert!(status.success());
    // The configuration still holds the old token: the start is refused, saying why.
    let env = [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)];
    let stderr = refused_start(&server.data_dir(), &env);
    assert!(stderr.contains("admin_token") && stderr.contains("rotated or revoked"), "{stderr}");
    // With the new token configured, or none, the server starts and only the new one works.
    server.env = vec![("CRMHOOK_ADMIN_TOKEN".into(), new.clone()), ("CRMHOOK_INGEST_TOKEN".into(), INGEST.into())];
    server.respawn();
    assert_eq!(server.request("GET", "/v1/targets", Some(&new), None).status, 200);
    assert_eq!(server.admin("GET", "/v1/targets", None).status, 401);
    server.restart();
    server.env.retain(|(k, _)| k != "CRMHOOK_ADMIN_TOKEN");
    server.restart();
    assert_eq!(server.request("GET", "/v1/targets", Some(&new), None).status, 200);
    assert_eq!(server.admin("GET", "/v1/targets", None).status, 401);
}

/// `GET /v1/stream` with `key`: its lines, one by one, until the server ends the stream (then
/// the channel is closed).
fn stream_as(server: &Server, key: &str) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let resp = ureq::get(&server.url("/v1/stream")).set("Authorization", &format!("Bearer {key}")).call();
    let resp = resp.expect("the stream opens");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(resp.into_reader()).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A stream lasts as long as its key: once a revocation or a rotation is answered, the stream
/// of the old secret sends nothing more and ends.
#[test]
fn a_stream_ends_when_its_key_is_revoked_or_rotated() {
    let server = Server::start();
    for how in ["revoke", "rotate"] {
        let (id, key) = create_key(&server, &format!("watch-{how}"), "operator");
        let lines = stream_as(&server, &key);
        let id_of = |ack: Value| ack["events"][0]["id"].as_str().expect("id").to_owned();
        let before = id_of(server.post_ok(&maia("ai_pause", json!({"how": how}))));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !lines.recv_timeout(Duration::from_secs(15)).expect("the stream's lines").contains(&before) {
            assert!(std::time::Instant::now() < deadline, "the first event streamed");
        }
        let r = match how {
            "revoke" => server.admin("DELETE", &format!("/v1/keys/{id}"), None),
            _ => server.admin("POST", &format!("/v1/keys/{id}/rotate"), None),
        };
        assert_eq!(r.status, 200, "{}", r.text);
        let after = id_of(server.post_ok(&maia("ai_pause", json!({"how": how}))));
        let mut rest = Vec::new();
        loop {
            match lines.recv_timeout(Duration::from_secs(15)) {
                Ok(line) => rest.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("the stream of a key after `{how}` still open: {e} ({rest:?})"),
            }
        }
        assert!(!rest.iter().any(|l| l.contains(&after)), "{how}: an event after it streamed: {rest:?}");
    }
}
