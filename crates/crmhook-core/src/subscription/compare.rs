//! Comparing a filter's value with what an event holds: numbers exactly, from their text; the
//! operators' rules for missing paths and mismatched types ([`eval`]).

use std::cmp::Ordering;

use serde_json::Value;

use super::Op;

/// A JSON number's exact value as decimal digits: negative, the significant digits (no leading
/// or trailing zeros; empty for zero), and where the decimal point goes (value = 0.digits ×
/// 10^point). `None` for text that is not a JSON number. An exponent past ±2^60 is taken as
/// ±2^60: such numbers still order against every number of a readable size (`1e400` is less
/// than `1e99999999999999999999`), though not exactly among themselves.
fn decimal(text: &str) -> Option<(bool, Vec<u8>, i64)> {
    const HUGE: i64 = 1 << 60;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => {
            let written = text[i + 1..].trim_start_matches('+');
            let (sign, digits) = match written.strip_prefix('-') {
                Some(d) => (-1, d),
                None => (1, written),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (&text[..i], sign * digits.parse::<i64>().map_or(HUGE, |e| e.min(HUGE)))
        }
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let mut point = i64::try_from(int.len()).ok()?.checked_add(exponent)?;
    let leading = digits.iter().take_while(|d| **d == b'0').count();
    digits.drain(..leading);
    point = point.checked_sub(i64::try_from(leading).ok()?)?;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    Some((negative && !digits.is_empty(), digits, point))
}

/// Compares two JSON numbers exactly, from their text: `12000.00` equals `12000`, and an integer
/// past 2^53 differs from its neighbour (with serde_json's `arbitrary_precision`, which keeps
/// each number's text, this holds for any number; f64 is the fallback for unreadable text).
fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    let (Some(a), Some(b)) = (decimal(&x.to_string()), decimal(&y.to_string())) else {
        return x.as_f64()?.partial_cmp(&y.as_f64()?);
    };
    let magnitude =
        |(_, da, pa): &(bool, Vec<u8>, i64), (_, db, pb): &(bool, Vec<u8>, i64)| match (da.is_empty(), db.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => pa.cmp(pb).then_with(|| da.cmp(db)),
        };
    Some(match (a.0, b.0) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude(&a, &b),
        (true, true) => magnitude(&b, &a),
    })
}

/// Orders two values of the same kind: numbers as numbers (exactly), strings as strings;
/// `None` for a type mismatch or a kind without order.
pub(super) fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Equality with numbers compared as numbers (`1` equals `1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => order(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// One filter against the value found at its path (`None`: the path is missing). A missing
/// path or a type mismatch is false, except `exists: false`.
pub fn eval(op: Op, found: Option<&Value>, want: &Value) -> bool {
    let Some(v) = found else {
        return op == Op::Exists && want == &Value::Bool(false);
    };
    match op {
        Op::Exists => want != &Value::Bool(false),
        Op::Eq => equal(v, want),
        Op::Ne => same_kind(v, want) && !equal(v, want),
        Op::Gt => order(v, want) == Some(Ordering::Greater),
        Op::Gte => matches!(order(v, want), Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => order(v, want) == Some(Ordering::Less),
        Op::Lte => matches!(order(v, want), Some(Ordering::Less | Ordering::Equal)),
        Op::In => want.as_array().is_some_and(|items| items.iter().any(|w| equal(v, w))),
        Op::Nin => want.as_array().is_some_and(|items| !items.iter().any(|w| equal(v, w))),
        Op::Contains => match (v, want) {
            (Value::String(s), Value::String(w)) => s.contains(w.as_str()),
            (Value::Array(items), w) => items.iter().any(|x| equal(x, w)),
            _ => false,
        },
    }
}
