//! `crmhook-crmsim`: posts sample events to a crmhook source as MAIA or Maximizer would and
//! prints what the CRM saw, one line per POST. Exit status 0 if every POST was delivered.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crmhook_crmsim::{maia, maximizer, Report};

#[derive(Parser)]
#[command(name = "crmhook-crmsim", version, about = "Post events to a crmhook source as a real CRM would")]
struct Cli {
    /// Folder holding the `maia/` and `maximizer/` samples (default: the repo's data/samples).
    #[arg(long, global = true, default_value = "data/samples")]
    samples: PathBuf,
    #[command(subcommand)]
    crm: Crm,
}

#[derive(Subcommand)]
enum Crm {
    /// MAIA: one event per POST, signed with X-Maia-Signature; any 2xx is success; 3 tries.
    Maia {
        /// The webhook URL.
        #[arg(long)]
        url: String,
        /// The webhook secret (X-Maia-Signature is HMAC-SHA256 of the body with it).
        #[arg(long)]
        secret: String,
        /// Event files to post, one per POST (default: every SAMPLES/maia/*.json).
        #[arg(long = "file")]
        files: Vec<PathBuf>,
    },
    /// Maximizer: a JSON array per POST; only 200 within 2 s is success; 3 tries, then discarded.
    Maximizer {
        /// The target URL, including `?key=<key>`.
        #[arg(long)]
        url: String,
        /// The batch file to post (default: SAMPLES/maximizer/opportunity_stage_change.json).
        #[arg(long = "file")]
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crmhook-crmsim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Posts everything asked for; `Ok(true)` if every POST was delivered.
fn run(cli: Cli) -> Result<bool> {
    let samples = samples_dir(&cli.samples);
    let mut all = true;
    match cli.crm {
        Crm::Maia { url, secret, files } => {
            let files = if files.is_empty() { json_files(&samples.join("maia"))? } else { files };
            for file in files {
                let body = read(&file)?;
                all &= print(&file, &maia::post(&url, &secret, &body));
            }
        }
        Crm::Maximizer { url, file } => {
            let file = file.unwrap_or_else(|| samples.join("maximizer/opportunity_stage_change.json"));
            let body = read(&file)?;
            all &= print(&file, &maximizer::post(&url, &body));
        }
    }
    Ok(all)
}

fn print(file: &Path, report: &Report) -> bool {
    let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    println!("{name}: {report}");
    report.delivered
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

/// The default `data/samples` is the repo root's: when it is not under the current directory,
/// fall back to the one next to this crate's sources.
fn samples_dir(dir: &Path) -> PathBuf {
    if dir == Path::new("data/samples") && !dir.is_dir() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/samples");
        if here.is_dir() {
            return here;
        }
    }
    dir.to_path_buf()
}

/// Every `*.json` file in `dir`, sorted by name.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no *.json files in {}", dir.display());
    Ok(files)
}
