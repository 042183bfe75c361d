//! Parsing and checking a POST /command body. Everything a client can get
//! wrong is refused here, with the status docs/API.md gives, before the
//! request reaches the log.
//!
//! Decoding is strict: a field the action does not take (a typo such as
//! `prefx`) and a key given twice in one object are 400s that name the
//! field, never silently ignored. A follower decodes a request before
//! forwarding it and the leader decodes the same bytes again with this
//! same function, so both see the same request.

use serde_json::{Map, Value};

use super::command::{new_key, new_lease_id, Command};
use super::lease::{parse_lease, LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN};
use super::limits::Limits;
use super::query::Query;
use super::reply::Reply;
use super::{strict_json, COLLECTION_BYTES_MAX, RANGE_LIMIT_DEFAULT, RANGE_LIMIT_MAX};

/// The fields the top level of a request may have.
const REQUEST_FIELDS: &[&str] = &["action", "payload"];

/// The payload fields each action takes.
const ACTIONS: &[(&str, &[&str])] = &[
    ("put", &["collection", "key", "value", "lease"]),
    ("get", &["collection", "key", "value", "consistency"]),
    ("delete", &["collection", "key", "value", "start", "end", "prefix"]),
    ("cas", &["collection", "key", "expected", "expected_revision", "value", "lease"]),
    ("drop collection", &["collection"]),
    ("drop value index", &["collection"]),
    ("list collections", &["consistency"]),
    ("range", &["collection", "start", "end", "prefix", "limit", "consistency"]),
    ("watch", &["collection", "key", "prefix", "from_revision", "wait_ms"]),
    ("txn", &["compare", "success", "failure"]),
    ("lease grant", &["ttl_ms"]),
    ("lease keepalive", &["lease"]),
    ("lease revoke", &["lease"]),
    ("leases", &[]),
];

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the request (ReadIndex).
    Linearizable,
    /// The receiving node's applied state, possibly stale.
    Serializable,
}

/// A txn whose operations are requests.
pub type Txn = super::txn::TxnSpec<Request>;

/// The txn a log entry holds (its canonical JSON), parsed with the largest
/// limits: what every replica applies.
pub fn parse_txn(text: &str) -> Result<Txn, String> {
    Txn::from_log(text, &txn_op)
}

/// One operation of a txn: a key-addressed put, delete, cas, get or range
/// (a value-addressed put draws its key at random, which a replica cannot
/// repeat; a txn holds no txn).
fn txn_op(value: &Value, limits: &Limits) -> Result<Request, Reply> {
    let Value::Object(fields) = value else {
        return Err(Reply::bad_request("each txn operation must be a request object"));
    };
    let action = fields.get("action").and_then(Value::as_str).unwrap_or("");
    let keyed = fields.get("payload").and_then(|p| p.get("key")).is_some();
    match action {
        "put" if !keyed => Err(Reply::bad_request(
            "a txn's put needs a \"key\" (a value-addressed put draws its key at random)",
        )),
        "put" | "delete" | "cas" | "get" | "range" => Request::from_object(fields, limits),
        other => Err(Reply::bad_request(format!(
            "a txn's operations are put, delete, cas, get and range, not {other:?}"
        ))),
    }
}

/// The longest a long-polling watch waits (`wait_ms`), in milliseconds.
pub const WATCH_WAIT_MS_MAX: u64 = 60_000;

/// What a watch asks for (docs/API.md, "Watch").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// The collection.
    pub collection: String,
    /// One key, or None for every key starting with `prefix`.
    pub key: Option<String>,
    /// The key prefix ("" for the whole collection).
    pub prefix: String,
    /// Replay changes from this revision on (None: from now).
    pub from_revision: Option<u64>,
    /// Long-poll: answer with the changes so far, or once one comes within
    /// this many milliseconds (None: stream until the client goes away).
    pub wait_ms: Option<u64>,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Renew a lease's TTL (the leader keeps the deadlines).
    LeaseKeepalive(u64),
    /// List the leases with their remaining time (the leader's).
    Leases,
    /// Changes to a key or a prefix, served by the receiving node.
    Watch(WatchSpec),
    /// A write, to be replicated through the log.
    Write(Command),
    /// A read.
    Read {
        /// What to read.
        query: Query,
        /// How fresh it must be.
        consistency: Consistency,
    },
}

impl Request {
    /// Parses a request body under `limits`; the error is the answer to
    /// give the client (400, or 413 for a key or value over its limit).
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Self, Reply> {
        let root = strict_json::parse(body)
            .map_err(|e| Reply::bad_request(format!("malformed JSON: {e}")))?;
        let Value::Object(root) = root else {
            return Err(Reply::bad_request("the body must be a JSON object"));
        };
        Self::from_object(&root, limits)
    }

    /// A request from its JSON object (a body, or an operation of a txn).
    pub(super) fn from_object(root: &Map<String, Value>, limits: &Limits) -> Result<Self, Reply> {
        only_fields(root, REQUEST_FIELDS, "the request")?;
        let action = match root.get("action") {
            Some(Value::String(action)) => action.as_str(),
            Some(_) => return Err(Reply::bad_request("\"action\" must be a string")),
            None => return Err(Reply::bad_request("missing \"action\"")),
        };
        let Some(&(_, fields)) = ACTIONS.iter().find(|(name, _)| *name == action) else {
            let known: Vec<&str> = ACTIONS.iter().map(|(name, _)| *name).collect();
            return Err(Reply::bad_request(format!(
                "unknown action {action:?}; the actions are {}",
                known.join(", ")
            )));
        };
        let empty = Map::new();
        let payload = match root.get("payload") {
            Some(Value::Object(payload)) => payload,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(Reply::bad_request("\"payload\" must be an object")),
        };
        only_fields(payload, fields, &format!("the \"payload\" of {action:?}"))?;
        Self::from_action(action, &Payload { fields: payload, limits })
    }

    fn from_action(action: &str, payload: &Payload<'_>) -> Result<Self, Reply> {
        match action {
            "put" => Self::put(payload),
            "get" => Self::get(payload),
            "delete" => Self::delete(payload),
            "cas" => Self::cas(payload),
            "drop collection" => {
                Ok(Request::Write(Command::Drop { collection: payload.collection()? }))
            }
            "drop value index" => {
                Ok(Request::Write(Command::DropValueIndex { collection: payload.collection()? }))
            }
            "list collections" => Self::read(Query::ListCollections, payload),
            "range" => Self::range(payload),
            "watch" => Self::watch(payload),
            "lease grant" => {
                let ttl_ms = match payload.fields.get("ttl_ms").and_then(Value::as_u64) {
                    Some(ttl) if (LEASE_TTL_MS_MIN..=LEASE_TTL_MS_MAX).contains(&ttl) => ttl,
                    _ => {
                        return Err(Reply::bad_request(format!(
                            "\"ttl_ms\" must be an integer from {LEASE_TTL_MS_MIN} to \
                             {LEASE_TTL_MS_MAX}"
                        )))
                    }
                };
                Ok(Request::Write(Command::LeaseGrant { id: new_lease_id(), ttl_ms }))
            }
            "lease keepalive" => {
                Ok(Request::LeaseKeepalive(payload.lease()?.ok_or_else(|| missing("lease"))?))
            }
            "lease revoke" => Ok(Request::Write(Command::LeaseRevoke {
                id: payload.lease()?.ok_or_else(|| missing("lease"))?,
            })),
            "leases" => Ok(Request::Leases),
            "txn" => {
                let spec = Txn::parse(payload.fields, payload.limits, &txn_op)?;
                Ok(Request::Write(Command::Txn(spec.source.to_string())))
            }
            other => Err(Reply::bad_request(format!("unknown action {other:?}"))),
        }
    }

    fn put(payload: &Payload<'_>) -> Result<Self, Reply> {
        let collection = payload.collection()?;
        let key = payload.key()?;
        let value = payload.value(key.is_none())?.ok_or_else(|| missing("value"))?;
        if let Some(lease) = payload.lease()? {
            let key =
                key.ok_or_else(|| Reply::bad_request("a put with a lease needs a \"key\""))?;
            let expected_revision = None;
            return Ok(Request::Write(Command::PutLeased {
                collection,
                key,
                value,
                lease,
                expected_revision,
            }));
        }
        Ok(Request::Write(match key {
            Some(key) => Command::PutKey { collection, key, value },
            None => Command::PutValue { collection, key: new_key(), value },
        }))
    }

    fn get(payload: &Payload<'_>) -> Result<Self, Reply> {
        let collection = payload.collection()?;
        let query = match payload.key()? {
            Some(key) => Query::GetKey { collection, key },
            None => Query::GetValue {
                collection,
                value: payload.value(true)?.ok_or_else(|| missing("key or value"))?,
            },
        };
        Self::read(query, payload)
    }

    fn cas(payload: &Payload<'_>) -> Result<Self, Reply> {
        let collection = payload.collection()?;
        let key = payload.key()?.ok_or_else(|| missing("key"))?;
        let by_revision = payload.fields.contains_key("expected_revision");
        if by_revision == payload.fields.contains_key("expected") {
            return Err(Reply::bad_request(
                "give one of \"expected\" (a value, or null for absent) and \
                 \"expected_revision\" (a mod_revision, or 0 for absent)",
            ));
        }
        let value = payload.value(false)?.ok_or_else(|| missing("value"))?;
        let lease = payload.lease()?;
        if !by_revision {
            if lease.is_some() {
                return Err(Reply::bad_request(
                    "a cas with a lease compares on \"expected_revision\" (0: only if absent)",
                ));
            }
            let expected = payload.expected()?;
            return Ok(Request::Write(Command::Cas { collection, key, expected, value }));
        }
        let expected_revision =
            payload.fields.get("expected_revision").and_then(Value::as_u64).ok_or_else(|| {
                Reply::bad_request("\"expected_revision\" must be a non-negative integer")
            })?;
        Ok(Request::Write(match lease {
            Some(lease) => Command::PutLeased {
                collection,
                key,
                value,
                lease,
                expected_revision: Some(expected_revision),
            },
            None => Command::CasRevision { collection, key, expected_revision, value },
        }))
    }

    fn delete(payload: &Payload<'_>) -> Result<Self, Reply> {
        let collection = payload.collection()?;
        let (start, end, prefix) =
            (payload.bound("start")?, payload.bound("end")?, payload.key_like("prefix")?);
        if start.is_some() || end.is_some() || prefix.is_some() {
            if payload.key()?.is_some() || payload.value_like("value")?.is_some() {
                return Err(Reply::bad_request(
                    "a delete takes a \"key\", a \"value\", or a range (\"start\", \"end\", \
                     \"prefix\"), not both",
                ));
            }
            return Ok(Request::Write(Command::DeleteRange { collection, start, end, prefix }));
        }
        Ok(Request::Write(match payload.key()? {
            Some(key) => Command::DeleteKey { collection, key },
            None => Command::DeleteValue {
                collection,
                value: payload.value(true)?.ok_or_else(|| missing("key or value"))?,
            },
        }))
    }

    fn range(payload: &Payload<'_>) -> Result<Self, Reply> {
        let limit = match payload.fields.get("limit") {
            None | Some(Value::Null) => RANGE_LIMIT_DEFAULT,
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if (1..=RANGE_LIMIT_MAX).contains(&n) => n,
                _ => {
                    return Err(Reply::bad_request(format!(
                        "\"limit\" must be an integer from 1 to {RANGE_LIMIT_MAX}"
                    )))
                }
            },
            Some(_) => return Err(Reply::bad_request("\"limit\" must be an integer")),
        };
        let query = Query::Range {
            collection: payload.collection()?,
            start: payload.bound("start")?,
            end: payload.bound("end")?,
            prefix: payload.key_like("prefix")?,
            limit,
        };
        Self::read(query, payload)
    }

    fn watch(payload: &Payload<'_>) -> Result<Self, Reply> {
        let number = |field: &str| -> Result<Option<u64>, Reply> {
            match payload.fields.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
                Some(_) => {
                    Err(Reply::bad_request(format!("\"{field}\" must be a non-negative integer")))
                }
            }
        };
        let key = payload.key()?;
        let prefix = payload.key_like("prefix")?;
        if key.is_some() && prefix.is_some() {
            return Err(Reply::bad_request("a watch takes a \"key\" or a \"prefix\", not both"));
        }
        let wait_ms = number("wait_ms")?;
        if wait_ms.is_some_and(|ms| ms > WATCH_WAIT_MS_MAX) {
            return Err(Reply::bad_request(format!(
                "\"wait_ms\" must be at most {WATCH_WAIT_MS_MAX}"
            )));
        }
        Ok(Request::Watch(WatchSpec {
            collection: payload.collection()?,
            key,
            prefix: prefix.unwrap_or_default(),
            from_revision: number("from_revision")?,
            wait_ms,
        }))
    }

    fn read(query: Query, payload: &Payload<'_>) -> Result<Self, Reply> {
        let consistency = match payload.fields.get("consistency") {
            None | Some(Value::Null) => Consistency::Linearizable,
            Some(Value::String(s)) if s == "linearizable" => Consistency::Linearizable,
            Some(Value::String(s)) if s == "serializable" => Consistency::Serializable,
            Some(_) => {
                return Err(Reply::bad_request(
                    "\"consistency\" must be \"linearizable\" or \"serializable\"",
                ))
            }
        };
        Ok(Request::Read { query, consistency })
    }

    /// The action's name, for metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Request::LeaseKeepalive(_) => "lease keepalive",
            Request::Leases => "leases",
            Request::Watch(_) => "watch",
            Request::Write(command) => command.action(),
            Request::Read { query, .. } => query.action(),
        }
    }
}

fn missing(field: &str) -> Reply {
    Reply::bad_request(format!("missing {field} in \"payload\""))
}

/// Refuses a field of `object` that is not in `allowed`, naming it.
fn only_fields(object: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), Reply> {
    match object.keys().find(|field| !allowed.contains(&field.as_str())) {
        None => Ok(()),
        Some(field) if allowed.is_empty() => {
            Err(Reply::bad_request(format!("unknown field {field:?} in {what}; it takes none")))
        }
        Some(field) => Err(Reply::bad_request(format!(
            "unknown field {field:?} in {what}; it takes {}",
            allowed.join(", ")
        ))),
    }
}

/// The payload object, with typed getters that answer the client's mistakes.
struct Payload<'a> {
    /// The payload's fields.
    fields: &'a Map<String, Value>,
    /// The node's limits on keys and values.
    limits: &'a Limits,
}

impl Payload<'_> {
    /// A lease id (16 hex digits), if given.
    fn lease(&self) -> Result<Option<u64>, Reply> {
        match self.fields.get("lease") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => parse_lease(text).map(Some).ok_or_else(|| {
                Reply::bad_request("\"lease\" must be a lease id: 16 hex digits, not all 0")
            }),
            Some(_) => Err(Reply::bad_request("\"lease\" must be a string")),
        }
    }

    fn collection(&self) -> Result<String, Reply> {
        match self.fields.get("collection") {
            Some(Value::String(name)) if name.is_empty() => {
                Err(Reply::bad_request("\"collection\" must not be empty"))
            }
            Some(Value::String(name)) if name.len() > COLLECTION_BYTES_MAX => {
                Err(Reply::bad_request(format!(
                    "\"collection\" is longer than {COLLECTION_BYTES_MAX} bytes"
                )))
            }
            Some(Value::String(name)) => Ok(name.clone()),
            Some(_) => Err(Reply::bad_request("\"collection\" must be a string")),
            None => Err(missing("\"collection\"")),
        }
    }

    /// The key, if given; an empty key is refused.
    fn key(&self) -> Result<Option<String>, Reply> {
        if self.fields.get("key") == Some(&Value::Null) {
            return Err(Reply::bad_request(
                "\"key\" must be a string (leave it out to address the item by its value)",
            ));
        }
        let key = self.key_like("key")?;
        if key.as_deref() == Some("") {
            return Err(Reply::bad_request("\"key\" must not be empty"));
        }
        Ok(key)
    }

    /// The value, if given; `addressed` values (looked up by content) must
    /// not be empty.
    fn value(&self, addressed: bool) -> Result<Option<String>, Reply> {
        let value = self.value_like("value")?;
        if addressed && value.as_deref() == Some("") {
            return Err(Reply::bad_request("\"value\" must not be empty"));
        }
        Ok(value)
    }

    /// `expected` of a cas: a string, or null for "only if absent".
    fn expected(&self) -> Result<Option<String>, Reply> {
        match self.fields.get("expected") {
            Some(Value::Null) => Ok(None),
            Some(Value::String(_)) => self.value_like("expected"),
            Some(_) => Err(Reply::bad_request("\"expected\" must be a string or null")),
            None => Err(missing("\"expected\" (null means absent)")),
        }
    }

    /// A key, or a bound or prefix of keys: at most `key_bytes_max`.
    fn key_like(&self, field: &str) -> Result<Option<String>, Reply> {
        self.optional_string(field, self.limits.key_bytes_max, "--key-bytes-max")
    }

    /// A range bound: a key, or one byte longer (the documented way to page
    /// is to start after the last key returned, followed by `\u0000`).
    fn bound(&self, field: &str) -> Result<Option<String>, Reply> {
        self.optional_string(field, self.limits.key_bytes_max + 1, "--key-bytes-max, plus one")
    }

    /// A value: at most `value_bytes_max`.
    fn value_like(&self, field: &str) -> Result<Option<String>, Reply> {
        self.optional_string(field, self.limits.value_bytes_max, "--value-bytes-max")
    }

    fn optional_string(
        &self,
        field: &str,
        bytes_max: usize,
        setting: &str,
    ) -> Result<Option<String>, Reply> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > bytes_max => Err(Reply::error(
                413,
                format!(
                    "\"{field}\" is {} bytes, over the limit of {bytes_max} bytes ({setting})",
                    s.len()
                ),
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Reply::bad_request(format!("\"{field}\" must be a string"))),
        }
    }
}
