//! Configuration, layered: built-in defaults < `crmhook.toml` (or `--config FILE`) < environment
//! `CRMHOOK_*` < command-line flags. An invalid value stops start-up with an error naming the
//! key, where it came from, and why; so do the files the values name (the TLS certificate and
//! key, the key file), read here before the server creates anything. The result is the server's
//! plain [`Config`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crmhook_server::Config;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: key `{key}` (from {origin}): {reason}")]
pub struct ConfigError {
    pub key: String,
    pub origin: String,
    pub reason: String,
}

/// Values given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `--config FILE`; without it `crmhook.toml` in the working directory is read if present.
    pub config_file: Option<PathBuf>,
    /// `--cluster nats://…`: cluster mode (the `cluster` key).
    pub cluster: Option<String>,
}

/// The keys, in the order the contract lists them.
pub const KEYS: [&str; 37] = [
    "bind",
    "data_dir",
    "admin_token",
    "ingest_token",
    "allow_private_targets",
    "max_targets",
    "max_body_bytes",
    "workers",
    "sched_batch",
    "ingest_queue",
    "ingest_buffer_bytes",
    "retention_days",
    "compaction_interval_s",
    "cache_bytes",
    "locked_restart_after_s",
    "public_url",
    "tls_cert",
    "tls_key",
    "delivery_ca_file",
    "key_file",
    "body_timeout_ms",
    "ingest_concurrency",
    "max_delivery_lag_ms",
    "max_streams",
    "max_streams_per_key",
    "max_page_bytes",
    "allowed_hosts",
    "trusted_proxies",
    "metrics_token",
    "auth_failure_burst",
    "auth_failure_refill_per_minute",
    "cluster",
    "cluster_name",
    "cluster_replicas",
    "cluster_monitor",
    "cluster_lease_ttl_ms",
    "cluster_advertise",
];

/// `bind`'s value: an IP address and a port, or `localhost` and a port, taken as 127.0.0.1
/// (written out, not looked up: no resolver is asked).
fn bind_address(value: &str) -> Option<std::net::SocketAddr> {
    match value.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => {
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)))
        }
        _ => value.parse().ok(),
    }
}

/// Where each key set was set: the last layer that gave it (the file's path, `environment
/// CRMHOOK_…`, `--flag`).
type Origins = HashMap<String, String>;

/// The `CRMHOOK_*` variables of `env` that look like a setting's misspelt (within two letters of
/// one, and no setting's), each with the setting's variable: an unknown key in a file is
/// refused, but the environment holds other programs' variables too, so these are only named
/// (`crmhook serve` warns). Variables far from every setting's (the tools' own) are left alone.
pub fn misspelt_variables(env: &HashMap<String, String>) -> Vec<(String, String)> {
    let settings: Vec<String> = KEYS.iter().map(|k| format!("CRMHOOK_{}", k.to_ascii_uppercase())).collect();
    let mut found: Vec<(String, String)> = env
        .keys()
        .filter(|var| var.starts_with("CRMHOOK_") && !settings.contains(var))
        .filter_map(|var| {
            let (distance, closest) = settings.iter().map(|s| (edit_distance(var, s), s)).min()?;
            (distance <= 2).then(|| (var.clone(), closest.clone()))
        })
        .collect();
    found.sort();
    found
}

/// Levenshtein's distance between two ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Loads the layers, then reads the files they name. `env` is the process environment (passed
/// in for tests).
pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut origins = Origins::new();
    let (file, required) = match &flags.config_file {
        Some(f) => (f.clone(), true),
        None => (PathBuf::from("crmhook.toml"), false),
    };
    if required || file.exists() {
        apply_file(&mut config, &mut origins, &file)?;
    }
    for key in KEYS {
        let var = format!("CRMHOOK_{}", key.to_ascii_uppercase());
        if let Some(value) = env.get(&var) {
            set(&mut config, &mut origins, key, value, &format!("environment {var}"))?;
        }
    }
    if let Some(bind) = &flags.bind {
        set(&mut config, &mut origins, "bind", bind, "--bind")?;
    }
    if let Some(dir) = &flags.data_dir {
        set(&mut config, &mut origins, "data_dir", &dir.to_string_lossy(), "--data-dir")?;
    }
    if let Some(urls) = &flags.cluster {
        set(&mut config, &mut origins, "cluster", urls, "--cluster")?;
    }
    let error = |key: &str, reason: String| ConfigError {
        key: key.into(),
        origin: origins.get(key).cloned().unwrap_or_else(|| "configuration".into()),
        reason,
    };
    if config.tls_cert.is_some() != config.tls_key.is_some() {
        // Named by the key that is set: it has a source to point to.
        let (set, missing) = if config.tls_cert.is_some() { ("tls_cert", "tls_key") } else { ("tls_key", "tls_cert") };
        return Err(error(set, format!("TLS needs both tls_cert and tls_key; {missing} is not set")));
    }
    if config.admin_token.is_some() && config.admin_token == config.ingest_token {
        return Err(error("ingest_token", "must differ from admin_token".into()));
    }
    // Read now, not by the server after it has made the data dir, the key file and the tokens:
    // a start that stops here leaves nothing half-made behind.
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        crmhook_server::tls::check(cert, key).map_err(|e| error(e.config_key(), e.reason().to_owned()))?;
    }
    if let Some(file) = &config.delivery_ca_file {
        crmhook_server::tls::delivery_tls(Some(file)).map_err(|e| error(e.config_key(), e.reason().to_owned()))?;
    }
    if let Some(key_file) = &config.key_file {
        crmhook_server::at_rest::check_key_place(key_file, &config.data_dir)
            .map_err(|reason| error("key_file", reason))?;
        crmhook_server::at_rest::check_key_file(key_file).map_err(|reason| error("key_file", reason))?;
    }
    Ok(config)
}

fn apply_file(config: &mut Config, origins: &mut Origins, path: &Path) -> Result<(), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        key: "config".into(),
        origin: origin.clone(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| syntax_error(&text, &origin, &e))?;
    for (key, value) in table {
        let kind = file_kind(&key);
        let text = match (value, kind) {
            (toml::Value::String(s), FileKind::Text | FileKind::List) => s,
            (toml::Value::Integer(i), FileKind::Integer) => i.to_string(),
            (toml::Value::Boolean(b), FileKind::Boolean) => b.to_string(),
            // `allowed_hosts = ["a.example", "b.example"]`, read as the comma-separated form.
            (toml::Value::Array(items), FileKind::List) => {
                items.iter().map(|v| v.as_str().unwrap_or("\u{0}")).collect::<Vec<_>>().join(",")
            }
            // An unknown key is refused by `set`, with the list of the keys.
            (value, FileKind::Unknown) => value.to_string(),
            (other, kind) => {
                return Err(ConfigError {
                    key,
                    origin,
                    reason: format!("{} is not a value for it; write {}", a_or_an(other.type_str()), kind.example()),
                })
            }
        };
        set(config, origins, &key, &text, &origin)?;
    }
    Ok(())
}

/// The TOML type a key's value has in a file. (The environment gives every value as text, so
/// there `true`, `yes`, `on` and `1` all turn a switch on; a file says what it means.)
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Text,
    Integer,
    Boolean,
    /// A string of comma-separated items, or an array of strings.
    List,
    Unknown,
}

impl FileKind {
    fn example(self) -> &'static str {
        match self {
            FileKind::Text => "a string in quotes",
            FileKind::Integer => "a whole number without quotes",
            FileKind::Boolean => "true or false, without quotes",
            FileKind::List => "a string or an array of strings",
            FileKind::Unknown => "one of the keys",
        }
    }
}

fn file_kind(key: &str) -> FileKind {
    match key {
        "allow_private_targets" | "sched_batch" => FileKind::Boolean,
        "max_targets"
        | "max_body_bytes"
        | "workers"
        | "ingest_queue"
        | "ingest_buffer_bytes"
        | "retention_days"
        | "compaction_interval_s"
        | "cache_bytes"
        | "locked_restart_after_s"
        | "body_timeout_ms"
        | "ingest_concurrency"
        | "max_delivery_lag_ms"
        | "max_streams"
        | "max_streams_per_key"
        | "max_page_bytes"
        | "auth_failure_burst"
        | "auth_failure_refill_per_minute"
        | "cluster_replicas"
        | "cluster_lease_ttl_ms" => FileKind::Integer,
        "allowed_hosts" | "trusted_proxies" | "cluster_monitor" | "cluster" => FileKind::List,
        key if KEYS.contains(&key) => FileKind::Text,
        _ => FileKind::Unknown,
    }
}

/// A file that is not TOML: the error names the key on the line where reading stopped (or
/// `config` when that line sets none), the line and column, and the parser's reason.
fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |span| span.start).min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let this_line = text[line_start..].lines().next().unwrap_or("");
    let key = this_line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    ConfigError {
        key: key.unwrap_or("config").to_owned(),
        origin: origin.to_owned(),
        reason: format!("line {line}, column {column}: {}", e.message().trim_end()),
    }
}

/// A cluster's name: 1 to 32 letters, digits, `-` and `_` (it names a JetStream stream and
/// bucket).
pub fn cluster_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn set(config: &mut Config, origins: &mut Origins, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError { key: key.into(), origin: origin.into(), reason };
    let int = |min: usize| match value.trim().parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(err(format!("{value:?} is not an integer of at least {min}"))),
    };
    let token = || {
        let v = value.trim();
        if v.len() < 16 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            Err(err("a token needs at least 16 printable characters and no spaces".into()))
        } else {
            Ok(Some(v.to_owned()))
        }
    };
    let boolean = || match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(err(format!("{value:?} is not true or false"))),
    };
    match key {
        "bind" => {
            config.bind = bind_address(value.trim()).ok_or_else(|| {
                err(format!(
                    "{value:?} is not an address like 127.0.0.1:8080 (an IP address, or localhost, and a port)"
                ))
            })?
        }
        "data_dir" if value.trim().is_empty() => return Err(err("must not be empty".into())),
        "data_dir" => config.data_dir = PathBuf::from(value.trim()),
        "admin_token" => config.admin_token = token()?,
        "ingest_token" => config.ingest_token = token()?,
        "allow_private_targets" => config.allow_private_targets = boolean()?,
        "sched_batch" => config.sched_batch = boolean()?,
        "max_targets" => config.max_targets = int(1)?,
        "max_body_bytes" => config.max_body_bytes = int(64)?,
        "workers" => config.workers = int(1)?,
        "ingest_queue" => config.ingest_queue = int(1)?,
        "ingest_buffer_bytes" => config.ingest_buffer_bytes = int(1024)?,
        "retention_days" => config.retention_days = int(0)? as u64,
        "compaction_interval_s" => config.compaction_interval_s = int(1)? as u64,
        "cache_bytes" => config.cache_bytes = int(1024 * 1024)?,
        "locked_restart_after_s" => config.locked_restart_after_s = int(5)? as u64,
        "body_timeout_ms" => config.body_timeout_ms = int(100)? as u64,
        "ingest_concurrency" => config.ingest_concurrency = int(1)?,
        "max_delivery_lag_ms" => config.max_delivery_lag_ms = int(0)? as u64,
        "max_streams" => config.max_streams = int(1)?,
        "max_streams_per_key" => config.max_streams_per_key = Some(int(1)?),
        "max_page_bytes" => config.max_page_bytes = int(64 * 1024)?,
        "public_url" => {
            let url = value.trim().trim_end_matches('/');
            let parsed = url::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none());
            if parsed.is_none() {
                return Err(err(format!("{value:?} is not a URL like https://crmhook.example.com")));
            }
            config.public_url = Some(url.to_owned());
        }
        "tls_cert" | "tls_key" | "delivery_ca_file" if value.trim().is_empty() => {
            return Err(err("must not be empty".into()))
        }
        "delivery_ca_file" => config.delivery_ca_file = Some(PathBuf::from(value.trim())),
        "tls_cert" => config.tls_cert = Some(PathBuf::from(value.trim())),
        "tls_key" => config.tls_key = Some(PathBuf::from(value.trim())),
        "key_file" if value.trim().is_empty() => return Err(err("must not be empty".into())),
        "key_file" => config.key_file = Some(PathBuf::from(value.trim())),
        "allowed_hosts" => {
            let hosts: Vec<String> = value.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
            if let Some(bad) = hosts
                .iter()
                .find(|h| *h != "*" && !h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
            {
                return Err(err(format!(
                    "{bad:?} is not a host name; give names like crmhook.example.com, comma-separated, or *"
                )));
            }
            config.allowed_hosts = hosts;
        }
        "trusted_proxies" => {
            let entries: Vec<String> = value.split(',').map(|e| e.trim().to_owned()).collect();
            config.trusted_proxies = crmhook_server::api::client::TrustedProxies::parse(&entries).map_err(|e| {
                err(format!("{e}; give addresses or networks like 127.0.0.1, 10.0.0.0/8, comma-separated"))
            })?;
        }
        "metrics_token" => config.metrics_token = token()?,
        "auth_failure_burst" => {
            config.auth_failure_burst = u32::try_from(int(0)?).map_err(|_| err(format!("{value:?} is too large")))?
        }
        "auth_failure_refill_per_minute" => {
            config.auth_failure_refill_per_minute =
                u32::try_from(int(1)?).map_err(|_| err(format!("{value:?} is too large")))?
        }
        "cluster" => {
            let urls: Vec<&str> = value.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            if urls.is_empty() || urls.iter().any(|u| !u.starts_with("nats://") && !u.starts_with("tls://")) {
                return Err(err(format!(
                    "{value:?} is not a list of NATS URLs like nats://10.0.0.1:4222,nats://10.0.0.2:4222"
                )));
            }
            config.cluster = Some(urls.join(","));
        }
        "cluster_name" => {
            let name = value.trim();
            if !cluster_name_ok(name) {
                return Err(err(format!("{value:?} is not a name of 1 to 32 letters, digits, - and _")));
            }
            config.cluster_name = name.to_owned();
        }
        "cluster_replicas" => match int(1)? {
            n @ 1..=5 => config.cluster_replicas = n,
            n => return Err(err(format!("{n} replicas: JetStream allows 1 to 5"))),
        },
        "cluster_monitor" => {
            let urls: Vec<String> =
                value.split(',').map(|u| u.trim().trim_end_matches('/').to_owned()).filter(|u| !u.is_empty()).collect();
            if let Some(bad) =
                urls.iter().find(|u| url::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https")))
            {
                return Err(err(format!("{bad:?} is not a monitoring URL like http://10.0.0.1:8222")));
            }
            config.cluster_monitor = urls;
        }
        "cluster_lease_ttl_ms" => config.cluster_lease_ttl_ms = int(1000)? as u64,
        "cluster_advertise" => {
            let url = value.trim().trim_end_matches('/');
            if url::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https") || u.host().is_none()) {
                return Err(err(format!("{value:?} is not a URL like http://10.0.0.7:8080")));
            }
            config.cluster_advertise = Some(url.to_owned());
        }
        other => return Err(err(format!("unknown key `{other}`; the keys are {}", KEYS.join(", ")))),
    }
    origins.insert(key.to_owned(), origin.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests;

/// "a string", "an integer": a TOML type's name with its article.
fn a_or_an(name: &str) -> String {
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}
