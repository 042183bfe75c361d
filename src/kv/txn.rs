//! Transactions: compares over any keys, then one list of operations or
//! another, in one log entry, applied atomically (etcd's `Txn`).
//!
//! A txn is stored in its log entry as canonical JSON (its compares and
//! operations as checked), and parsed again by every replica with the
//! largest limits, so that what a replica applies never depends on the
//! limits of the node that received it. Operations are ordinary request
//! bodies: key-addressed `put`, `delete`, `cas`, `get`, `range`. A
//! value-addressed put is refused (its key is drawn at random when a
//! request is parsed, which a replica cannot repeat).
//!
//! Caveats: reads inside a txn see its earlier writes; results are in the
//! order of the operations, each as its own request would have answered.

use serde_json::{Map, Value};

use super::item;
use super::limits::Limits;
use super::reply::Reply;

/// Compares plus operations in one txn, at most.
pub const TXN_OPS_MAX: usize = 128;
/// The most a txn's reads may return, in bytes: a range stops there (its
/// `more` says so) and later reads answer 413. Every replica computes a
/// txn's reads, and the answer crosses the peer connection when a follower
/// forwarded the txn.
pub const TXN_ANSWER_BYTES_MAX: usize = 4 << 20;

/// What a compare checks of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Its value equals this.
    Value(String),
    /// Its mod_revision equals this.
    ModRevision(u64),
    /// Its version equals this (0: absent).
    Version(u64),
    /// It is absent.
    Absent,
}

/// One compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// What must hold.
    pub expect: Expect,
}

/// A checked txn; `Op` is what its operations parse into (the request
/// parser's requests, which this file does not name, so that the parser
/// can use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnSpec<Op> {
    /// All must hold for `success` to run; else `failure` runs.
    pub compare: Vec<Compare>,
    /// The operations if every compare holds.
    pub success: Vec<Op>,
    /// The operations otherwise.
    pub failure: Vec<Op>,
    /// The canonical JSON stored in the log.
    pub source: Value,
}

/// Parses one operation of a txn.
pub type OpParser<'a, Op> = &'a dyn Fn(&Value, &Limits) -> Result<Op, Reply>;

impl<Op> TxnSpec<Op> {
    /// Checks a txn payload (`compare`, `success`, `failure`) under
    /// `limits`, each operation with `parse_op`.
    pub fn parse(
        fields: &Map<String, Value>,
        limits: &Limits,
        parse_op: OpParser<'_, Op>,
    ) -> Result<Self, Reply> {
        let list = |name: &str| -> Result<Vec<Value>, Reply> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(Reply::bad_request(format!("\"{name}\" must be an array"))),
            }
        };
        let (compare, success, failure) = (list("compare")?, list("success")?, list("failure")?);
        if compare.len() + success.len() + failure.len() > TXN_OPS_MAX {
            return Err(Reply::bad_request(format!(
                "a txn takes at most {TXN_OPS_MAX} compares and operations in all"
            )));
        }
        let spec = TxnSpec {
            compare: compare.iter().map(|c| parse_compare(c, limits)).collect::<Result<_, _>>()?,
            success: success.iter().map(|op| parse_op(op, limits)).collect::<Result<_, _>>()?,
            failure: failure.iter().map(|op| parse_op(op, limits)).collect::<Result<_, _>>()?,
            source: serde_json::json!({"compare": compare, "success": success, "failure": failure}),
        };
        Ok(spec)
    }

    /// Parses the JSON a log entry holds, with the largest limits.
    pub fn from_log(text: &str, parse_op: OpParser<'_, Op>) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(fields) = value else { return Err("a txn is an object".into()) };
        let limits = Limits {
            body_bytes_max: super::BODY_BYTES_MAX_LIMIT,
            key_bytes_max: super::KEY_BYTES_MAX_LIMIT,
            value_bytes_max: super::VALUE_BYTES_MAX_LIMIT,
        };
        Self::parse(&fields, &limits, parse_op).map_err(|reply| reply.body["error"].to_string())
    }

    /// Whether every compare holds, reading through `get` (the stored item
    /// of a collection's key).
    pub fn holds(
        &self,
        mut get: impl FnMut(&str, &str) -> rdb_storage::Result<Option<Vec<u8>>>,
    ) -> rdb_storage::Result<bool> {
        for compare in &self.compare {
            let stored = get(&compare.collection, &compare.key)?;
            let decoded = stored.as_deref().map(item::decode);
            let holds = match (&compare.expect, decoded) {
                (Expect::Absent, found) => found.is_none(),
                (Expect::Version(0), found) => found.is_none(),
                (_, None) => false,
                (Expect::Value(value), Some((_, held))) => held == value.as_bytes(),
                (Expect::ModRevision(r), Some((revisions, _))) => revisions.mod_revision == *r,
                (Expect::Version(v), Some((revisions, _))) => revisions.version == *v,
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn parse_compare(value: &Value, limits: &Limits) -> Result<Compare, Reply> {
    let Value::Object(fields) = value else {
        return Err(Reply::bad_request("each compare must be an object"));
    };
    let text = |name: &str, max: usize| match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(s.clone()),
        _ => Err(Reply::bad_request(format!(
            "a compare's \"{name}\" must be a non-empty string of at most {max} bytes"
        ))),
    };
    let collection = text("collection", super::COLLECTION_BYTES_MAX)?;
    let key = text("key", limits.key_bytes_max)?;
    let number = |name: &str| fields.get(name).and_then(Value::as_u64);
    let given: Vec<&str> = ["value", "mod_revision", "version", "absent"]
        .into_iter()
        .filter(|name| fields.contains_key(*name))
        .collect();
    if given.len() != 1 || fields.len() != 3 {
        return Err(Reply::bad_request(
            "a compare has \"collection\", \"key\" and one of \"value\", \"mod_revision\", \
             \"version\", \"absent\"",
        ));
    }
    let expect = match given[0] {
        "value" => match fields.get("value") {
            Some(Value::String(v)) if v.len() <= limits.value_bytes_max => Expect::Value(v.clone()),
            _ => return Err(Reply::bad_request("a compare's \"value\" must be a string")),
        },
        "mod_revision" => Expect::ModRevision(number("mod_revision").ok_or_else(bad_number)?),
        "version" => Expect::Version(number("version").ok_or_else(bad_number)?),
        _ if fields.get("absent") == Some(&Value::Bool(true)) => Expect::Absent,
        _ => return Err(Reply::bad_request("a compare's \"absent\" must be true")),
    };
    Ok(Compare { collection, key, expect })
}

fn bad_number() -> Reply {
    Reply::bad_request("a compare's revision or version must be a non-negative integer")
}
