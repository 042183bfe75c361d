//! What a command answers: an HTTP status and a JSON body.

use serde_json::{json, Value};

/// The answer to one request, as API.md describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    /// 200 with `{collection, key, value}`.
    pub fn item(collection: &str, key: &str, value: &str) -> Self {
        Reply { status: 200, body: json!({"collection": collection, "key": key, "value": value}) }
    }

    /// An error with status `status` and `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply { status, body: json!({"error": message.into()}) }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::error(400, message)
    }

    /// 404 for an item or collection, with the empty item fields.
    pub fn not_found(collection: &str, what: &str) -> Self {
        Reply {
            status: 404,
            body: json!({"error": format!("{what} not found"), "collection": collection,
                         "key": "", "value": ""}),
        }
    }

    /// 503: no leader or no quorum; the client should retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::error(503, message)
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}
