//! The crmhook nodes of the cluster test: each a `serve --cluster` child on a fixed port.

use super::*;

/// A crmhook node: `serve --cluster` on a fixed port (so that it keeps its URL, which the other
/// nodes know it by, across a restart), its own data dir, its log in a file.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    /// The child and its data dir, with the support helpers (`admin`, `wire`, …).
    pub(crate) server: Server,
}

impl Node {
    pub(crate) fn start(name: &str, env: &[(String, String)], logs: &Path) -> Node {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("CRMHOOK_CLUSTER_ADVERTISE".into(), format!("http://127.0.0.1:{port}")));
        let server = Server {
            dir: tempfile::tempdir().expect("tempdir"),
            env,
            wrapper: String::new(),
            child: None,
            base: String::new(),
            stdout: Arc::default(),
        };
        let mut node = Node { name: name.to_owned(), port, log: logs.join(format!("{name}.log")), server };
        node.spawn();
        node
    }

    /// Starts the binary (again) on the node's port and data dir; waits for `listening on`
    /// (which a cluster node prints once its copy has caught up with the stream).
    pub(crate) fn spawn(&mut self) {
        assert!(self.server.child.is_none(), "{} is running", self.name);
        let mut log = File::options().create(true).append(true).open(&self.log).expect("log file");
        writeln!(log, "--- cluster test: starting {} on 127.0.0.1:{} ---", self.name, self.port).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmhook"));
        cmd.arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.server.data_dir());
        cmd.current_dir(self.server.dir.path()).env("NO_COLOR", "1");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_") || k == "RUST_LOG") {
            cmd.env_remove(k);
        }
        for (k, v) in &self.server.env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn().expect("crmhook runs");
        let rx = follow_stdout(&mut child, self.server.stdout.clone());
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                assert_eq!(addr, format!("127.0.0.1:{}", self.port), "{} listens where asked", self.name);
                self.server.base = format!("http://{addr}");
                self.server.child = Some(child);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not print `listening on` ({e}); its log:\n{}", self.name, tail(&self.log, 40));
            }
        }
    }

    pub(crate) fn kill9(&mut self) {
        self.server.kill9();
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn ingest_url(&self, src: &str) -> String {
        format!("{}/in/{src}", self.url())
    }

    /// `GET /v1/cluster`.
    pub(crate) fn cluster(&self) -> Value {
        let r = self.server.admin("GET", "/v1/cluster", None);
        assert_eq!(r.status, 200, "{} GET /v1/cluster: {}", self.name, r.text);
        r.json()
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("address").port()
}

/// The last `lines` lines of a file ("" if unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Who delivers `target` according to `view` (a `GET /v1/cluster` answer): the node's URL.
pub(crate) fn owner_url(view: &Value, target: &str) -> Option<String> {
    view["nodes"].as_array()?.iter().find_map(|n| {
        let holds = n["targets"].as_array()?.iter().any(|t| t.as_str() == Some(target));
        holds.then(|| n["url"].as_str().map(str::to_owned)).flatten()
    })
}
