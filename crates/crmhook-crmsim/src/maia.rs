//! MAIA: one event object per POST, signed with `X-Maia-Signature`.

use crate::{maia_signature, post_with_retries, Options, Report};

/// POSTs one MAIA event (`body`, sent byte for byte) with MAIA's defaults ([`Options::maia`]).
pub fn post(url: &str, secret: &str, body: &[u8]) -> Report {
    post_with(url, secret, body, &Options::maia())
}

/// POSTs one MAIA event as MAIA does: `Content-Type: application/json` and
/// `X-Maia-Signature: <hex HMAC-SHA256(secret, body)>`, no other header (no `Authorization`).
/// Any 2xx is success; anything else (other status, timeout, connection error) is retried up
/// to `opts.tries` tries in all.
pub fn post_with(url: &str, secret: &str, body: &[u8], opts: &Options) -> Report {
    let signature = maia_signature(secret, body);
    let headers = [("Content-Type", "application/json"), ("X-Maia-Signature", signature.as_str())];
    post_with_retries(url, &headers, body, opts, |s| (200..300).contains(&s))
}
