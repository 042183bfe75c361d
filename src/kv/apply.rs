//! Applying a committed command to the state file: deterministic, so every
//! replica ends in the same state and gives the same answer.

use rdb_storage::btree::WriteTxn;
use serde_json::json;

use super::command::Command;
use super::reply::Reply;
use super::{data_tree, index_tree, value_hash};

/// Applies `command` inside `txn` and returns the answer for the client. A
/// storage error means the state file cannot be trusted: the node stops.
pub fn apply(txn: &mut WriteTxn<'_>, command: &Command) -> rdb_storage::Result<Reply> {
    match command {
        Command::PutValue { collection, key, value } => put_value(txn, collection, key, value),
        Command::PutKey { collection, key, value } => {
            put_key(txn, collection, key, value)?;
            Ok(Reply::item(collection, key, value))
        }
        Command::DeleteValue { collection, value } => {
            let Some(key) = txn.get(&index_tree(collection), &value_hash(value))? else {
                return Ok(Reply::not_found(collection, "value"));
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            delete_key(txn, collection, &key)?;
            Ok(Reply::item(collection, &key, value))
        }
        Command::DeleteKey { collection, key } => match delete_key(txn, collection, key)? {
            Some(old) => Ok(Reply::item(collection, key, &old)),
            None => Ok(Reply::not_found(collection, "key")),
        },
        Command::Cas { collection, key, expected, value } => {
            let current = txn.get(&data_tree(collection), key.as_bytes())?;
            let current = current.map(|v| String::from_utf8_lossy(&v).into_owned());
            if current != *expected {
                return Ok(Reply {
                    status: 409,
                    body: json!({"error": "the current value is not the expected one",
                                 "collection": collection, "key": key, "value": current}),
                });
            }
            put_key(txn, collection, key, value)?;
            Ok(Reply::item(collection, key, value))
        }
        Command::Drop { collection } => {
            if !txn.drop_tree(&data_tree(collection))? {
                return Ok(Reply::not_found(collection, "collection"));
            }
            txn.drop_tree(&index_tree(collection))?;
            Ok(Reply::item(collection, "", "dropped"))
        }
    }
}

fn put_value(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
    value: &str,
) -> rdb_storage::Result<Reply> {
    let hash = value_hash(value);
    if let Some(existing) = txn.get(&index_tree(collection), &hash)? {
        return Ok(Reply::item(collection, &String::from_utf8_lossy(&existing), value));
    }
    // The proposer's key is 256 random bits; should it ever be taken, every
    // replica sees the same and refuses the same way.
    if txn.get(&data_tree(collection), key.as_bytes())?.is_some() {
        return Ok(Reply::unavailable("the chosen key is taken; retry"));
    }
    put_key(txn, collection, key, value)?;
    Ok(Reply::item(collection, key, value))
}

/// Sets `key` to `value` and keeps the value index pointing at a key that
/// holds each value (the first one that did, while it does).
fn put_key(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
    value: &str,
) -> rdb_storage::Result<()> {
    let (data, index) = (data_tree(collection), index_tree(collection));
    txn.create_tree(&data)?;
    txn.create_tree(&index)?;
    if let Some(old) = txn.get(&data, key.as_bytes())? {
        unindex(txn, &index, &old, key)?;
    }
    txn.put(&data, key.as_bytes(), value.as_bytes())?;
    let hash = value_hash(value);
    if txn.get(&index, &hash)?.is_none() {
        txn.put(&index, &hash, key.as_bytes())?;
    }
    Ok(())
}

/// Removes `key`, and its value's index entry if it points at `key`.
fn delete_key(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
) -> rdb_storage::Result<Option<String>> {
    let Some(old) = txn.delete(&data_tree(collection), key.as_bytes())? else {
        return Ok(None);
    };
    unindex(txn, &index_tree(collection), &old, key)?;
    Ok(Some(String::from_utf8_lossy(&old).into_owned()))
}

fn unindex(txn: &mut WriteTxn<'_>, index: &str, old: &[u8], key: &str) -> rdb_storage::Result<()> {
    let hash = value_hash(&String::from_utf8_lossy(old));
    if txn.get(index, &hash)?.as_deref() == Some(key.as_bytes()) {
        txn.delete(index, &hash)?;
    }
    Ok(())
}
