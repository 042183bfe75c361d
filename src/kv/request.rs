//! Parsing and checking a POST /command body. Everything a client can get
//! wrong is refused here, with the status API.md gives, before the request
//! reaches the log.

use serde_json::{Map, Value};

use super::command::{new_key, Command};
use super::query::Query;
use super::reply::Reply;
use super::{
    COLLECTION_BYTES_MAX, KEY_BYTES_MAX, RANGE_LIMIT_DEFAULT, RANGE_LIMIT_MAX, VALUE_BYTES_MAX,
};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the request (ReadIndex).
    Linearizable,
    /// The receiving node's applied state, possibly stale.
    Serializable,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
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
    /// Parses a request body; the error is the answer to give the client.
    pub fn parse(body: &[u8]) -> Result<Self, Reply> {
        let root: Value = serde_json::from_slice(body)
            .map_err(|e| Reply::bad_request(format!("malformed JSON: {e}")))?;
        let Value::Object(root) = root else {
            return Err(Reply::bad_request("the body must be a JSON object"));
        };
        let action = match root.get("action") {
            Some(Value::String(action)) => action.as_str(),
            Some(_) => return Err(Reply::bad_request("\"action\" must be a string")),
            None => return Err(Reply::bad_request("missing \"action\"")),
        };
        let empty = Map::new();
        let payload = match root.get("payload") {
            Some(Value::Object(payload)) => payload,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(Reply::bad_request("\"payload\" must be an object")),
        };
        Self::from_action(action, &Payload(payload))
    }

    fn from_action(action: &str, payload: &Payload<'_>) -> Result<Self, Reply> {
        match action {
            "put" => Self::put(payload),
            "get" => Self::get(payload),
            "delete" => Self::delete(payload),
            "cas" => Ok(Request::Write(Command::Cas {
                collection: payload.collection()?,
                key: payload.key()?.ok_or_else(|| missing("key"))?,
                expected: payload.expected()?,
                value: payload.value(false)?.ok_or_else(|| missing("value"))?,
            })),
            "drop collection" => {
                Ok(Request::Write(Command::Drop { collection: payload.collection()? }))
            }
            "list collections" => Self::read(Query::ListCollections, payload),
            "range" => Self::range(payload),
            other => Err(Reply::bad_request(format!("unknown action {other:?}"))),
        }
    }

    fn put(payload: &Payload<'_>) -> Result<Self, Reply> {
        let collection = payload.collection()?;
        let key = payload.key()?;
        let value = payload.value(key.is_none())?.ok_or_else(|| missing("value"))?;
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

    fn delete(payload: &Payload<'_>) -> Result<Self, Reply> {
        let collection = payload.collection()?;
        Ok(Request::Write(match payload.key()? {
            Some(key) => Command::DeleteKey { collection, key },
            None => Command::DeleteValue {
                collection,
                value: payload.value(true)?.ok_or_else(|| missing("key or value"))?,
            },
        }))
    }

    fn range(payload: &Payload<'_>) -> Result<Self, Reply> {
        let limit = match payload.0.get("limit") {
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
            start: payload.optional_string("start", KEY_BYTES_MAX)?,
            end: payload.optional_string("end", KEY_BYTES_MAX)?,
            prefix: payload.optional_string("prefix", KEY_BYTES_MAX)?,
            limit,
        };
        Self::read(query, payload)
    }

    fn read(query: Query, payload: &Payload<'_>) -> Result<Self, Reply> {
        let consistency = match payload.0.get("consistency") {
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
            Request::Write(command) => command.action(),
            Request::Read { query, .. } => query.action(),
        }
    }
}

fn missing(field: &str) -> Reply {
    Reply::bad_request(format!("missing {field} in \"payload\""))
}

/// The payload object, with typed getters that answer the client's mistakes.
struct Payload<'a>(&'a Map<String, Value>);

impl Payload<'_> {
    fn collection(&self) -> Result<String, Reply> {
        match self.0.get("collection") {
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
        let key = self.optional_string("key", KEY_BYTES_MAX)?;
        if key.as_deref() == Some("") {
            return Err(Reply::bad_request("\"key\" must not be empty"));
        }
        Ok(key)
    }

    /// The value, if given; `addressed` values (looked up by content) must
    /// not be empty.
    fn value(&self, addressed: bool) -> Result<Option<String>, Reply> {
        let value = self.optional_string("value", VALUE_BYTES_MAX)?;
        if addressed && value.as_deref() == Some("") {
            return Err(Reply::bad_request("\"value\" must not be empty"));
        }
        Ok(value)
    }

    /// `expected` of a cas: a string, or null for "only if absent".
    fn expected(&self) -> Result<Option<String>, Reply> {
        match self.0.get("expected") {
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > VALUE_BYTES_MAX => Err(too_large("expected")),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Reply::bad_request("\"expected\" must be a string or null")),
            None => Err(missing("\"expected\" (null means absent)")),
        }
    }

    fn optional_string(&self, field: &str, bytes_max: usize) -> Result<Option<String>, Reply> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > bytes_max => Err(too_large(field)),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Reply::bad_request(format!("\"{field}\" must be a string"))),
        }
    }
}

fn too_large(field: &str) -> Reply {
    let max = if field == "key" || field == "start" || field == "end" || field == "prefix" {
        KEY_BYTES_MAX
    } else {
        VALUE_BYTES_MAX
    };
    Reply::error(413, format!("\"{field}\" is larger than {max} bytes"))
}
