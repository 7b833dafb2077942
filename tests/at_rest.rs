//! Secrets at rest (issue 14, point 3): the data dir read byte by byte holds no token, target
//! secret (current or previous), header value, target URL credential, MAIA secret or Maximizer
//! key in clear; the key that seals them is a 0600 file beside the data dir, without which (or
//! with another) a copied data dir does not start; the data dir is 0700 with 0600 files, and
//! one writable by group or others is refused.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{hmac_sha256, maia_signature_valid, standard_signature_valid, Receiver, Server, ADMIN, INGEST};

const DEADLINE: Duration = Duration::from_secs(20);

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the data dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            out.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read a file");
            out.push((path, bytes));
        }
    }
    out
}

/// The files under `dir` that hold `needle`.
fn holding(files: &[(PathBuf, Vec<u8>)], needle: &str) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(p, _)| p.clone())
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn key_file(server: &Server) -> PathBuf {
    server.dir.path().join("data.key")
}

/// `crmhook serve` on `data_dir` that must fail to start: its exit status and stderr.
fn refused_start(data_dir: &Path) -> (std::process::ExitStatus, String) {
    refused_start_with(data_dir, &[])
}

/// [`refused_start`] with more variables set.
fn refused_start_with(data_dir: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    refused_start_on(data_dir, "127.0.0.1:0", env)
}

/// [`refused_start_with`] on the port `bind`.
fn refused_start_on(data_dir: &Path, bind: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmhook"));
    cmd.arg("serve").arg("--bind").arg(bind).arg("--data-dir").arg(data_dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
        cmd.env_remove(k);
    }
    cmd.env("CRMHOOK_ADMIN_TOKEN", ADMIN).env("CRMHOOK_INGEST_TOKEN", INGEST).env("NO_COLOR", "1");
    cmd.envs(env.iter().copied());
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("crmhook runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().expect("wait"));
    });
    let out = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        panic!("crmhook started on {} and kept running", data_dir.display());
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening on"), "it must not serve: {stdout}");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn the_data_dir_read_byte_by_byte_holds_no_secret_in_clear() {
    let mut server = Server::start();
    let receiver = Receiver::start();
    let header = "Bearer hdr_receiver_credential_7f3a9c";
    let url = receiver.url("/hook?access=url_receiver_credential_51d2e8");
    let (tid, first) = server.wire(
        &url,
        Some(json!({"event_types": ["crm_record_created"]})),
        json!({"headers": {"Authorization": header, "X-Api-Key": "hdr_second_value_0b6e41"}}),
    );
    let rotated = server.admin("POST", &format!("/v1/targets/{tid}/rotate-secret"), None);
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let current = rotated.json()["secret"].as_str().expect("the new secret").to_owned();
    assert_ne!(current, first);
    let maia_secret = "maia_webhook_center_secret_93c1d7";
    let maia =
        server.admin("POST", "/v1/sources", Some(&json!({"name": "m", "kind": "maia", "maia_secret": maia_secret})));
    assert_eq!(maia.status, 201, "{}", maia.text);
    let maia_id = maia.json()["id"].as_str().expect("id").to_owned();
    let mx = server.admin("POST", "/v1/sources", Some(&json!({"name": "x", "kind": "maximizer"})));
    assert_eq!(mx.status, 201, "{}", mx.text);
    let mx_key = mx.json()["key"].as_str().expect("the key, shown once").to_owned();
    server.post_ok(&support::maia("crm_record_created", json!({})));
    receiver.wait_count("/hook", 1, DEADLINE);
    let status = server.stop();
    assert!(status.success(), "{status:?}");

    let data = server.data_dir();
    let all = files(&data);
    assert!(!holding(&all, &tid).is_empty(), "the files were read: the target's id is in them");
    assert!(!holding(&all, &maia_id).is_empty(), "the files were read: the source's id is in them");
    for (what, secret) in [
        ("the admin token", ADMIN),
        ("the ingest token", INGEST),
        ("the target's secret", current.as_str()),
        ("the target's previous secret", first.as_str()),
        ("a header value", header),
        ("a header value", "hdr_second_value_0b6e41"),
        ("the credential in the target's URL", "url_receiver_credential_51d2e8"),
        ("the MAIA source's secret", maia_secret),
        ("the Maximizer source's key", mx_key.as_str()),
    ] {
        assert_eq!(holding(&all, secret), Vec::<PathBuf>::new(), "{what} is in the data dir in clear");
    }

    // The permissions: the data dir and everything in it this user's alone; the key beside it.
    assert_eq!(mode(&data), 0o700, "the data dir");
    for (path, _) in &all {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    let key = key_file(&server);
    assert_eq!(mode(&key), 0o600, "the key file");
    assert!(!key.starts_with(&data), "the key file is not in the data dir");

    // Restarted with its key, the sealed secrets are all there: the delivery carries the header
    // and the URL's query and is signed by both secrets; the MAIA source checks its secret.
    server.respawn();
    let tag = support::maia("crm_record_created", json!({}));
    server.post_ok(&tag);
    let got = receiver.wait_count("/hook", 2, DEADLINE);
    let last = &got[1];
    assert_eq!(last.header("authorization"), header);
    assert_eq!(last.header("x-api-key"), "hdr_second_value_0b6e41");
    assert!(last.uri.contains("access=url_receiver_credential_51d2e8"), "{}", last.uri);
    assert!(maia_signature_valid(&current, last), "signed by the current secret");
    assert!(standard_signature_valid(&first, last), "and, during the overlap, by the previous one");
    let body = serde_json::to_vec(&support::maia("crm_record_created", json!({}))).expect("json");
    let signature = hex::encode(hmac_sha256(maia_secret.as_bytes(), &body));
    let posted = support::http(
        "POST",
        &server.url(&format!("/in/{maia_id}")),
        &[("X-Maia-Signature", &signature), ("Content-Type", "application/json")],
        Some(&body),
    );
    assert_eq!(posted.status, 200, "the MAIA source's secret opened: {}", posted.text);
}

#[test]
fn generated_tokens_are_only_in_the_tokens_file_and_keep_working_from_their_hashes() {
    let mut server = Server::start_with(&[("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true")]);
    // Printed once (to this pipe), and kept in the tokens file.
    let kept = std::fs::read_to_string(server.data_dir().join("crmhook-tokens")).expect("tokens file");
    let token = |name: &str| {
        kept.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in the tokens file: {kept}"))
            .to_owned()
    };
    let (admin, ingest) = (token("admin_token"), token("ingest_token"));
    assert_eq!(server.request("GET", "/v1/targets", Some(&admin), None).status, 200);
    assert!(server.stop().success());

    let tokens_file = server.data_dir().join("crmhook-tokens");
    assert_eq!(mode(&tokens_file), 0o600);
    let all = files(&server.data_dir());
    for secret in [&admin, &ingest] {
        assert_eq!(holding(&all, secret), vec![tokens_file.clone()], "a generated token is in the tokens file only");
    }

    // The tokens file is for the operator: crmhook starts without it, from the hashes.
    std::fs::remove_file(&tokens_file).expect("remove the tokens file");
    server.respawn();
    assert_eq!(server.request("GET", "/v1/targets", Some(&admin), None).status, 200, "the admin token");
    assert_eq!(server.request("GET", "/v1/targets", Some(&ingest), None).status, 403, "the ingest token is known");
    assert_eq!(server.request("GET", "/v1/targets", Some("adm_not_the_token_0000000"), None).status, 401);
    let again = server.stdout.lock().expect("lock").join("\n");
    assert_eq!(again.matches("generated admin_token").count(), 1, "no new token on the second start: {again}");
}

/// A service whose output systemd connects to the journal (`JOURNAL_STREAM` names that stream)
/// does not print its generated tokens: the journal is readable by more than the service's user.
/// The stream here is a file whose device and inode the variable names.
#[test]
fn generated_tokens_are_not_printed_to_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("db");
    let journal = dir.path().join("journal");
    let out = std::fs::File::create(&journal).expect("the journal's file");
    let meta = out.metadata().expect("metadata");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmhook"));
    cmd.arg("serve").arg("--bind").arg("127.0.0.1:0").arg("--data-dir").arg(&data_dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
        cmd.env_remove(k);
    }
    cmd.env("CRMHOOK_KEY_FILE", dir.path().join("db.key")).env("NO_COLOR", "1");
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    let mut child = cmd.stdin(Stdio::null()).stdout(out).stderr(Stdio::null()).spawn().expect("crmhook runs");
    let printed = support::wait_for(DEADLINE, "`listening on` in the journal", || {
        let text = std::fs::read_to_string(&journal).ok()?;
        text.contains(" listening on ").then_some(text)
    });
    let _ = child.kill();
    let _ = child.wait();
    let kept = std::fs::read_to_string(data_dir.join("crmhook-tokens")).expect("tokens file");
    for name in ["admin_token", "ingest_token"] {
        let token = kept.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).expect("a token in the file");
        assert!(!printed.contains(token), "{name} reached the journal: {printed}");
        let line = format!("generated {name} (not shown: the output goes to the journal)");
        assert!(printed.contains(&line), "{printed}");
    }
}

#[test]
fn a_copied_data_dir_does_not_start_without_its_key_or_with_another() {
    let mut server = Server::start();
    server.wire("http://127.0.0.1:9/hook", None, json!({"headers": {"X-Token": "hdr_value_2c4d"}}));
    assert!(server.stop().success());

    // The data dir copied elsewhere, as a backup would be, without the key file.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let copy = elsewhere.path().join("data");
    copy_dir(&server.data_dir(), &copy);
    let (status, stderr) = refused_start(&copy);
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains("holds secrets sealed with a key, and its key file")
            && stderr.contains("is missing")
            && stderr.contains(&elsewhere.path().join("data.key").display().to_string()),
        "a clear message naming the missing key file: {stderr}"
    );
    assert!(!elsewhere.path().join("data.key").exists(), "no new key is left behind");

    // Another data dir's key does not open it either.
    let other = Server::start();
    let other_key = key_file(&other);
    std::fs::copy(&other_key, elsewhere.path().join("data.key")).expect("copy another key");
    let (status, stderr) = refused_start(&copy);
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("does not open the secrets sealed in the data dir"), "{stderr}");

    // With its own key the copy starts, and holds the target.
    std::fs::copy(key_file(&server), elsewhere.path().join("data.key")).expect("copy its key");
    let key = elsewhere.path().join("data.key").display().to_string();
    let restored = Server::start_on_copy(
        &copy,
        &[("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST), ("CRMHOOK_KEY_FILE", &key)],
    );
    let targets = restored.admin("GET", "/v1/targets", None).json();
    assert_eq!(targets["targets"].as_array().map(Vec::len), Some(1), "{targets}");
}

#[test]
fn a_data_dir_writable_by_group_or_others_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    for m in [0o777, 0o775, 0o757] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).expect("chmod");
        let (status, stderr) = refused_start(&dir);
        assert!(!status.success(), "{status:?}");
        assert!(
            stderr.contains("is writable by its group or by others") && stderr.contains("chmod 700"),
            "mode {m:o}: {stderr}"
        );
    }
    assert!(!root.path().join("data.key").exists(), "nothing is created for a refused data dir");
    assert!(!dir.join("crmhook.lock").exists(), "no lock file left in it");
}

/// A refused start leaves nothing half-made: a data dir made for it by this start is taken
/// back when its port is in use, and a data dir that cannot be made is refused plainly (it
/// said "starting without it" before the refusal).
#[test]
fn a_refused_start_leaves_no_data_dir_or_lock_file_behind() {
    let root = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").to_string();
    let data = root.path().join("new").join("db");
    let (status, stderr) = refused_start_on(&data, &port, &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!root.path().join("new").exists(), "the dirs this start made are taken back");
    // An existing data dir keeps what it had, and gets no lock file.
    let kept = root.path().join("kept");
    std::fs::create_dir(&kept).expect("mkdir");
    std::fs::write(kept.join("notes"), "mine").expect("write");
    let (status, _) = refused_start_on(&kept, &port, &[]);
    assert_eq!(status.code(), Some(2));
    let left: Vec<_> = std::fs::read_dir(&kept).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, ["notes"]);
    // Through a regular file: refused at once, in one plain line.
    let file = root.path().join("a-file");
    std::fs::write(&file, "").expect("write");
    let (status, stderr) = refused_start(&file.join("db"));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot use the data dir") && !stderr.contains("starting without it"), "{stderr}");
}

#[test]
fn an_old_readable_data_dir_is_tightened_and_its_clear_records_are_sealed() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crmhook-store/tests/fixtures/datadir-2026-12-02");
    // The copy is made as the old binary left it: a 0755 dir, 0644 files.
    let mut server =
        Server::start_on_copy(&fixture, &[("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)]);
    let targets = server.admin("GET", "/v1/targets", None).json();
    let n = targets["targets"].as_array().map(Vec::len).expect("targets");
    assert!(n >= 1, "{targets}");
    assert!(server.stop().success());
    assert_eq!(mode(&server.data_dir()), 0o700);
    for (path, _) in files(&server.data_dir()) {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    // Opened again, its targets read from sealed records with the key made on the first start.
    server.respawn();
    let again = server.admin("GET", "/v1/targets", None).json();
    assert_eq!(again["targets"].as_array().map(Vec::len), Some(n));
}

#[test]
fn tokens_an_earlier_build_kept_in_clear_keep_working_and_are_kept_hashed_from_then_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let old = root.path().join("old");
    let (admin, ingest) = ("adm_kept_in_clear_0123456789abcdef", "ing_kept_in_clear_0123456789abcdef");
    actix_rt::System::new().block_on(async {
        let store = crmhook_store::Store::open(&old).expect("open without a key, as before sealing");
        store.put_meta("admin_token", admin).await.expect("admin");
        store.put_meta("ingest_token", ingest).await.expect("ingest");
        store.close().await;
    });
    let mut server = Server::start_on_copy(&old, &[]);
    assert_eq!(server.request("GET", "/v1/targets", Some(admin), None).status, 200, "the kept admin token");
    assert_eq!(server.request("GET", "/v1/targets", Some(ingest), None).status, 403, "the kept ingest token");
    assert!(server.stop().success());
    let kept = actix_rt::System::new().block_on(async {
        let store = crmhook_store::Store::open(&server.data_dir()).expect("open");
        let kept = (store.meta("admin_token").expect("meta"), store.meta("ingest_token").expect("meta"));
        store.close().await;
        kept
    });
    for (name, value) in [("admin_token", kept.0), ("ingest_token", kept.1)] {
        let value = value.unwrap_or_else(|| panic!("{name} is still kept"));
        assert!(value.starts_with("sha256:") && value.len() == 7 + 64, "{name} kept as its hash: {value}");
    }
    server.respawn();
    assert_eq!(server.request("GET", "/v1/targets", Some(admin), None).status, 200, "and still works from its hash");
}

#[test]
fn a_token_rotated_in_the_configuration_never_comes_back() {
    let (a, b) = ("adm_rotation_a_0123456789abcdef", "adm_rotation_b_0123456789abcdef");
    let mut server = Server::start_with(&[("CRMHOOK_ADMIN_TOKEN", a), ("CRMHOOK_INGEST_TOKEN", INGEST)]);
    assert_eq!(server.request("GET", "/v1/targets", Some(a), None).status, 200);
    // Rotated: B configured instead of A.
    server.env = vec![("CRMHOOK_ADMIN_TOKEN".into(), b.into()), ("CRMHOOK_INGEST_TOKEN".into(), INGEST.into())];
    server.restart();
    assert_eq!(server.request("GET", "/v1/targets", Some(b), None).status, 200);
    assert_eq!(server.request("GET", "/v1/targets", Some(a), None).status, 401, "the old token after the rotation");
    // The variable removed later: B stays the token; A does not come back, and none is generated.
    server.env = vec![("CRMHOOK_INGEST_TOKEN".into(), INGEST.into())];
    server.restart();
    assert_eq!(server.request("GET", "/v1/targets", Some(b), None).status, 200, "the rotated token, kept");
    assert_eq!(server.request("GET", "/v1/targets", Some(a), None).status, 401, "the old token came back");
    let printed = server.stdout.lock().expect("lock").join("\n");
    assert!(!printed.contains("generated admin_token"), "{printed}");
}

#[test]
fn a_key_file_others_may_read_is_tightened_and_one_they_may_write_or_inside_the_data_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start();
    let key = key_file(&server);
    assert!(server.stop().success());
    // Readable by others (a copy restored carelessly): 0600 again at the next start.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    server.respawn();
    assert_eq!(mode(&key), 0o600);
    assert!(server.stop().success());
    // Writable by the group: refused, and left as it is.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o660)).expect("chmod");
    let (status, stderr) = refused_start(&server.data_dir());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is writable by its group or by others (mode 0660)"), "{stderr}");
    assert_eq!(mode(&key), 0o660);

    // A key file inside the data dir: refused before anything is made.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("db");
    let inner = data.join("inner.key");
    let (status, stderr) = refused_start_with(&data, &[("CRMHOOK_KEY_FILE", inner.to_str().expect("path"))]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is inside the data dir"), "{stderr}");
    assert!(!data.exists(), "nothing made");
    // Also through a link, or a path that climbs back into it.
    std::fs::create_dir(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::symlink(&data, dir.path().join("link")).expect("link");
    for sneaky in [dir.path().join("link/inner.key"), data.join("../db/./inner.key")] {
        let (status, stderr) = refused_start_with(&data, &[("CRMHOOK_KEY_FILE", sneaky.to_str().expect("path"))]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is inside the data dir"), "{}: {stderr}", sneaky.display());
    }
}
