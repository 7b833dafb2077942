//! When a certificate is valid: its `notBefore` and `notAfter`, read from its DER (X.509's
//! `TBSCertificate` up to its `validity`, nothing else), so that a reload can refuse a
//! certificate that has expired while the one served has not, and a start or reload can say so
//! in the log. A certificate whose dates cannot be read is judged by its clients, as before.

use crmhook_core::time::{parse_rfc3339, rfc3339};

/// A certificate's validity, ms since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

impl Validity {
    /// The validity of the certificate `der`, if its dates can be read.
    pub fn of(der: &[u8]) -> Option<Validity> {
        let (certificate, _) = item(der, 0x30)?;
        let (mut tbs, _) = item(certificate, 0x30)?;
        // `[0] version` (absent in a version 1 certificate), `serialNumber`, `signature`,
        // `issuer`, then `validity`.
        if tbs.first() == Some(&0xa0) {
            tbs = tlv(tbs)?.2;
        }
        for _ in 0..3 {
            tbs = tlv(tbs)?.2;
        }
        let (validity, _) = item(tbs, 0x30)?;
        let (not_before_ms, rest) = time(validity)?;
        let (not_after_ms, _) = time(rest)?;
        Some(Validity { not_before_ms, not_after_ms })
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.not_after_ms < now_ms
    }

    /// What is wrong with it at `now_ms`, in words for the log: expired, or not valid yet.
    pub fn trouble(&self, now_ms: u64) -> Option<String> {
        if self.expired(now_ms) {
            Some(format!("the certificate expired at {}: clients refuse it", rfc3339(self.not_after_ms)))
        } else if now_ms < self.not_before_ms {
            Some(format!(
                "the certificate is not valid before {} (is this machine's clock right?): clients refuse it until then",
                rfc3339(self.not_before_ms)
            ))
        } else {
            None
        }
    }
}

/// The next DER item of `input`: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes.iter().fold(0usize, |len, b| (len << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

/// The next DER item of `input` if it has the tag `want`: its content and what follows it.
fn item(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = tlv(input)?;
    (tag == want).then_some((content, rest))
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`, 1950–2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`), the two
/// forms RFC 5280 allows, as ms since the epoch; and what follows it.
fn time(input: &[u8]) -> Option<(u64, &[u8])> {
    let (tag, content, rest) = tlv(input)?;
    let digits = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (tag, digits.len()) {
        (0x17, 12) => format!("{}{digits}", if digits < "50" { "20" } else { "19" }),
        (0x18, 14) => digits.to_owned(),
        _ => return None,
    };
    let (y, mo, d, h, mi, s) = (&full[..4], &full[4..6], &full[6..8], &full[8..10], &full[10..12], &full[12..14]);
    Some((parse_rfc3339(&format!("{y}-{mo}-{d}T{h}:{mi}:{s}Z"))?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.self_signed(&key).expect("certificate").der().to_vec()
    }

    #[test]
    fn reads_the_dates_of_a_certificate_in_either_form() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050, as RFC 5280 asks.
        let v = Validity::of(&certificate((2020, 1, 1), (2020, 2, 1))).expect("validity");
        assert_eq!(
            (rfc3339(v.not_before_ms), rfc3339(v.not_after_ms)),
            ("2020-01-01T00:00:00.000Z".to_owned(), "2020-02-01T00:00:00.000Z".to_owned())
        );
        let v = Validity::of(&certificate((2026, 1, 1), (2051, 6, 30))).expect("validity");
        assert_eq!(rfc3339(v.not_after_ms), "2051-06-30T00:00:00.000Z");
    }

    #[test]
    fn judges_a_certificate_at_a_moment() {
        let v = Validity::of(&certificate((2020, 1, 1), (2020, 2, 1))).expect("validity");
        let at = |s: &str| parse_rfc3339(s).expect("time");
        assert!(v.trouble(at("2020-01-15T00:00:00Z")).is_none());
        assert!(v.trouble(at("2020-02-02T00:00:00Z")).is_some_and(|t| t.contains("expired at 2020-02-01")));
        assert!(v.trouble(at("2019-12-31T00:00:00Z")).is_some_and(|t| t.contains("not valid before 2020-01-01")));
        assert!(v.expired(at("2021-01-01T00:00:00Z")) && !v.expired(at("2020-01-31T00:00:00Z")));
    }

    #[test]
    fn what_is_not_a_certificate_has_no_dates() {
        assert_eq!(Validity::of(b""), None);
        assert_eq!(Validity::of(b"\x30\x03\x30\x01"), None);
        let der = certificate((2020, 1, 1), (2020, 2, 1));
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(Validity::of(&der[..cut]), None, "cut at {cut}");
        }
    }
}
