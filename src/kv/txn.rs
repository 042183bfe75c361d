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

use super::command::Command;
use super::item;
use super::limits::Limits;
use super::reply::Reply;
use super::request::Request;

/// Compares plus operations in one txn, at most.
pub const TXN_OPS_MAX: usize = 128;

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

/// A checked txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnSpec {
    /// All must hold for `success` to run; else `failure` runs.
    pub compare: Vec<Compare>,
    /// The operations if every compare holds.
    pub success: Vec<Request>,
    /// The operations otherwise.
    pub failure: Vec<Request>,
    /// The canonical JSON stored in the log.
    pub source: Value,
}

impl TxnSpec {
    /// Checks a txn payload (`compare`, `success`, `failure`) under
    /// `limits`.
    pub fn parse(fields: &Map<String, Value>, limits: &Limits) -> Result<Self, Reply> {
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
    pub fn from_log(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(fields) = value else { return Err("a txn is an object".into()) };
        let limits = Limits {
            body_bytes_max: super::BODY_BYTES_MAX_LIMIT,
            key_bytes_max: super::KEY_BYTES_MAX_LIMIT,
            value_bytes_max: super::VALUE_BYTES_MAX_LIMIT,
        };
        Self::parse(&fields, &limits).map_err(|reply| reply.body["error"].to_string())
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

fn parse_op(value: &Value, limits: &Limits) -> Result<Request, Reply> {
    let Value::Object(fields) = value else {
        return Err(Reply::bad_request("each txn operation must be a request object"));
    };
    let action = fields.get("action").and_then(Value::as_str).unwrap_or("");
    let keyed = fields.get("payload").and_then(|p| p.get("key")).is_some();
    match action {
        "put" if !keyed => Err(Reply::bad_request(
            "a txn's put needs a \"key\" (a value-addressed put draws its key at random)",
        )),
        "put" | "delete" | "cas" | "get" | "range" => {
            let request = Request::from_object(fields, limits)?;
            match &request {
                Request::Write(Command::Txn(_)) => {
                    Err(Reply::bad_request("a txn cannot hold another txn"))
                }
                _ => Ok(request),
            }
        }
        other => Err(Reply::bad_request(format!(
            "a txn's operations are put, delete, cas, get and range, not {other:?}"
        ))),
    }
}
