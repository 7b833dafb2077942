//! Reading one JSON value in a single pass: its exact text, its `serde_json::Value`, and the
//! first member name that one of its objects repeats (see [`Read`]); a body that starts with a
//! byte order mark is refused with words that say so.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// UTF-8's byte order mark, which some clients (.NET's, Windows tools) put before a body.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a body that starts with [`BOM`] is refused: serde_json's own words ("expected value at
/// line 1 column 1") point at a character the sender cannot see.
const STARTS_WITH_BOM: &str = "the body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON sent over \
     a network must not carry (RFC 8259, section 8.1): send the body without it";

/// One JSON value read in a single pass: its exact text, its value, and the first member name
/// that one of its objects repeats, at any depth.
///
/// RFC 8259 says names SHOULD be unique; parsed, an object with a name twice keeps the last
/// value only, so such an event would be filtered on one value and delivered with both (a
/// receiver that keeps the first would see an event no subscription chose). It is refused, but
/// only once the whole text has parsed: a text that repeats a name and is also not JSON is
/// malformed, as it always was.
pub(super) struct Read<'a> {
    /// The value's text, without the whitespace around it.
    pub(super) text: &'a str,
    /// The text as it was read, whitespace around the value and all: a MAIA body's bytes as the
    /// CRM sent them.
    pub(super) raw: &'a str,
    pub(super) value: Value,
    /// Why the text is refused, when one of its objects repeats a name.
    pub(super) repeated: Option<String>,
}

/// Reads JSON text that is one value (surrounding whitespace allowed, and left out of `text`).
pub(super) fn read(text: &str) -> Result<Read<'_>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut repeated = None;
    let value = Checked(&mut repeated).deserialize(&mut de)?;
    de.end()?;
    Ok(Read { text: text.trim_matches([' ', '\t', '\n', '\r']), raw: text, value, repeated })
}

/// [`read`] for a request's whole body, which may not be UTF-8 (then serde_json says why).
pub(super) fn read_body(body: &[u8]) -> Result<Read<'_>, serde_json::Error> {
    if body.starts_with(BOM) {
        return Err(serde::de::Error::custom(STARTS_WITH_BOM));
    }
    match std::str::from_utf8(body) {
        Ok(text) => read(text),
        Err(e) => Err(serde_json::from_slice::<&RawValue>(body).err().unwrap_or_else(|| serde::de::Error::custom(e))),
    }
}

/// Builds a `Value` as serde_json's own `Value` does, noting the first repeated member name.
struct Checked<'r>(&'r mut Option<String>);

impl<'de> serde::de::DeserializeSeed<'de> for Checked<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    // Without serde_json's `arbitrary_precision` numbers come as these three.
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Checked(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            // With `arbitrary_precision` a number arrives as a map of one member with this
            // name, which serde_json's own `Value` reads the same way.
            if members.is_empty() && name == "$serde_json::private::Number" {
                let digits: String = map.next_value()?;
                let number = digits.parse().map_err(serde::de::Error::custom)?;
                return Ok(Value::Number(number));
            }
            let value = map.next_value_seed(Checked(&mut *self.0))?;
            if self.0.is_none() && members.contains_key(&name) {
                let shown: String = name.chars().take(64).collect();
                *self.0 = Some(format!("the member {shown:?} appears twice in one object"));
            }
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}
