//! Disk trouble: when the disk refuses writes, ingest answers 503 and stores nothing half-way;
//! every acknowledged event is kept. Two disks: a file-size limit (`ulimit -f`, with SIGXFSZ
//! ignored so writes fail with EFBIG as they would with ENOSPC), stopped and started again by
//! hand; and a real full file system (an 8 MiB tmpfs in a mount namespace of the server's own,
//! `unshare`), where freeing space is all it takes for the running server to serve again.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
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
    let mut server = Server::start_wrapped(&env, "ulimit -f 6000; trap '' XFSZ");
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

#[test]
fn space_freed_on_a_full_disk_is_all_it_takes_to_serve_again() {
    let env = [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)];
    // Said plainly when the machine cannot give the server a file system of its own.
    let ns = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"])
        .output();
    assert!(
        ns.as_ref().is_ok_and(|o| o.status.success()),
        "this test mounts a tmpfs in a mount namespace of the server's own (`unshare --user --map-root-user \
         --mount`, util-linux), which needs root or unprivileged user namespaces: {ns:?}"
    );
    // The data dir is an 8 MiB tmpfs that only the server's mount namespace sees, 5 MiB of it
    // taken by a file the test removes (through /proc/<pid>/root) to free the space.
    let wrapper = "mkdir -p data && exec unshare --user --map-root-user --mount bash -c \
                   'mount -t tmpfs -o size=8m,mode=0700 tmpfs data && head -c 5M /dev/zero > data/filler && exec \"$0\" \"$@\"' \
                   \"$0\" \"$@\"";
    let mut server = Server::start_wrapped(&env, wrapper);
    let acked = fill_until_refused(&server);

    // While the disk is full every request is answered (never a refused connection): 503 with
    // `Retry-After`, `/readyz` not ready, `/healthz` alive. `http` panics on a connection error.
    for _ in 0..3 {
        assert_unavailable(&post_one(&server));
        let ready = server.request("GET", "/readyz", None, None);
        assert_eq!(ready.status, 503, "{}", ready.text);
        assert_eq!(ready.headers.get("retry-after").map(String::as_str), Some("5"));
        assert_eq!(server.request("GET", "/healthz", None, None).status, 200, "the process is alive");
    }

    let filler = format!("/proc/{}/root{}/filler", server.pid(), server.data_dir().display());
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("free the space ({filler}): {e}"));
    // The server opens its log again by itself (every 5 s): no restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = server.request("GET", "/readyz", None, None);
        if ready.status == 200 {
            break;
        }
        assert_eq!(ready.status, 503, "{}", ready.text);
        assert!(Instant::now() < deadline, "not ready within 60 s of freeing the space: {}", ready.text);
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = post_one(&server);
    assert_eq!(r.status, 202, "ingest works again without a restart: {}", r.text);
    assert_whole(&server, &acked);
    assert!(server.stop().success(), "a graceful stop");
}
