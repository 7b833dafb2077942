//! `crmhook keys …`: the API keys (admin only): list, show, create, rotate, revoke. A new
//! key's secret is printed once (or written to a file of this user's alone with `--output`);
//! the server keeps only its hash.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{items, print_json, request, s, segment, table, Conn};
use crate::cli_conn::KEY;

#[derive(Subcommand)]
pub enum Keys {
    /// Every key, active and revoked.
    List,
    /// One key: its name, role and dates (never its secret).
    Show { id: String },
    /// A new key; its secret is printed this once.
    Create {
        #[arg(long)]
        name: String,
        /// admin (everything), operator (read the log, redeliver, replay), or ingest (post
        /// events).
        #[arg(long)]
        role: String,
        /// Write the secret to this file (created, mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// A new secret for the key (printed this once); the old one stops working at once.
    Rotate {
        id: String,
        /// Write the secret to this file (created, mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Revoke the key for good (the last admin key cannot be revoked).
    Revoke { id: String },
}

pub fn keys(conn: &Conn, cmd: Keys) -> anyhow::Result<ExitCode> {
    match cmd {
        Keys::List => {
            let v = request(conn, "GET", "/v1/keys", None)?;
            let list = items(conn, &v, "keys")?;
            if conn.json {
                return print_json(&v);
            }
            let rows = list.iter().map(|k| row(k).to_vec()).collect();
            table(&["id", "name", "role", "created_at", "state"], rows);
            Ok(ExitCode::SUCCESS)
        }
        Keys::Show { id } => {
            let v = request(conn, "GET", &format!("/v1/keys/{}", segment(&KEY, &id)?), None)?;
            if conn.json {
                return print_json(&v);
            }
            table(&["id", "name", "role", "created_at", "state"], vec![row(&v).to_vec()]);
            Ok(ExitCode::SUCCESS)
        }
        Keys::Create { name, role, output } => {
            let file = Output::create(output.as_deref())?;
            let v = file.asking(|| request(conn, "POST", "/v1/keys", Some(&json!({"name": name, "role": role}))))?;
            shown_once(conn, &v, file)
        }
        Keys::Rotate { id, output } => {
            let path = format!("/v1/keys/{}/rotate", segment(&KEY, &id)?);
            let file = Output::create(output.as_deref())?;
            let v = file.asking(|| request(conn, "POST", &path, None))?;
            shown_once(conn, &v, file)
        }
        Keys::Revoke { id } => {
            let v = request(conn, "DELETE", &format!("/v1/keys/{}", segment(&KEY, &id)?), None)?;
            if conn.json {
                return print_json(&v);
            }
            say!("revoked {} ({})", s(&v["id"]), s(&v["name"]));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn row(k: &Value) -> [String; 5] {
    let state = match (k["revoked_at"].as_str(), k["rotated_at"].as_str()) {
        (Some(at), _) => format!("revoked {at}"),
        (None, Some(at)) => format!("active, rotated {at}"),
        (None, None) => "active".into(),
    };
    let name = match k["bootstrap"].as_str() {
        Some(_) => format!("{} (configuration)", s(&k["name"])),
        None => s(&k["name"]),
    };
    [s(&k["id"]), name, s(&k["role"]), s(&k["created_at"]), state]
}

/// Where a new secret goes with `--output`: the file is created (empty, 0600, never over an
/// existing one) before the server is asked, so that a key is never made or rotated whose secret
/// cannot be kept.
struct Output<'a>(Option<(&'a Path, std::fs::File)>);

impl<'a> Output<'a> {
    fn create(path: Option<&'a Path>) -> anyhow::Result<Output<'a>> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(path) = path else { return Ok(Output(None)) };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {} (nothing was asked of the server)", path.display()))?;
        Ok(Output(Some((path, file))))
    }

    /// Asks the server; the file created for nothing is removed if it refuses.
    fn asking(&self, ask: impl FnOnce() -> anyhow::Result<Value>) -> anyhow::Result<Value> {
        ask().inspect_err(|_| {
            if let Some((path, _)) = &self.0 {
                let _ = std::fs::remove_file(path);
            }
        })
    }
}

/// A key with its secret, from a creation or a rotation: the secret goes to `output` (0600)
/// when given, else to stdout with the key's id.
fn shown_once(conn: &Conn, v: &Value, output: Output<'_>) -> anyhow::Result<ExitCode> {
    let secret = v["key"].as_str().context("the server's answer has no key")?;
    if let Some((path, file)) = output.0 {
        if let Err(e) = write_secret(file, secret) {
            // The server has made the key: its secret is shown rather than lost.
            say_secret(v, secret);
            anyhow::bail!("cannot write {}: {e}; the secret is shown above, this once", path.display());
        }
        let mut shown = v.clone();
        if let Some(o) = shown.as_object_mut() {
            o.remove("key");
        }
        if conn.json {
            return print_json(&shown);
        }
        say!("{} {} ({}): secret written to {}", s(&v["id"]), s(&v["name"]), s(&v["role"]), path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if conn.json {
        return print_json(v);
    }
    say_secret(v, secret);
    say!("(shown this once: the server keeps only its hash)");
    Ok(ExitCode::SUCCESS)
}

/// The key's id, name and role, then its secret.
fn say_secret(v: &Value, secret: &str) {
    say!("{} {} ({})", s(&v["id"]), s(&v["name"]), s(&v["role"]));
    say!("key: {secret}");
}

fn write_secret(mut file: std::fs::File, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()
}
