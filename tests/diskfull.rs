//! Disk trouble: when the disk refuses writes, ingest answers 503 and stores nothing half-way;
//! every acknowledged event is kept. Two disks: a file-size limit (`ulimit -f`; the server
//! catches SIGXFSZ, so writes fail with EFBIG as they would with ENOSPC), stopped and started again by
//! hand; and a real full file system (an 8 MiB tmpfs in a mount namespace of the server's own,
//! `unshare`), where freeing space is all it takes for the running server to serve again.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::tls::{get, issue};
use support::*;

/// Posts requests of ten padded events until one is refused; answers the acknowledged
/// requests' numbers and the refusal, checked to be the contract's 503.
fn fill_until_refused(server: &Server) -> Vec<usize> {
    let bearer = format!("Bearer {INGEST}");
    let headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    let padding = "x".repeat(2000);
    let mut acked = Vec::new();
    for i in 0..20_000 {
        let events: Vec<_> = (0..10)
            .map(|k| json!({"eventType": "crm_field_update", "recordId": format!("r{i}_{k}"), "kanbanId": "k", "newValue": padding}))
            .collect();
        let r = http("POST", &server.url("/v1/events"), &headers, Some(json!(events).to_string().as_bytes()));
        match r.status {
            202 => acked.push(i),
            503 => {
                assert_unavailable(&r);
                assert!(acked.len() > 10, "the disk left too little room to mean anything");
                return acked;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    panic!("the disk never filled up");
}

/// The contract's answer while the disk refuses writes: 503 problem+json, `Retry-After`, and a
/// detail that says nothing was stored without the device's own words.
fn assert_unavailable(r: &Resp) {
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"), "{:?}", r.headers);
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("5"));
    let detail = r.json()["detail"].as_str().map(str::to_owned).unwrap_or_default();
    assert!(detail.contains("nothing was stored") && !detail.contains("os error"), "{}", r.text);
}

/// Each acknowledged request is whole in the log, and no request is there half-way.
fn assert_whole(server: &Server, acked: &[usize]) {
    let mut per_request: HashMap<usize, usize> = HashMap::new();
    let mut after = 0;
    loop {
        let page = server.admin("GET", &format!("/v1/events?after={after}&limit=1000"), None).json();
        for e in page["events"].as_array().expect("events") {
            let Some(tag) = e["payload"]["recordId"].as_str() else { continue };
            let i: usize = tag[1..tag.find('_').expect("_")].parse().expect("number");
            *per_request.entry(i).or_insert(0) += 1;
        }
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    eprintln!("disk full after {} acknowledged requests; {} requests in the log", acked.len(), per_request.len());
    for i in acked {
        assert_eq!(per_request.get(i), Some(&10), "acknowledged request {i} is not whole in the log");
    }
    assert!(per_request.values().all(|n| *n == 10), "a request is in the log half-way: {per_request:?}");
}

fn post_one(server: &Server) -> Resp {
    let bearer = format!("Bearer {INGEST}");
    let headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    http(
        "POST",
        &server.url("/v1/events"),
        &headers,
        Some(json!({"eventType": "ai_pause", "sessionId": "s"}).to_string().as_bytes()),
    )
}

#[test]
fn a_full_disk_answers_503_and_stores_nothing_half_way() {
    let env = [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)];
    // SIGXFSZ is left at its default action: the server catches it itself.
    let mut server = Server::start_wrapped(&env, "ulimit -f 6000");
    let acked = fill_until_refused(&server);
    assert_eq!(server.request("GET", "/readyz", None, None).status, 503, "readyz reports the failing store");
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200, "the process is alive");

    // The operator lifts the limit and restarts: the stop (SIGTERM) ends although the log
    // writer's last flush may never end.
    assert!(server.stop().success(), "a graceful stop");
    server.wrapper.clear();
    server.respawn();
    assert_eq!(server.request("GET", "/readyz", None, None).status, 200);
    assert_whole(&server, &acked);
    let r = post_one(&server);
    assert_eq!(r.status, 202, "ingest works again: {}", r.text);
}

/// Said plainly when the machine cannot give the server a file system of its own.
fn assert_namespaces_work() {
    let ns = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"])
        .output();
    assert!(
        ns.as_ref().is_ok_and(|o| o.status.success()),
        "this test mounts a tmpfs in a mount namespace of the server's own (`unshare --user --map-root-user \
         --mount`, util-linux), which needs root or unprivileged user namespaces: {ns:?}"
    );
}

/// Waits (up to 60 s) for `/readyz` to say ready, every answer before it a 503.
fn await_ready(server: &Server, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = server.request("GET", "/readyz", None, None);
        if ready.status == 200 {
            return;
        }
        assert_eq!(ready.status, 503, "{}", ready.text);
        assert!(Instant::now() < deadline, "not ready within 60 s of {why}: {}", ready.text);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the file that fills the server's tmpfs (`filler` in `dir`), through the server's own
/// view of it.
fn free_the_space(server: &Server, dir: &std::path::Path) {
    let filler = format!("/proc/{}/root{}/filler", server.pid(), dir.display());
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("free the space ({filler}): {e}"));
}

/// While the disk is full every request is answered (never a refused connection): 503 with
/// `Retry-After`, `/readyz` not ready, `/healthz` alive. `http` panics on a connection error.
fn assert_answers_while_full(server: &Server) {
    for _ in 0..3 {
        assert_unavailable(&post_one(server));
        let ready = server.request("GET", "/readyz", None, None);
        assert_eq!(ready.status, 503, "{}", ready.text);
        assert_eq!(ready.headers.get("retry-after").map(String::as_str), Some("5"));
        assert_eq!(server.request("GET", "/healthz", None, None).status, 200, "the process is alive");
    }
}

#[test]
fn space_freed_on_a_full_disk_is_all_it_takes_to_serve_again() {
    let env = [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)];
    assert_namespaces_work();
    // The data dir is an 8 MiB tmpfs that only the server's mount namespace sees, 5 MiB of it
    // taken by a file the test removes (through /proc/<pid>/root) to free the space.
    let wrapper = "mkdir -p data && exec unshare --user --map-root-user --mount bash -c \
                   'mount -t tmpfs -o size=8m,mode=0700 tmpfs data && head -c 5M /dev/zero > data/filler && exec \"$0\" \"$@\"' \
                   \"$0\" \"$@\"";
    let mut server = Server::start_wrapped(&env, wrapper);
    let acked = fill_until_refused(&server);
    assert_answers_while_full(&server);

    free_the_space(&server, &server.data_dir());
    // The server opens its log again by itself (every 5 s): no restart.
    await_ready(&server, "freeing the space");
    let r = post_one(&server);
    assert_eq!(r.status, 202, "ingest works again without a restart: {}", r.text);
    assert_whole(&server, &acked);
    assert!(server.stop().success(), "a graceful stop");
}

/// A server with a data dir of five events (written on an ordinary disk), stopped, and set to
/// start again with that data dir on an 8 MiB tmpfs (its own mount namespace) that a file fills
/// to the last byte: the log cannot be opened for writing.
fn seeded_on_a_full_disk() -> Server {
    let env = [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)];
    let mut server = Server::start_with(&env);
    for _ in 0..5 {
        let r = post_one(&server);
        assert_eq!(r.status, 202, "{}", r.text);
    }
    assert!(server.stop().success(), "a graceful stop");
    let seed = server.dir.path().join("seed");
    std::fs::rename(server.data_dir(), &seed).expect("keep the data dir aside");
    server.wrapper = "mkdir -p data && exec unshare --user --map-root-user --mount bash -c \
                      'mount -t tmpfs -o size=8m,mode=0700 tmpfs data && cp -a seed/. data/ \
                       && { head -c 8M /dev/zero > data/filler 2>/dev/null; true; } && exec \"$0\" \"$@\"' \
                      \"$0\" \"$@\""
        .to_owned();
    server
}

#[test]
fn a_server_started_on_a_full_disk_serves_once_space_is_freed() {
    assert_namespaces_work();
    let mut server = seeded_on_a_full_disk();
    // `respawn` waits for the `listening on` line: a start that exits (as it did, status 2) fails here.
    server.respawn();
    assert_answers_while_full(&server);

    free_the_space(&server, &server.data_dir());
    await_ready(&server, "freeing the space");
    let r = post_one(&server);
    assert_eq!(r.status, 202, "ingest works once there is room: {}", r.text);
    let events = server.admin("GET", "/v1/events?limit=1000", None).json();
    let kept = events["events"].as_array().expect("events").len();
    assert_eq!(kept, 6, "the five events of the data dir and the one posted now: {events}");
    assert!(server.stop().success(), "a graceful stop");
}

/// The wrapper of a first start on a full disk: the test's directory (the data dir and its key
/// file beside it) is an 8 MiB tmpfs filled to the last byte by `filler`, in the server's own
/// mount namespace.
const FULL_FROM_THE_START: &str = "exec unshare --user --map-root-user --mount bash -c \
     'mount -t tmpfs -o size=8m,mode=0700 tmpfs \"$PWD\" \
      && { head -c 8M /dev/zero > \"$PWD/filler\" 2>/dev/null; true; } && exec \"$0\" \"$@\"' \
     \"$0\" \"$@\"";

#[test]
fn a_first_start_on_a_full_disk_serves_once_space_is_freed() {
    assert_namespaces_work();
    // No data dir yet, no tokens configured.
    let mut server = Server::start_wrapped(&[], FULL_FROM_THE_START);
    let answers = |token: Option<&str>| server.request("GET", "/v1/events", token, None).status;
    assert_eq!(answers(None), 503, "the stand-in answers while the key file cannot be written");
    let ready = server.request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.text);

    free_the_space(&server, server.dir.path());
    await_ready(&server, "freeing the space");
    // The tokens were generated once there was room: shown then, and kept in the tokens file.
    let shown = server.stdout.lock().expect("stdout").join("\n");
    assert!(shown.contains("generated admin_token") && shown.contains("the generated tokens are in"), "{shown}");
    let kept = format!("/proc/{}/root{}/crmhook-tokens", server.pid(), server.data_dir().display());
    let kept = std::fs::read_to_string(&kept).unwrap_or_else(|e| panic!("{kept}: {e}"));
    let admin = kept.lines().find_map(|l| l.strip_prefix("admin_token=")).expect("admin_token in the tokens file");
    assert_eq!(answers(Some(admin)), 200, "the kept admin token is the server's");
    assert!(server.stop().success(), "a graceful stop");
}

#[test]
fn over_tls_the_standin_answers_and_the_server_that_takes_over_reloads_on_sighup() {
    assert_namespaces_work();
    let certs = tempfile::tempdir().expect("tempdir");
    let first = issue(certs.path());
    let cert = certs.path().join("cert.pem").display().to_string();
    let key = certs.path().join("key.pem").display().to_string();
    let env = [
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_TLS_CERT", cert.as_str()),
        ("CRMHOOK_TLS_KEY", key.as_str()),
    ];
    let mut server = Server::start_wrapped(&env, FULL_FROM_THE_START);
    let addr = server.base.trim_start_matches("http://").to_owned();
    // The stand-in speaks TLS with the server's certificate.
    assert_eq!(get(&addr, &first, "/readyz").as_deref(), Ok("HTTP/1.1 503 Service Unavailable"));
    assert_eq!(get(&addr, &first, "/healthz").as_deref(), Ok("HTTP/1.1 200 OK"));

    free_the_space(&server, server.dir.path());
    wait_for(Duration::from_secs(60), "ready over TLS once there is room", || {
        get(&addr, &first, "/readyz").ok().filter(|status| status == "HTTP/1.1 200 OK")
    });
    // SIGHUP reloads the certificate of the server that took over from the stand-in.
    let second = issue(certs.path());
    let hup = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status();
    assert!(hup.is_ok_and(|s| s.success()), "kill -HUP");
    wait_for(Duration::from_secs(10), "the new certificate after SIGHUP", || get(&addr, &second, "/healthz").ok());
    assert!(server.stop().success(), "a graceful stop");
}

#[test]
fn a_data_dir_held_by_another_through_the_outage_ends_the_process_for_a_restart() {
    assert_namespaces_work();
    let mut server = seeded_on_a_full_disk();
    // 10 s instead of the default 60 (`locked_restart_after_s`): the same path, sooner.
    server.env.push(("CRMHOOK_LOCKED_RESTART_AFTER_S".into(), "10".into()));
    server.respawn();
    assert_answers_while_full(&server);
    // Something else holds sled's lock on the data dir (flock(2) on its `db` file, as a stopped
    // store whose log writer never ends would): once there is room, every reopen finds it in use.
    // The test holds it itself (no helper process left behind to hold it, or the test's output).
    let db = format!("/proc/{}/root{}/db", server.pid(), server.data_dir().display());
    let held = std::fs::File::open(&db).unwrap_or_else(|e| panic!("{db}: {e}"));
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("the lock is free, then taken");
    free_the_space(&server, &server.data_dir());

    // 10 s after the outage began the process gives up and exits 75 (EX_TEMPFAIL): the unit's
    // `Restart=on-failure` starts a new one, which the lock no longer keeps out.
    let mut child = server.child.take().expect("running");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait().expect("wait"));
    });
    // Well under the default 60 s: the setting is what ends it.
    let status = rx.recv_timeout(Duration::from_secs(45));
    drop(held);
    let status = status.expect("the process exits within 45 s of the outage (10 s set)");
    assert_eq!(status.code(), Some(75), "{status:?}");
    waiter.join().expect("waiter");
}
