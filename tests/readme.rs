//! The README's quick start and CLI section, run as a newcomer would paste them.
//!
//! The test reads README.md itself, takes every ```sh block of "## Quick start" and "## The
//! console and the CLI" in order, splits each into commands (a command ends where `bash -n`
//! accepts the lines so far) and runs them with bash in a fresh temporary directory holding a
//! copy of `data/samples`, so `./data/db` and the files the README writes land there.
//!
//! What the test changes, and nothing else:
//! - `cargo run --release -- ARGS` becomes the built binary (`CARGO_BIN_EXE_crmhook`) with ARGS,
//!   and the binary's directory is first on PATH, so `crmhook …` lines (the README's and those
//!   `crmhook receive` prints) run it too. Inherited `CRMHOOK_*` variables are removed.
//! - No fixed port: `serve` gets an extra `--bind 127.0.0.1:0`, and `localhost:8080` /
//!   `127.0.0.1:8080` in later commands become the address it printed; `127.0.0.1:9000` (the
//!   receiver) becomes a port that was free a moment before.
//! - Foreground commands run one by one in a single bash (so the README's variables carry over
//!   as in the reader's terminal), with `set -o pipefail`, stdin from /dev/null, and `curl`
//!   wrapped as `curl --fail-with-body` so an HTTP error fails the command (and `NO_PROXY` set
//!   for 127.0.0.1). Each must exit 0 within 30 s; a few must print what the README says
//!   ([`EXPECT`]), and each `NAME=$(…)` capture must catch something.
//! - Long-running commands (`serve`, `receive`, `events tail`) are child processes (`bash -c
//!   'exec …'` with the shell's exported variables), read line by line through a channel and
//!   killed when the test ends; `crmhook log export`, which the README runs with the server
//!   stopped, is run after stopping the server with SIGTERM.
//! - Once `$EVENT` is set, the test waits for the receiver to print that delivery, checks both
//!   signatures are `valid`, runs the two `crmhook verify` lines it printed and polls
//!   `GET /v1/events/{id}` until it is `delivered`, before the README's next command.
//!
//! [`SKIPPED`] lists the commands that are not run, with the reason.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{http, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

/// Commands of the two sections that the test does not run, and why. Each must occur.
const SKIPPED: &[(&str, &str)] = &[(
    "cargo install --locked --path crates/crmhook",
    "it compiles a release build into ~/.cargo/bin; the test puts the built binary first on PATH instead",
)];

/// What a command's output must show (command contains, output contains).
const EXPECT: &[(&str, &str)] = &[
    ("| tee target.json", "\"secret\":\"whsec_"),
    ("| tee event.json", "\"accepted\":1,\"duplicates\":0"),
    ("/v1/events/$EVENT", "\"status\":\"delivered\""),
    ("Idempotency-Key", "\"accepted\":0,\"duplicates\":1"),
];

fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme.find(&format!("\n{heading}")).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The ```sh blocks of a section, in order.
fn sh_blocks(section: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

/// Splits a block into commands: lines are added until bash parses them as complete.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        current.push_str(line);
        current.push('\n');
        let complete = Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&current)
            .stderr(Stdio::null())
            .status()
            .expect("bash runs")
            .success();
        if complete && !current.trim_end().ends_with('\\') {
            out.push(current.trim().to_owned());
            current.clear();
        }
    }
    assert!(current.trim().is_empty(), "an incomplete command at the end of a block: {current}");
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child's stdout, line by line through a channel.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Keeps a child's stderr for failure messages.
fn keep(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let kept = Arc::new(Mutex::new(String::new()));
    let k = kept.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut k = k.lock().expect("lock");
            k.push_str(&line);
            k.push('\n');
        }
    });
    kept
}

/// One bash, fed one command at a time: the reader's terminal.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    n: u64,
}

impl Shell {
    fn start(dir: &Path, path: &str) -> Shell {
        let mut cmd = Command::new("bash");
        cmd.arg("--noprofile").arg("--norc").current_dir(dir).env("PATH", path).env("NO_COLOR", "1");
        // Only 127.0.0.1 is spoken to: never through a proxy the machine may have configured.
        cmd.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
            cmd.env_remove(k);
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bash runs");
        let stdin = child.stdin.take().expect("stdin");
        let out = lines_of(child.stdout.take().expect("stdout"));
        let stderr = keep(child.stderr.take().expect("stderr"));
        let mut shell = Shell { child, stdin, out, stderr, n: 0 };
        let (rc, out) = shell.run("set -o pipefail; curl() { command curl --fail-with-body \"$@\"; }");
        assert_eq!(rc, 0, "shell setup: {out}");
        shell
    }

    /// Runs one command (stderr into stdout); answers its exit status and output.
    fn run(&mut self, command: &str) -> (i32, String) {
        self.n += 1;
        let mark = format!("__readme_exit_{}_{}__", std::process::id(), self.n);
        write!(self.stdin, "{{ {command}\n}} </dev/null 2>&1; echo \"{mark}$?\"\n").expect("write to bash");
        self.stdin.flush().expect("flush");
        let deadline = Instant::now() + DEADLINE;
        let mut output = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.out.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!(
                    "{command}\n  did not finish within {DEADLINE:?} ({e}); output so far:\n{output}\nbash stderr:\n{}",
                    self.stderr.lock().expect("lock")
                ),
            };
            if let Some(at) = line.find(&mark) {
                output.push_str(&line[..at]);
                let rc = line[at + mark.len()..].trim().parse().expect("exit status");
                return (rc, output);
            }
            output.push_str(&line);
            output.push('\n');
        }
    }

    /// The value of a shell variable ("" when unset).
    fn var(&mut self, name: &str) -> String {
        let (rc, out) = self.run(&format!("printf '%s\\n' \"${{{name}-}}\""));
        assert_eq!(rc, 0);
        out.trim().to_owned()
    }

    /// The shell's exported environment, as a new process started from it would get it.
    fn exported(&mut self, dump: &Path) -> Vec<(String, String)> {
        let (rc, out) = self.run(&format!("env -0 > '{}'", dump.display()));
        assert_eq!(rc, 0, "env: {out}");
        let bytes = std::fs::read(dump).expect("env dump");
        String::from_utf8_lossy(&bytes)
            .split('\0')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A long-running command: its stdout lines, kept, and killed on drop.
struct Bg {
    what: String,
    child: Option<Child>,
    rx: Receiver<String>,
    lines: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Bg {
    fn start(command: &str, dir: &Path, env: &[(String, String)]) -> Bg {
        // Leading `NAME=value` words stay in front of `exec`, which hands them to the program.
        let mut rest = command.trim_start();
        let mut assigns = String::new();
        while let Some(word) = rest.split_whitespace().next() {
            let is_assign = word.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            });
            if !is_assign {
                break;
            }
            assigns.push_str(word);
            assigns.push(' ');
            rest = rest[word.len()..].trim_start();
        }
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("{assigns}exec {rest}"))
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash runs");
        let rx = lines_of(child.stdout.take().expect("stdout"));
        let stderr = keep(child.stderr.take().expect("stderr"));
        Bg { what: command.to_owned(), child: Some(child), rx, lines: Vec::new(), stderr }
    }

    /// Reads lines until one satisfies `f`; answers its index in `lines`.
    fn wait_line(&mut self, what: &str, f: impl Fn(&str) -> bool) -> usize {
        if let Some(i) = self.lines.iter().position(|l| f(l)) {
            return i;
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line);
                    if f(self.lines.last().expect("pushed")) {
                        return self.lines.len() - 1;
                    }
                }
                Err(e) => panic!(
                    "`{}` did not print {what} within {DEADLINE:?} ({e}); stdout:\n{}\nstderr:\n{}",
                    self.what,
                    self.lines.join("\n"),
                    self.stderr.lock().expect("lock")
                ),
            }
        }
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// SIGTERM, as Ctrl-C in its terminal; answers whether it exited 0.
    fn stop(&mut self) -> bool {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        wait_for(DEADLINE, &format!("`{}` to stop after SIGTERM", self.what), || child.try_wait().expect("wait"))
            .success()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(PartialEq)]
enum Kind {
    Serve,
    Receive,
    Tail,
    Run,
}

/// What the command is, after its leading `NAME=value` words.
fn kind(command: &str) -> Kind {
    let words: Vec<&str> = command.split_whitespace().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect();
    let program: &[&str] = match words.as_slice() {
        ["cargo", "run", "--release", "--", rest @ ..] | ["crmhook", rest @ ..] => rest,
        _ => return Kind::Run,
    };
    match program {
        ["serve", ..] => Kind::Serve,
        ["receive", ..] => Kind::Receive,
        ["events", "tail", ..] => Kind::Tail,
        _ => Kind::Run,
    }
}

struct Ports {
    server: Option<String>,
    receiver: String,
}

fn map(command: &str, bin: &Path, ports: &Ports) -> String {
    let mut c = command.replace("cargo run --release -- ", &format!("'{}' ", bin.display()));
    if let Some(server) = &ports.server {
        c = c.replace("localhost:8080", server).replace("127.0.0.1:8080", server);
    }
    c = c.replace("127.0.0.1:9000", &ports.receiver);
    if kind(command) == Kind::Serve {
        c.push_str(" --bind 127.0.0.1:0");
    }
    c
}

#[test]
fn the_readme_quick_start_and_cli_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(!readme.contains("](../"), "README links outside the repository");

    let mut blocks = sh_blocks(section(&readme, "## Quick start"));
    let quick = blocks.len();
    blocks.extend(sh_blocks(section(&readme, "## The console and the CLI")));
    assert!(quick >= 5 && blocks.len() > quick, "expected the quick start's and the CLI's ```sh blocks");
    for block in &blocks {
        assert!(!block.contains('…'), "a placeholder the reader would have to fill in:\n{block}");
        // zsh (without `interactive_comments`) runs `#` and what follows as words.
        for line in block.lines() {
            assert!(
                !(line.trim_start().starts_with('#') || line.contains(" #")),
                "a comment in a ```sh block breaks pasting into zsh: {line}"
            );
        }
    }
    let commands: Vec<String> = blocks.iter().flat_map(|b| commands(b)).collect();

    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    copy_dir(&root.join("data/samples"), &work.join("data/samples"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_crmhook"));
    let bin_dir = bin.parent().expect("bin dir").to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let dump = tmp.path().join("env0");

    let mut shell = Shell::start(&work, &path);
    let mut ports = Ports { server: None, receiver: format!("127.0.0.1:{}", free_port()) };
    let mut server: Option<Bg> = None;
    let mut receiver: Option<Bg> = None;
    let mut tail: Option<Bg> = None;
    let mut event = String::new();
    let mut skipped = Vec::new();

    for command in &commands {
        if let Some((_, why)) = SKIPPED.iter().find(|(c, _)| c == command) {
            eprintln!("-- skipped: {command}\n   ({why})");
            skipped.push(command.clone());
            continue;
        }
        let mapped = map(command, &bin, &ports);
        eprintln!("$ {mapped}");
        match kind(command) {
            Kind::Serve => {
                let mut s = Bg::start(&mapped, &work, &shell.exported(&dump));
                let at = s.wait_line("`listening on`", |l| l.contains(" listening on "));
                let addr = s.lines[at].split(" listening on ").nth(1).expect("address").trim().to_owned();
                assert!(addr.starts_with("127.0.0.1:"), "{addr}");
                let printed = s.lines.join("\n");
                for want in [
                    // Printed once, to a terminal as the README shows, or to this pipe.
                    "generated admin_token: adm_",
                    "generated ingest_token: ing_",
                    "the generated tokens are in ./data/db/crmhook-tokens",
                ] {
                    assert!(printed.contains(want), "serve did not print {want:?}:\n{printed}");
                }
                ports.server = Some(addr);
                server = Some(s);
            }
            Kind::Receive => {
                let mut r = Bg::start(&mapped, &work, &shell.exported(&dump));
                r.wait_line("`receiving on`", |l| l.starts_with("receiving on "));
                receiver = Some(r);
            }
            Kind::Tail => {
                assert!(!event.is_empty(), "`events tail` comes after the quick start's event");
                let mut t = Bg::start(&mapped, &work, &shell.exported(&dump));
                let ev = event.clone();
                t.wait_line("the quick start's event", |l| l.contains("seq 1") && l.contains(&ev));
                assert!(t.running(), "`events tail` follows until stopped");
                tail = Some(t);
            }
            Kind::Run => {
                if command.starts_with("crmhook log export") {
                    let s = server.as_mut().expect("the server runs");
                    if let Some(mut t) = tail.take() {
                        assert!(t.running(), "`events tail` still follows the log");
                    }
                    assert!(s.stop(), "the server stops with exit 0 on SIGTERM");
                }
                let (rc, out) = shell.run(&mapped);
                eprint!("{out}");
                assert_eq!(rc, 0, "{mapped}\n  exited {rc}:\n{out}");
                for (when, want) in EXPECT {
                    if command.contains(when) {
                        assert!(out.contains(want), "{command}\n  should print {want}, printed:\n{out}");
                    }
                }
                // `NAME=$(…)`: the README's capture must have caught something.
                if let Some((name, _)) = command.split_once("=$(") {
                    if !name.contains(char::is_whitespace) {
                        assert!(!shell.var(name).is_empty(), "{command}\n  left ${name} empty");
                    }
                }
            }
        }

        if event.is_empty() {
            event = shell.var("EVENT");
            if !event.is_empty() {
                let r = receiver.as_mut().expect("the receiver runs before the event is posted");
                check_delivery(&mut shell, r, &event, ports.server.as_deref().expect("server address"), &work);
            }
        }
    }

    for (c, why) in SKIPPED {
        assert!(skipped.iter().any(|s| s == c), "SKIPPED lists {c:?} ({why}), which the README no longer has");
    }
    assert!(event.starts_with("evt_"), "the quick start posts an event and keeps its id in $EVENT");
    let export = std::fs::read_to_string(work.join("events.jsonl")).expect("`log export` wrote events.jsonl");
    assert!(export.contains(&event), "the exported log holds the quick start's event");
    drop(receiver);
}

/// The receiver printed the delivery of `event` with both signatures valid, the `crmhook
/// verify` lines it printed pass, and the API shows the event delivered.
fn check_delivery(shell: &mut Shell, receiver: &mut Bg, event: &str, server: &str, work: &Path) {
    let start = receiver.wait_line("the delivery", |l| l.starts_with("POST /hook") && l.contains(event));
    let id_flag = format!("--id {event}");
    let end = receiver.wait_line("the `crmhook verify` lines", |l| l.contains(&id_flag));
    let delivery = &receiver.lines[start..=end];
    let shown = delivery.join("\n");
    for header in ["X-Maia-Signature:", "webhook-signature:"] {
        let line = delivery.iter().find(|l| l.trim_start().starts_with(header)).unwrap_or_else(|| {
            panic!("the receiver did not print {header}:\n{shown}");
        });
        assert!(line.ends_with("  valid"), "{header} is not valid:\n{shown}");
    }
    assert!(!shown.contains("INVALID"), "{shown}");
    let verify: Vec<&String> = delivery.iter().filter(|l| l.trim_start().starts_with("crmhook verify ")).collect();
    assert_eq!(verify.len(), 2, "one `crmhook verify` line per signature:\n{shown}");
    for line in verify {
        eprintln!("$ {}", line.trim());
        let (rc, out) = shell.run(line.trim());
        eprint!("{out}");
        assert_eq!(rc, 0, "{line}\n  exited {rc}:\n{out}");
        assert!(out.lines().any(|l| l.starts_with("valid: ")), "{out}");
    }

    let tokens = std::fs::read_to_string(work.join("data/db/crmhook-tokens")).expect("the tokens file");
    let admin = tokens.lines().find_map(|l| l.strip_prefix("admin_token=")).expect("admin_token=").to_owned();
    let auth = format!("Bearer {admin}");
    wait_for(DEADLINE, "GET /v1/events/{id} to show it delivered", || {
        let r = http("GET", &format!("http://{server}/v1/events/{event}"), &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{}", r.text);
        (r.json()["deliveries"][0]["status"] == "delivered").then_some(())
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(work.join("data/db/crmhook-tokens")).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the tokens file is readable by its user only");
    }
}
