//! The reads: answered from a read transaction of the state file, on the
//! thread that serves the request.

use rdb_storage::btree::{KeyRange, ReadTxn, WriteTxn};

use super::item;
use super::outcome::{Missing, Outcome};
use super::{data_tree, index_tree, keeps_value_index, key_range, value_hash};

/// A read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Look a value up.
    GetValue {
        /// The collection.
        collection: String,
        /// The value.
        value: String,
    },
    /// Read by key.
    GetKey {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
    },
    /// Keys in order.
    Range {
        /// The collection.
        collection: String,
        /// The first key included.
        start: Option<String>,
        /// The first key excluded.
        end: Option<String>,
        /// Keys must start with this.
        prefix: Option<String>,
        /// At most this many items.
        limit: usize,
    },
    /// The names of all collections.
    ListCollections,
}

impl Query {
    /// The API action, for metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Query::GetValue { .. } | Query::GetKey { .. } => "get",
            Query::Range { .. } => "range",
            Query::ListCollections => "list collections",
        }
    }

    /// Answers the query from `txn`. A storage error is returned as such:
    /// the caller reports it, since the state file cannot be trusted.
    pub fn run(&self, txn: &ReadTxn) -> rdb_storage::Result<Outcome> {
        match self {
            Query::GetKey { collection, key } => {
                match txn.get(&data_tree(collection), key.as_bytes())? {
                    Some(stored) => {
                        let (revisions, value) = item::decode(stored);
                        Ok(Outcome::item_at(collection, key, &text(value), revisions))
                    }
                    None => {
                        Ok(Outcome::not_found(collection, missing(txn, collection, Missing::Key)?))
                    }
                }
            }
            Query::GetValue { collection, value } => {
                let found = txn.get(&index_tree(collection), &value_hash(value))?;
                let Some(key) = found else {
                    if !keeps_value_index(collection, |tree| txn.tree_exists(tree))? {
                        return Ok(Outcome::NoValueIndex { collection: collection.clone() });
                    }
                    let why = missing(txn, collection, Missing::Value)?;
                    return Ok(Outcome::not_found(collection, why));
                };
                let key = text(key);
                let stored = txn.get(&data_tree(collection), key.as_bytes())?;
                let revisions = stored.map(|stored| item::decode(stored).0).unwrap_or_default();
                Ok(Outcome::item_at(collection, &key, value, revisions))
            }
            Query::Range { collection, start, end, prefix, limit } => {
                let range = key_range(start, end, prefix);
                range_items(txn, collection, &range, *limit)
            }
            Query::ListCollections => {
                let mut names: Vec<String> = txn
                    .list_trees()?
                    .into_iter()
                    .filter_map(|tree| tree.strip_prefix("d/").map(str::to_string))
                    .collect();
                names.sort();
                Ok(Outcome::Collections(names))
            }
        }
    }
}

fn range_items(
    txn: &ReadTxn,
    collection: &str,
    range: &KeyRange,
    limit: usize,
) -> rdb_storage::Result<Outcome> {
    let tree = data_tree(collection);
    if !txn.tree_exists(&tree)? {
        return Ok(Outcome::not_found(collection, Missing::Collection));
    }
    let mut items = Vec::new();
    let mut more = false;
    for item in txn.range(&tree, range)? {
        let (key, value) = item?;
        if items.len() == limit {
            more = true;
            break;
        }
        let (revisions, value) = item::decode(value);
        items.push((text(key), text(value), revisions));
    }
    Ok(Outcome::Items { collection: collection.to_string(), items, more })
}

impl Query {
    /// Answers the query inside a write transaction (a txn's reads, which
    /// see its earlier writes).
    pub fn run_in(&self, txn: &mut WriteTxn<'_>) -> rdb_storage::Result<Outcome> {
        match self {
            Query::GetKey { collection, key } => {
                match txn.get(&data_tree(collection), key.as_bytes())? {
                    Some(stored) => {
                        let (revisions, value) = item::decode(&stored);
                        Ok(Outcome::item_at(collection, key, &text(value), revisions))
                    }
                    None if !txn.tree_exists(&data_tree(collection))? => {
                        Ok(Outcome::not_found(collection, Missing::Collection))
                    }
                    None => Ok(Outcome::not_found(collection, Missing::Key)),
                }
            }
            Query::Range { collection, start, end, prefix, limit } => {
                let tree = data_tree(collection);
                if !txn.tree_exists(&tree)? {
                    return Ok(Outcome::not_found(collection, Missing::Collection));
                }
                let range = key_range(start, end, prefix);
                let keys = txn.keys(&tree, &range, limit + 1)?;
                let mut more = keys.len() > *limit;
                let mut items = Vec::new();
                let mut bytes = 0;
                for key in keys.into_iter().take(*limit) {
                    if bytes > super::txn::TXN_ANSWER_BYTES_MAX {
                        more = true;
                        break;
                    }
                    let stored = txn.get(&tree, &key)?.unwrap_or_default();
                    let (revisions, value) = item::decode(&stored);
                    bytes += key.len() + value.len();
                    items.push((text(&key), text(value), revisions));
                }
                Ok(Outcome::Items { collection: collection.clone(), items, more })
            }
            Query::GetValue { collection, value } => {
                let Some(key) = txn.get(&index_tree(collection), &value_hash(value))? else {
                    if !keeps_value_index(collection, |tree| txn.tree_exists(tree))? {
                        return Ok(Outcome::NoValueIndex { collection: collection.clone() });
                    }
                    return Ok(Outcome::not_found(collection, Missing::Value));
                };
                let stored = txn.get(&data_tree(collection), &key)?.unwrap_or_default();
                Ok(Outcome::item_at(collection, &text(&key), value, item::decode(&stored).0))
            }
            Query::ListCollections => {
                let mut names: Vec<String> = txn
                    .list_trees()?
                    .into_iter()
                    .filter_map(|tree| tree.strip_prefix("d/").map(str::to_string))
                    .collect();
                names.sort();
                Ok(Outcome::Collections(names))
            }
        }
    }
}

/// What a lookup that found nothing missed: the whole collection, or
/// `what` in it.
fn missing(txn: &ReadTxn, collection: &str, what: Missing) -> rdb_storage::Result<Missing> {
    Ok(if txn.tree_exists(&data_tree(collection))? { what } else { Missing::Collection })
}

/// Stored keys and values are the UTF-8 of JSON strings.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
