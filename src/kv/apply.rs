//! Applying a committed command to the state file: deterministic, so every
//! replica ends in the same state and gives the same answer.

use rdb_storage::btree::WriteTxn;

use super::command::Command;
use super::outcome::{Missing, Outcome};
use super::{data_tree, index_tree, value_hash};

/// Applies `command` inside `txn` and returns what it found for the client.
/// A storage error means the state file cannot be trusted: the node stops.
pub fn apply(txn: &mut WriteTxn<'_>, command: &Command) -> rdb_storage::Result<Outcome> {
    match command {
        Command::PutValue { collection, key, value } => put_value(txn, collection, key, value),
        Command::PutKey { collection, key, value } => {
            put_key(txn, collection, key, value)?;
            Ok(Outcome::item(collection, key, value))
        }
        Command::DeleteValue { collection, value } => {
            let Some(key) = txn.get(&index_tree(collection), &value_hash(value))? else {
                return Ok(Outcome::not_found(collection, Missing::Value));
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            delete_key(txn, collection, &key)?;
            Ok(Outcome::item(collection, &key, value))
        }
        Command::DeleteKey { collection, key } => match delete_key(txn, collection, key)? {
            Some(old) => Ok(Outcome::item(collection, key, &old)),
            None => Ok(Outcome::not_found(collection, Missing::Key)),
        },
        Command::Cas { collection, key, expected, value } => {
            let current = txn.get(&data_tree(collection), key.as_bytes())?;
            let current = current.map(|v| String::from_utf8_lossy(&v).into_owned());
            if current != *expected {
                let (collection, key) = (collection.clone(), key.clone());
                return Ok(Outcome::CasMismatch { collection, key, current });
            }
            put_key(txn, collection, key, value)?;
            Ok(Outcome::item(collection, key, value))
        }
        Command::Drop { collection } => {
            if !txn.drop_tree(&data_tree(collection))? {
                return Ok(Outcome::not_found(collection, Missing::Collection));
            }
            txn.drop_tree(&index_tree(collection))?;
            Ok(Outcome::Dropped { collection: collection.clone() })
        }
    }
}

fn put_value(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
    value: &str,
) -> rdb_storage::Result<Outcome> {
    let hash = value_hash(value);
    if let Some(existing) = txn.get(&index_tree(collection), &hash)? {
        return Ok(Outcome::item(collection, &String::from_utf8_lossy(&existing), value));
    }
    // The proposer's key is 256 random bits; should it ever be taken, every
    // replica sees the same and refuses the same way.
    if txn.get(&data_tree(collection), key.as_bytes())?.is_some() {
        return Ok(Outcome::KeyTaken);
    }
    put_key(txn, collection, key, value)?;
    Ok(Outcome::item(collection, key, value))
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
