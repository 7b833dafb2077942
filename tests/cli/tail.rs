//! `crmhook events tail` resumes where the stream started, though it printed nothing yet, and
//! says why the server refused a stream.

use super::*;

/// A running `crmhook events tail` against `server`: the child, and its stdout's and stderr's
/// lines as they come (one channel).
pub(crate) fn tail(server: &Server) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["events", "tail"])
        .env("CRMHOOK_URL", &server.base)
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// The next line of `rx` that `keep` keeps, within 15 s.
fn next_line(rx: &std::sync::mpsc::Receiver<String>, what: &str, keep: impl Fn(&str) -> bool) -> String {
    wait_for(Duration::from_secs(15), what, || rx.recv_timeout(Duration::from_millis(300)).ok().filter(|l| keep(l)))
}

/// Events posted while `tail` was away (before it connected again) are printed once it is
/// back, each once, though it had printed none before the server stopped.
#[test]
fn tail_that_printed_nothing_yet_misses_nothing_across_a_restart() {
    let mut server = Server::start();
    server.post_ok(&maia("ai_pause", json!({})));
    let (mut child, rx) = tail(&server);
    let following = next_line(&rx, "tail to say it follows the stream", |l| l.starts_with("tail:"));
    assert!(following.contains("following the stream after seq 1"), "{following}");
    assert!(server.stop().success(), "a graceful stop");
    next_line(&rx, "tail to say the stream ended", |l| l.contains("the stream ended"));

    // Posted as soon as the server is back, before tail's next try (every 2 s) finds it.
    server.respawn_on_the_same_port();
    let posted: Vec<String> = (0..3)
        .map(|_| server.post_ok(&maia("ai_pause", json!({})))["events"][0]["id"].as_str().expect("id").to_owned())
        .collect();
    let mut printed = Vec::new();
    for id in &posted {
        let line = next_line(&rx, "tail to print the events posted while it was away", |l| l.starts_with("event"));
        assert!(line.contains(id), "{line} printed where {id} was next");
        printed.push(line);
    }
    // One more, once they are out: nothing came twice before it.
    let marker = server.post_ok(&maia("ai_pause", json!({})))["events"][0]["id"].as_str().expect("id").to_owned();
    let line = next_line(&rx, "tail to print the marker", |l| l.starts_with("event"));
    assert!(line.contains(&marker), "{line} printed where the marker {marker} was next");
    let _ = child.kill();
    let _ = child.wait();
}

/// A stream the server refuses (503: the key holds as many as it may) is an error that says
/// the server's reason.
#[test]
fn tail_says_why_a_stream_was_refused() {
    let server = Server::start_with(&[TEST_ENV.as_slice(), &[("CRMHOOK_MAX_STREAMS_PER_KEY", "1")]].concat());
    // The key's one stream, open while tail asks for another.
    let held = ureq::get(&server.url("/v1/stream"))
        .set("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("the stream opens");
    let out = crmhook(&server, &["events", "tail"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("503") && said.contains("holds 1 streams already"), "{said}");
    drop(held);
}
