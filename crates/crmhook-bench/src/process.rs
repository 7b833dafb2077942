//! The server processes the benchmarks run: which `crmhook` (the one beside the bench, or
//! `CRMHOOK_BENCH_SERVER`), started on a fresh data dir, and stopped as an operator stops it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub(crate) struct Crmhook {
    child: Child,
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Crmhook {
    pub(crate) fn start() -> anyhow::Result<Crmhook> {
        let exe = server_exe()?;
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(&exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("db"))
            .env("CRMHOOK_ADMIN_TOKEN", "adm_bench_0123456789abcdef")
            .env("CRMHOOK_INGEST_TOKEN", "ing_bench_0123456789abcdef")
            .env("CRMHOOK_LOG", "warn")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .context("start crmhook")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().context("crmhook exited before listening")??;
            if let Some(addr) = line.split("listening on ").nth(1) {
                break addr.trim().parse()?;
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Crmhook { child, addr, _dir: dir })
    }

    /// The server process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Crmhook {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The `crmhook` the benchmarks run: `CRMHOOK_BENCH_SERVER` when set (another build of it, e.g.
/// `just build-pgo`'s, measured by this bench's baselines), else the one beside this binary.
pub(crate) fn server_exe() -> anyhow::Result<PathBuf> {
    let exe = match std::env::var_os("CRMHOOK_BENCH_SERVER") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("crmhook"),
    };
    if !exe.exists() {
        bail!("{} is missing: build it first (cargo build --release)", exe.display());
    }
    Ok(exe)
}

/// Stops a server gracefully (SIGTERM, as an operator's stop), so that it exits as it would in
/// use (a build made to collect a profile writes it then); killed if it is not gone in 10 s.
pub(crate) fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let asked = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
    if asked.is_ok_and(|s| s.success()) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
