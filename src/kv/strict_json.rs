//! JSON parsing that refuses what serde_json lets through: an object with
//! the same key twice (RFC 8259 §4 leaves its meaning open; serde_json keeps
//! the last, so `{"key":"a","key":"b"}` would silently mean "b").

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Nesting of arrays and objects, at most (serde_json's own limit is 128).
const DEPTH_MAX: usize = 64;

/// Parses `bytes` as one JSON value; a duplicate key anywhere is an error
/// that names it.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer)?.0;
    deserializer.end()?;
    Ok(value)
}

/// A `Value` deserialized without duplicate keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: 0 }).map(StrictValue)
    }
}

/// Builds a `Value`, refusing duplicate keys.
#[derive(Clone, Copy)]
struct StrictVisitor {
    /// Arrays and objects around this value.
    depth: usize,
}

/// One nested value, parsed with the visitor one level deeper.
struct Nested(StrictVisitor);

impl<'de> de::DeserializeSeed<'de> for Nested {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self.0)
    }
}

impl StrictVisitor {
    fn nested<E: de::Error>(self) -> Result<Nested, E> {
        if self.depth >= DEPTH_MAX {
            return Err(E::custom(format!("nested deeper than {DEPTH_MAX} levels")));
        }
        Ok(Nested(StrictVisitor { depth: self.depth + 1 }))
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate field {key:?}")));
            }
            let value = map.next_value_seed(self.nested()?)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(parse(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#).is_ok());
        let error = parse(br#"{"a":1,"a":2}"#).unwrap_err().to_string();
        assert!(error.contains("duplicate field \"a\""), "{error}");
        let error = parse(br#"{"p":{"key":"x","key":"y"}}"#).unwrap_err().to_string();
        assert!(error.contains("duplicate field \"key\""), "{error}");
        let error = parse(br#"[{"k":1},{"k":1,"k":2}]"#).unwrap_err().to_string();
        assert!(error.contains("duplicate"), "{error}");
    }

    #[test]
    fn values_match_serde_json() {
        for text in [r#"{"a":[1,-2,3.5,true,null,"x\u00e9"],"b":{}}"#, "12", "\"s\"", "[]"] {
            let expected: Value = serde_json::from_str(text).expect("valid");
            assert_eq!(parse(text.as_bytes()).expect("valid"), expected, "{text}");
        }
        assert!(parse(b"{} x").is_err(), "trailing bytes");
        assert!(parse(&[b'['; 100]).is_err(), "too deep");
    }
}
