//! What a command answers over HTTP: a status and a JSON body, as API.md
//! gives them; [`Reply::from`] maps the state machine's [`Outcome`] to it.

use serde_json::{json, Value};

use super::item::Revisions;
use super::outcome::Outcome;

/// Adds an item's revisions to its JSON.
fn add_revisions(item: &mut Value, revisions: Revisions) {
    item["create_revision"] = revisions.create_revision.into();
    item["mod_revision"] = revisions.mod_revision.into();
    item["version"] = revisions.version.into();
}

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

    /// 400 for a value-addressed action on a collection without a value
    /// index.
    fn no_value_index(collection: String) -> Self {
        let error = format!(
            "collection {collection:?} keeps no value index (a key-addressed write made it, or its \
             index was dropped): find its items by key, or keep values in a collection made by a \
             value-addressed put"
        );
        Reply { status: 400, body: json!({"error": error, "collection": collection}) }
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

    /// Adds the cluster's `revision` at the time of the answer to a 200 or
    /// 409 body (the entry's index for a write, the applied index for a
    /// read).
    pub fn with_revision(mut self, revision: u64) -> Self {
        if matches!(self.status, 200 | 409) && self.body.is_object() {
            self.body["revision"] = revision.into();
        }
        self
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

impl From<Outcome> for Reply {
    /// API.md's answer to each outcome (its strings moved, not copied: this
    /// runs once per applied write).
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Item { collection, key, value, revisions } => {
                let mut body = json!({"collection": collection, "key": key, "value": value});
                add_revisions(&mut body, revisions);
                Reply { status: 200, body }
            }
            Outcome::Deleted { collection, deleted, more, .. } => Reply {
                status: 200,
                body: json!({"collection": collection, "deleted": deleted, "more": more}),
            },
            Outcome::TooLarge { bytes, max } => Reply::error(
                413,
                format!("the item takes {bytes} bytes, over the state file's limit of {max}"),
            ),
            Outcome::NeedsVersion { needed, current } => Reply::unavailable(format!(
                "the cluster runs at version {current} and this needs {needed}: every member \
                 must run a binary that supports it (the leader raises the version by itself \
                 once they all do)"
            )),
            Outcome::Dropped { collection } => Reply::item(&collection, "", "dropped"),
            Outcome::ValueIndexDropped { collection } => {
                Reply::item(&collection, "", "value index dropped")
            }
            Outcome::NotFound { collection, missing } => {
                Reply::not_found(&collection, missing.noun())
            }
            Outcome::CasMismatch { collection, key, current, mod_revision } => Reply {
                status: 409,
                body: json!({"error": "the current value is not the expected one",
                             "collection": collection, "key": key, "value": current,
                             "mod_revision": mod_revision}),
            },
            Outcome::KeyTaken => Reply::unavailable("the chosen key is taken; retry"),
            Outcome::Items { collection, items, more } => {
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|(key, value, revisions)| {
                        let mut item = json!({"key": key, "value": value});
                        add_revisions(&mut item, revisions);
                        item
                    })
                    .collect();
                Reply {
                    status: 200,
                    body: json!({"collection": collection, "items": items, "more": more}),
                }
            }
            Outcome::Txn { succeeded, results } => {
                let results: Vec<Value> = results
                    .into_iter()
                    .map(|outcome| {
                        let reply = Reply::from(outcome);
                        let mut body = reply.body;
                        body["status"] = reply.status.into();
                        body
                    })
                    .collect();
                Reply { status: 200, body: json!({"succeeded": succeeded, "results": results}) }
            }
            Outcome::Lease { id, ttl_ms } => Reply {
                status: 200,
                body: json!({"lease": super::lease::lease_text(id), "ttl_ms": ttl_ms}),
            },
            Outcome::LeaseRevoked { id, removed } => Reply {
                status: 200,
                body: json!({"lease": super::lease::lease_text(id), "deleted": removed.len()}),
            },
            Outcome::Malformed(why) => Reply::bad_request(why),
            Outcome::NoValueIndex { collection } => Reply::no_value_index(collection),
            Outcome::LimitReached(what) => {
                Reply::error(409, format!("the limit on {what} is reached; nothing changed"))
            }
            Outcome::Collections(names) => Reply {
                status: 200,
                body: json!({"collection": "", "key": "", "value": names.join(", "),
                             "collections": names}),
            },
        }
    }
}
