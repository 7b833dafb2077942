//! Targets: where deliveries go, and how a target's fields are validated.
//!
//! A target is created from, and patched with, a JSON object; every rule broken names its
//! field (HTTP 422). The record kept in the store is [`Target`]; the secret is only ever shown
//! by the API when it is created or rotated.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::id::TargetId;
use crate::retry::DEFAULT_SCHEDULE_MS;

/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Largest `timeout_ms` accepted.
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// Longest retry schedule accepted, and its longest single delay (7 days).
pub const MAX_SCHEDULE_LEN: usize = 50;
pub const MAX_DELAY_MS: u64 = 7 * 24 * 3_600_000;

/// Headers a target's own `headers` may not set: the delivery's own headers and those of HTTP
/// framing, and `Accept-Encoding` (crmhook asks for the answer as it is, `identity`, and keeps
/// its first bytes: a receiver asked for `gzip` would send bytes crmhook keeps compressed; since
/// 2026-12-07). `User-Agent` and `Date` a target may set.
pub const RESERVED_HEADERS: [&str; 13] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "x-maia-timestamp",
    "x-maia-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-crmhook-attempt",
    "authorization-crmhook",
    "accept-encoding",
];

/// Headers of a connection rather than of a request (hop-by-hop, RFC 9110 section 7.6.1), and
/// those that change how the request is framed, routed or read: a target may not set them.
pub const HOP_BY_HOP_HEADERS: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "host",
    "content-length",
    "content-encoding",
    "http2-settings",
];

/// Most bytes of a receiver's answer kept with each attempt, and the default of a target's
/// `response_body_bytes` (which may lower it, to 0 for none).
pub const MAX_RESPONSE_BODY_BYTES: u32 = 4096;

/// The highest `rate_limit_per_s` a target may have.
pub const MAX_RATE_LIMIT_PER_S: u32 = 10_000;

/// The most headers a target may set.
pub const MAX_HEADERS: usize = 50;
/// The longest header name a target may set, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 128;
/// The longest header value a target may set, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8_192;
/// The most bytes a target's headers (names and values) may take together.
pub const MAX_HEADERS_BYTES: usize = 16 * 1024;

/// Whether a target may not set the header `name` (either case): crmhook's own headers and the
/// hop-by-hop and framing ones.
pub fn forbidden_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&lower.as_str()) || HOP_BY_HOP_HEADERS.contains(&lower.as_str())
}

/// How events are wrapped for a target; `None` on the target keeps each CRM's own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    Maia,
    Maximizer,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Maia => "maia",
            Format::Maximizer => "maximizer",
        }
    }
}

/// A target as kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: TargetId,
    pub name: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub ordered: bool,
    pub format: Option<Format>,
    /// The current secret, `whsec_…`.
    pub secret: String,
    /// The secret before the last rotation, and until when (ms) it is still used.
    pub previous_secret: Option<(String, u64)>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// How many bytes of each answer's body are kept with its attempt (0 to
    /// [`MAX_RESPONSE_BODY_BYTES`]).
    pub response_body_bytes: u32,
    /// At most this many attempts start in any one second (first attempts and retries alike);
    /// `None`: no limit beyond the in-flight one.
    pub rate_limit_per_s: Option<u32>,
}

/// What a caller may set on a target.
pub const TARGET_FIELDS: [&str; 9] = [
    "name",
    "url",
    "headers",
    "timeout_ms",
    "retry_schedule_ms",
    "ordered",
    "format",
    "response_body_bytes",
    "rate_limit_per_s",
];

impl Target {
    /// A new target from a creation request.
    pub fn create(
        body: &Map<String, Value>,
        allow_private: bool,
        secret: String,
        now_ms: u64,
    ) -> Result<Target, CoreError> {
        for required in ["name", "url"] {
            if body.get(required).is_none_or(Value::is_null) {
                return Err(CoreError::field(required, format!("`{required}` is required")));
            }
        }
        let mut target = Target {
            id: TargetId::generate(),
            name: String::new(),
            url: String::new(),
            headers: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry_schedule_ms: DEFAULT_SCHEDULE_MS.to_vec(),
            ordered: false,
            format: None,
            secret,
            previous_secret: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            response_body_bytes: MAX_RESPONSE_BODY_BYTES,
            rate_limit_per_s: None,
        };
        target.apply(body, allow_private)?;
        Ok(target)
    }

    /// This target with the fields of a PATCH request applied; `self` is untouched on error.
    pub fn patched(&self, body: &Map<String, Value>, allow_private: bool, now_ms: u64) -> Result<Target, CoreError> {
        let mut target = self.clone();
        target.apply(body, allow_private)?;
        target.updated_at_ms = now_ms;
        Ok(target)
    }

    /// The target's secrets ready to sign: the current one, and the previous one while its
    /// overlap lasts.
    pub fn signer(&self) -> crate::sign::Signer {
        let previous = self.previous_secret.as_ref().map(|(old, until)| (old.as_str(), Some(*until)));
        crate::sign::Signer::new(std::iter::once((self.secret.as_str(), None)).chain(previous))
    }

    fn apply(&mut self, body: &Map<String, Value>, allow_private: bool) -> Result<(), CoreError> {
        for (key, value) in body {
            match key.as_str() {
                "name" => self.name = name(value)?,
                "url" => self.url = url(value, allow_private)?,
                "headers" => self.headers = headers(value)?,
                "timeout_ms" => self.timeout_ms = integer(value, "timeout_ms", 1, MAX_TIMEOUT_MS)?,
                "retry_schedule_ms" => self.retry_schedule_ms = schedule(value)?,
                // `null` is the default, as for the other optional fields.
                "ordered" => {
                    self.ordered = match value {
                        Value::Null => false,
                        v => {
                            v.as_bool().ok_or_else(|| CoreError::field("ordered", "`ordered` must be true or false"))?
                        }
                    }
                }
                "format" => self.format = format(value)?,
                "response_body_bytes" => {
                    let max = u64::from(MAX_RESPONSE_BODY_BYTES);
                    self.response_body_bytes = integer(value, "response_body_bytes", 0, max)? as u32
                }
                "rate_limit_per_s" => self.rate_limit_per_s = rate_limit(value)?,
                "id" | "secret" | "created_at" | "updated_at" => {
                    return Err(CoreError::field(key, format!("`{key}` cannot be set")))
                }
                other => {
                    return Err(CoreError::field(
                        other,
                        format!("unknown field `{other}`; a target has {}", TARGET_FIELDS.join(", ")),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn name(value: &Value) -> Result<String, CoreError> {
    match value.as_str().and_then(|s| crate::name::checked(s, 200)) {
        Some(s) => Ok(s.to_owned()),
        None => Err(CoreError::field(
            "name",
            "`name` must be a non-empty string of at most 200 characters, without control characters or characters that reorder or hide text (bidi controls, zero-width characters)",
        )),
    }
}

/// Checks a target URL: absolute `http(s)://host…`, no credentials, no fragment; `https` unless
/// private targets are allowed. Whether the host is a public address is checked apart, by the
/// server's address guard.
pub fn url(value: &Value, allow_private: bool) -> Result<String, CoreError> {
    let s = value.as_str().ok_or_else(|| CoreError::field("url", "`url` must be a string"))?;
    let parsed = url::Url::parse(s).map_err(|e| CoreError::field("url", format!("`url` is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(CoreError::field("url", "`url` must be https:// (http:// only with allow_private_targets)"))
        }
        other if allow_private => {
            return Err(CoreError::field("url", format!("`url` must be https:// or http://, not {other}://")))
        }
        other => return Err(CoreError::field("url", format!("`url` must be https://, not {other}://"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(CoreError::field("url", "`url` has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CoreError::field("url", "`url` must not carry credentials; send them in `headers`"));
    }
    if parsed.fragment().is_some() {
        return Err(CoreError::field("url", "`url` must not have a #fragment"));
    }
    if s.len() > 2048 {
        return Err(CoreError::field("url", "`url` is longer than 2048 characters"));
    }
    Ok(parsed.to_string())
}

fn headers(value: &Value) -> Result<Vec<(String, String)>, CoreError> {
    let obj = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(obj) => obj,
        _ => return Err(CoreError::field("headers", "`headers` must be an object of header names to strings")),
    };
    if obj.len() > MAX_HEADERS {
        return Err(CoreError::field("headers", format!("`headers` has more than {MAX_HEADERS} entries")));
    }
    let total: usize = obj.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    if total > MAX_HEADERS_BYTES {
        return Err(CoreError::field(
            "headers",
            format!("`headers` take {total} bytes of names and values, at most {MAX_HEADERS_BYTES}"),
        ));
    }
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    // Header names are case-insensitive: two that differ only in case would go out as one.
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    obj.iter()
        .map(|(name, v)| {
            if name.len() > MAX_HEADER_NAME_BYTES {
                let shown: String = name.chars().take(32).collect();
                return Err(CoreError::field(
                    "headers",
                    format!("header name {shown:?}… is longer than {MAX_HEADER_NAME_BYTES} bytes"),
                ));
            }
            let field = format!("headers.{name}");
            if name.is_empty() || !name.bytes().all(token) {
                return Err(CoreError::field(&field, format!("{name:?} is not a valid header name")));
            }
            if HOP_BY_HOP_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(CoreError::field(
                    &field,
                    format!("header {name:?} belongs to the connection (hop-by-hop or framing) and cannot be set"),
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(CoreError::field(
                    &field,
                    format!("header {name:?} is set by crmhook and cannot be replaced"),
                ));
            }
            if let Some(other) = seen.insert(name.to_ascii_lowercase(), name) {
                return Err(CoreError::field(
                    &field,
                    format!("header {name:?} is given twice (also as {other:?}): header names ignore case"),
                ));
            }
            let v = v.as_str().ok_or_else(|| CoreError::field(&field, format!("header {name:?} must be a string")))?;
            if v.len() > MAX_HEADER_VALUE_BYTES || !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                return Err(CoreError::field(
                    &field,
                    format!("header {name:?} must be printable ASCII, at most {MAX_HEADER_VALUE_BYTES} bytes"),
                ));
            }
            Ok((name.clone(), v.to_owned()))
        })
        .collect()
}

fn integer(value: &Value, field: &str, min: u64, max: u64) -> Result<u64, CoreError> {
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(CoreError::field(field, format!("`{field}` must be an integer from {min} to {max}"))),
    }
}

fn rate_limit(value: &Value) -> Result<Option<u32>, CoreError> {
    match value {
        Value::Null => Ok(None),
        _ => Ok(Some(integer(value, "rate_limit_per_s", 1, u64::from(MAX_RATE_LIMIT_PER_S))? as u32)),
    }
}

fn schedule(value: &Value) -> Result<Vec<u64>, CoreError> {
    let items = value.as_array().filter(|a| a.len() <= MAX_SCHEDULE_LEN).ok_or_else(|| {
        CoreError::field(
            "retry_schedule_ms",
            format!("`retry_schedule_ms` must be an array of at most {MAX_SCHEDULE_LEN} delays"),
        )
    })?;
    items.iter().map(|v| integer(v, "retry_schedule_ms", 0, MAX_DELAY_MS)).collect()
}

fn format(value: &Value) -> Result<Option<Format>, CoreError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s == "maia" => Ok(Some(Format::Maia)),
        Value::String(s) if s == "maximizer" => Ok(Some(Format::Maximizer)),
        _ => Err(CoreError::field("format", "`format` must be \"maia\" or \"maximizer\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn field_of(r: Result<Target, CoreError>) -> String {
        match r {
            Err(CoreError::Invalid(e)) => e.field.unwrap_or_default(),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn create_applies_defaults() {
        let t = Target::create(
            &obj(json!({"name": "crm", "url": "https://example.com/h?x=1"})),
            false,
            "whsec_x".into(),
            5,
        )
        .expect("valid");
        assert!(t.id.as_str().starts_with("tgt_"));
        assert_eq!(t.url, "https://example.com/h?x=1");
        assert_eq!((t.timeout_ms, t.ordered, t.retry_schedule_ms.len()), (2000, false, 7));
        assert_eq!(t.response_body_bytes, 4096);
    }

    /// A target created with `field` set to `value`.
    fn created_with(field: &str, value: Value) -> Result<Target, CoreError> {
        let mut body = obj(json!({"name": "n", "url": "https://a.example"}));
        body.insert(field.to_owned(), value);
        Target::create(&body, false, "whsec_x".into(), 0)
    }

    #[test]
    fn response_body_bytes_is_from_0_to_4096() {
        let c = |n: Value| created_with("response_body_bytes", n);
        assert_eq!(c(json!(0)).map(|t| t.response_body_bytes).ok(), Some(0));
        assert_eq!(c(json!(4096)).map(|t| t.response_body_bytes).ok(), Some(4096));
        for bad in [json!(4097), json!(-1), json!("10"), json!(1.5)] {
            assert_eq!(field_of(c(bad)), "response_body_bytes");
        }
    }

    #[test]
    fn rate_limit_is_from_1_to_10000_and_null_removes_it() {
        let c = |n: Value| created_with("rate_limit_per_s", n);
        assert_eq!(c(json!(1)).map(|t| t.rate_limit_per_s).ok(), Some(Some(1)));
        assert_eq!(c(json!(10_000)).map(|t| t.rate_limit_per_s).ok(), Some(Some(10_000)));
        assert_eq!(c(json!(null)).map(|t| t.rate_limit_per_s).ok(), Some(None));
        for bad in [json!(0), json!(10_001), json!(-1), json!("10"), json!(2.5), json!(true)] {
            assert_eq!(field_of(c(bad)), "rate_limit_per_s");
        }
        let limited = c(json!(5)).expect("a limited target");
        let lifted = limited.patched(&obj(json!({"rate_limit_per_s": null})), false, 1).expect("patched");
        assert_eq!(lifted.rate_limit_per_s, None);
        let kept = limited.patched(&obj(json!({"name": "m"})), false, 1).expect("patched");
        assert_eq!(kept.rate_limit_per_s, Some(5));
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let c = |v: Value, private| Target::create(&obj(v), private, "whsec_x".into(), 0);
        assert_eq!(field_of(c(json!({"url": "https://a.example"}), false)), "name");
        assert_eq!(field_of(c(json!({"name": "a\u{0}b", "url": "https://a.example"}), false)), "name");
        assert_eq!(field_of(c(json!({"name": "n", "url": "ftp://x"}), true)), "url");
        assert_eq!(field_of(c(json!({"name": "n", "url": "http://a.example"}), false)), "url");
        assert_eq!(field_of(c(json!({"name": "n", "url": "https://u:p@a.example"}), false)), "url");
        assert_eq!(field_of(c(json!({"name": "n", "url": "https://a.example", "timeout_ms": 0}), false)), "timeout_ms");
        assert_eq!(
            field_of(c(json!({"name": "n", "url": "https://a.example", "retry_schedule_ms": [1, -1]}), false)),
            "retry_schedule_ms"
        );
        assert_eq!(
            field_of(c(json!({"name": "n", "url": "https://a.example", "headers": {"Webhook-Id": "x"}}), false)),
            "headers.Webhook-Id"
        );
        assert_eq!(field_of(c(json!({"name": "n", "url": "https://a.example", "colour": "red"}), false)), "colour");
        assert!(c(json!({"name": "n", "url": "http://127.0.0.1:9/x", "headers": {"X-Key": "k"}}), true).is_ok());
        // The scheme's rule as it stands on this server.
        let detail = |r: Result<Target, CoreError>| match r {
            Err(CoreError::Invalid(e)) => e.detail,
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(
            detail(c(json!({"name": "n", "url": "ftp://x"}), true)),
            "`url` must be https:// or http://, not ftp://"
        );
        assert_eq!(detail(c(json!({"name": "n", "url": "ftp://x"}), false)), "`url` must be https://, not ftp://");
    }

    #[test]
    fn ordered_null_is_the_default_as_for_the_other_optional_fields() {
        assert_eq!(created_with("ordered", json!(null)).map(|t| t.ordered).ok(), Some(false));
        assert_eq!(created_with("ordered", json!(true)).map(|t| t.ordered).ok(), Some(true));
        assert_eq!(field_of(created_with("ordered", json!("yes"))), "ordered");
        let ordered = created_with("ordered", json!(true)).expect("valid");
        let patched = ordered.patched(&obj(json!({"ordered": null})), false, 1).expect("patched");
        assert!(!patched.ordered);
    }

    #[test]
    fn hop_by_hop_and_oversized_headers_are_refused() {
        let c = |headers: Value| {
            Target::create(
                &obj(json!({"name": "n", "url": "https://a.example", "headers": headers})),
                false,
                "whsec_x".into(),
                0,
            )
        };
        for name in [
            "Expect",
            "Upgrade",
            "TE",
            "Proxy-Authorization",
            "Connection",
            "Keep-Alive",
            "Transfer-Encoding",
            "Host",
            "content-length",
            "Trailer",
            "Proxy-Connection",
            "Content-Encoding",
        ] {
            assert_eq!(field_of(c(json!({name: "x"}))), format!("headers.{name}"), "{name}");
        }
        assert_eq!(field_of(c(json!({"X".repeat(200 * 1024): "x"}))), "headers");
        // Two names that differ only in case would be sent as one header: refused, naming one.
        let twice = field_of(c(json!({"X-A": "upper", "x-a": "lower"})));
        assert!(twice == "headers.X-A" || twice == "headers.x-a", "{twice}");
        assert!(c(json!({"X-A": "a", "X-B": "b"})).is_ok());
        assert_eq!(field_of(c(json!({"X".repeat(MAX_HEADER_NAME_BYTES + 1): "x"}))), "headers");
        assert!(c(json!({"X".repeat(MAX_HEADER_NAME_BYTES): "x"})).is_ok());
        let name = "X-Big";
        assert_eq!(field_of(c(json!({name: "v".repeat(MAX_HEADER_VALUE_BYTES + 1)}))), "headers.X-Big");
        assert!(c(json!({name: "v".repeat(MAX_HEADER_VALUE_BYTES)})).is_ok());
        let two = json!({"X-A": "v".repeat(MAX_HEADER_VALUE_BYTES), "X-B": "v".repeat(MAX_HEADER_VALUE_BYTES)});
        assert_eq!(field_of(c(two)), "headers");
        let many: Map<String, Value> = (0..=MAX_HEADERS).map(|i| (format!("X-{i}"), json!("v"))).collect();
        assert_eq!(field_of(c(Value::Object(many))), "headers");
        assert!(forbidden_header("UPGRADE") && forbidden_header("webhook-id") && !forbidden_header("X-Api-Key"));
        assert!(forbidden_header("Accept-Encoding") && !forbidden_header("User-Agent") && !forbidden_header("Date"));
    }

    #[test]
    fn patch_changes_only_what_it_names() {
        let t = Target::create(&obj(json!({"name": "a", "url": "https://a.example"})), false, "whsec_x".into(), 1)
            .expect("valid");
        let p = t.patched(&obj(json!({"ordered": true})), false, 9).expect("valid");
        assert_eq!((p.ordered, p.name.as_str(), p.updated_at_ms, p.id.clone()), (true, "a", 9, t.id.clone()));
        assert!(t.patched(&obj(json!({"secret": "x"})), false, 9).is_err());
    }

    #[test]
    fn the_previous_secret_signs_until_it_expires() {
        let (new, old) = (crate::sign::generate_secret(), crate::sign::generate_secret());
        let mut t = Target::create(&obj(json!({"name": "a", "url": "https://a.example"})), false, new.clone(), 1)
            .expect("valid");
        t.previous_secret = Some((old.clone(), 100));
        let both = crate::sign::sign(&[&new, &old], "evt_1", "1", b"{}");
        assert_eq!(t.signer().sign(99, "evt_1", "1", b"{}"), both);
        assert_eq!(t.signer().sign(100, "evt_1", "1", b"{}"), crate::sign::sign(&[&new], "evt_1", "1", b"{}"));
        assert_eq!(both.standard.split(' ').count(), 2);
        // MAIA's header is by the new secret alone, during the overlap too.
        assert_eq!(both.maia, crate::sign::maia_signature(&new, b"{}"));
    }
}
