//! `rdb put|get|delete|cas|range|collections|drop`: the API's actions
//! (docs/API.md) from the command line, through any node, trying the next
//! endpoint when one cannot be reached or answers 503 (nothing happened
//! there); a write whose request may have arrived is never sent again.
//!
//! Text output is for people: an item as `KEY<TAB>VALUE`, a range one item
//! per line, collections one per line. `--json` prints the node's answer.
//! Exit codes: 0 done, 1 not found or a cas mismatch, 2 a bad request or
//! bad flags, 3 no node could answer (or a write's outcome is unknown: read
//! before retrying it).

use serde_json::{json, Value};

use super::client::{Client, ClientArgs, ClientError};

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before it (the default).
    Linearizable,
    /// From the receiving node's state at once: faster, possibly stale.
    Serializable,
}

/// The key-value subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KvCmd {
    /// Put VALUE under KEY (insert or overwrite); without KEY, store VALUE
    /// under a new key chosen by the cluster (rdbv2's value-addressed put)
    /// and print it.
    #[command(override_usage = "rdb put [OPTIONS] <COLLECTION> [KEY] <VALUE>")]
    Put {
        /// The collection.
        collection: String,
        /// [KEY] VALUE.
        #[arg(num_args = 1..=2, required = true, value_names = ["KEY", "VALUE"])]
        key_value: Vec<String>,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the item under KEY (or holding --value).
    Get {
        /// The collection.
        collection: String,
        /// The key.
        #[arg(value_name = "KEY", required_unless_present = "value", conflicts_with = "value")]
        item_key: Option<String>,
        /// Look the item up by its value instead.
        #[arg(long)]
        value: Option<String>,
        /// How the read is served.
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete the item under KEY (or holding --value) and print it, or
    /// every key of a range (--prefix, --start, --end) and print how many.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true)
        .args(["item_key", "value", "prefix", "start", "end"])))]
    Delete {
        /// The collection.
        collection: String,
        /// The key.
        #[arg(value_name = "KEY", conflicts_with_all = ["value", "prefix", "start", "end"])]
        item_key: Option<String>,
        /// Delete the item holding this value instead.
        #[arg(long, conflicts_with_all = ["prefix", "start", "end"])]
        value: Option<String>,
        /// Delete every key starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Delete keys from this one (included).
        #[arg(long)]
        start: Option<String>,
        /// Delete keys before this one (excluded).
        #[arg(long)]
        end: Option<String>,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put VALUE under KEY only if its value is --expected (or, with
    /// --absent, only if it has none); otherwise exit 1 printing the
    /// current value.
    #[command(group(clap::ArgGroup::new("condition").required(true).multiple(false)))]
    Cas {
        /// The collection.
        collection: String,
        /// The key.
        #[arg(value_name = "KEY")]
        item_key: String,
        /// The new value.
        value: String,
        /// The value KEY must hold now.
        #[arg(long, group = "condition")]
        expected: Option<String>,
        /// The mod_revision KEY must have now (0: absent).
        #[arg(long, group = "condition")]
        expected_revision: Option<u64>,
        /// KEY must hold nothing now.
        #[arg(long, group = "condition")]
        absent: bool,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the items of a collection in key order.
    Range {
        /// The collection.
        collection: String,
        /// Keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// From this key (included).
        #[arg(long)]
        start: Option<String>,
        /// Up to this key (excluded).
        #[arg(long)]
        end: Option<String>,
        /// At most this many items (1 to 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// How the read is served.
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the names of the collections.
    Collections {
        /// How the read is served.
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drop a collection and everything in it.
    Drop {
        /// The collection.
        collection: String,
        /// Where the cluster is, and how to answer.
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl KvCmd {
    /// The client settings of the command.
    fn client_args(&self) -> &ClientArgs {
        match self {
            KvCmd::Put { client, .. }
            | KvCmd::Get { client, .. }
            | KvCmd::Delete { client, .. }
            | KvCmd::Cas { client, .. }
            | KvCmd::Range { client, .. }
            | KvCmd::Collections { client, .. }
            | KvCmd::Drop { client, .. } => client,
        }
    }

    /// The request body (docs/API.md, POST /command).
    pub fn command(&self) -> Value {
        let consistency = |c: &ReadConsistency| match c {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Serializable => "serializable",
        };
        let by = |key: &Option<String>, value: &Option<String>| match (key, value) {
            (Some(key), _) => json!({"key": key}),
            (None, value) => json!({"value": value}),
        };
        let (action, mut payload) = match self {
            KvCmd::Put { collection, key_value, .. } => match key_value.as_slice() {
                [key, value] => {
                    ("put", json!({"collection": collection, "key": key, "value": value}))
                }
                [value, ..] => ("put", json!({"collection": collection, "value": value})),
                [] => ("put", json!({"collection": collection})),
            },
            KvCmd::Get { item_key, value, consistency: c, .. } => {
                let mut payload = by(item_key, value);
                payload["consistency"] = json!(consistency(c));
                ("get", payload)
            }
            KvCmd::Delete { item_key, value, prefix, start, end, .. } => {
                let mut payload = json!({});
                if item_key.is_some() || value.is_some() {
                    payload = by(item_key, value);
                }
                for (name, field) in [("prefix", prefix), ("start", start), ("end", end)] {
                    if let Some(field) = field {
                        payload[name] = json!(field);
                    }
                }
                ("delete", payload)
            }
            KvCmd::Cas { item_key, value, expected_revision: Some(revision), .. } => {
                ("cas", json!({"key": item_key, "value": value, "expected_revision": revision}))
            }
            KvCmd::Cas { item_key, value, expected, .. } => {
                ("cas", json!({"key": item_key, "value": value, "expected": expected}))
            }
            KvCmd::Range { prefix, start, end, limit, consistency: c, .. } => {
                let mut payload = json!({"limit": limit, "consistency": consistency(c)});
                for (name, field) in [("prefix", prefix), ("start", start), ("end", end)] {
                    if let Some(field) = field {
                        payload[name] = json!(field);
                    }
                }
                ("range", payload)
            }
            KvCmd::Collections { consistency: c, .. } => {
                ("list collections", json!({"consistency": consistency(c)}))
            }
            KvCmd::Drop { .. } => ("drop collection", json!({})),
        };
        if let Some(collection) = self.collection() {
            payload["collection"] = json!(collection);
        }
        json!({"action": action, "payload": payload})
    }

    /// Whether the command changes the state (and must not be sent twice).
    pub fn is_write(&self) -> bool {
        !matches!(self, KvCmd::Get { .. } | KvCmd::Range { .. } | KvCmd::Collections { .. })
    }

    fn collection(&self) -> Option<&str> {
        match self {
            KvCmd::Put { collection, .. }
            | KvCmd::Get { collection, .. }
            | KvCmd::Delete { collection, .. }
            | KvCmd::Cas { collection, .. }
            | KvCmd::Range { collection, .. }
            | KvCmd::Drop { collection, .. } => Some(collection),
            KvCmd::Collections { .. } => None,
        }
    }
}

/// Runs a key-value subcommand; what to print.
pub fn run(command: &KvCmd) -> Result<String, ClientError> {
    let args = command.client_args();
    let client = Client::new(args)?;
    let body = command.command();
    let (status, answer) = if command.is_write() {
        client.write("POST", "/command", Some(&body))?
    } else {
        client.request("POST", "/command", Some(&body))?
    };
    let error = answer["error"].as_str().map_or_else(|| answer.to_string(), str::to_string);
    match status {
        200 if args.json => Ok(answer.to_string()),
        200 => Ok(text(command, &answer)),
        404 => Err(ClientError::Refused(error)),
        // The space guard: a definite no until space is freed, not a retry.
        507 => Err(ClientError::Refused(format!("{status}: {error}"))),
        409 => Err(ClientError::Refused(format!("{error}: it holds {}", answer["value"]))),
        400 | 405 | 413 => Err(ClientError::Usage(format!("{status}: {error}"))),
        _ => Err(ClientError::Unavailable(format!("{status}: {error}"))),
    }
}

/// The text output of a successful answer.
fn text(command: &KvCmd, answer: &Value) -> String {
    let item = |item: &Value| {
        format!("{}\t{}", item["key"].as_str().unwrap_or(""), item["value"].as_str().unwrap_or(""))
    };
    match command {
        KvCmd::Range { .. } => {
            let mut lines: Vec<String> =
                answer["items"].as_array().into_iter().flatten().map(item).collect();
            if answer["more"].as_bool() == Some(true) {
                lines.push(
                    "(more: repeat with --start set to the last key, which comes again)".into(),
                );
            }
            lines.join("\n")
        }
        KvCmd::Collections { .. } => {
            let names = answer["collections"].as_array().into_iter().flatten();
            names.filter_map(Value::as_str).collect::<Vec<_>>().join("\n")
        }
        KvCmd::Drop { collection, .. } => format!("dropped {collection}"),
        KvCmd::Delete { .. } if answer.get("deleted").is_some() => {
            let more = if answer["more"] == true { " (more remain: repeat)" } else { "" };
            format!("deleted {}{more}", answer["deleted"])
        }
        _ => item(answer),
    }
}
