//! Applying a committed command to the state file: deterministic, so every
//! replica ends in the same state and gives the same answer. What a command
//! does depends only on the state file, the entry and its index (the
//! revision), and the cluster version recorded in the state file.

use rdb_storage::btree::{KeyRange, ReadTxn, WriteTxn};

use super::command::Command;
use super::item::{self, Revisions};
use super::lease;
use super::outcome::{Missing, Outcome};
use super::txn::TXN_ANSWER_BYTES_MAX;
use super::{data_tree, index_tree, keeps_value_index, key_range, value_hash};

/// The tree of the state machine's own metadata (no collection can name
/// it: collections live in `d/` and `i/` trees).
const KV_TREE: &str = "s/kv";
/// The key of the cluster version in [`KV_TREE`].
const CLUSTER_VERSION_KEY: &[u8] = b"cluster_version";

/// Keys one range delete removes at most (one entry's work stays bounded);
/// the answer says when more remain, and the client repeats.
pub const DELETE_RANGE_KEYS_MAX: usize = 100_000;

/// Where in the log a command is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applying {
    /// The entry's index: the revision of what it changes.
    pub revision: u64,
    /// The cluster version the state file records before this entry.
    pub cluster_version: u64,
}

/// The cluster version recorded in the state file (1 when none is: a state
/// file from before versions were recorded).
pub fn cluster_version(txn: &ReadTxn) -> rdb_storage::Result<u64> {
    Ok(txn.get(KV_TREE, CLUSTER_VERSION_KEY)?.map_or(1, decode_version))
}

/// Records `version` (a new cluster's first state, or a
/// [`Command::SetClusterVersion`]).
pub fn set_cluster_version(txn: &mut WriteTxn<'_>, version: u64) -> rdb_storage::Result<()> {
    txn.create_tree(KV_TREE)?;
    txn.put(KV_TREE, CLUSTER_VERSION_KEY, &version.to_le_bytes())
}

fn decode_version(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(1, u64::from_le_bytes)
}

/// Applies `command` inside `txn` and returns what it found for the client.
/// A storage error means the state file cannot be trusted: the node stops.
pub fn apply(
    txn: &mut WriteTxn<'_>,
    command: &Command,
    at: Applying,
) -> rdb_storage::Result<Outcome> {
    let needed = command.cluster_version_needed();
    if needed > at.cluster_version && !matches!(command, Command::SetClusterVersion { .. }) {
        return Ok(Outcome::NeedsVersion { needed, current: at.cluster_version });
    }
    // Revisions are stored from version 2 on, by every replica alike.
    let revision = (at.cluster_version >= 2).then_some(at.revision);
    match command {
        Command::PutValue { collection, key, value } => {
            put_value(txn, collection, key, value, revision)
        }
        Command::PutKey { collection, key, value } => {
            put_key(txn, (collection, key, value), Writing::by_key(revision, 0, at))
        }
        Command::DeleteValue { collection, value } => {
            if !keeps_value_index(collection, |tree| txn.tree_exists(tree))? {
                return Ok(Outcome::NoValueIndex { collection: collection.clone() });
            }
            let Some(key) = txn.get(&index_tree(collection), &value_hash(value))? else {
                return Ok(Outcome::not_found(collection, Missing::Value));
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            let (revisions, _) = delete_key(txn, collection, &key)?.unwrap_or_default();
            Ok(Outcome::item_at(collection, &key, value, revisions))
        }
        Command::DeleteKey { collection, key } => match delete_key(txn, collection, key)? {
            Some((revisions, old)) => Ok(Outcome::item_at(collection, key, &old, revisions)),
            None => Ok(Outcome::not_found(collection, Missing::Key)),
        },
        Command::Cas { collection, key, expected, value } => {
            let current = current(txn, collection, key)?;
            if current.as_ref().map(|(_, value)| value) != expected.as_ref() {
                return Ok(mismatch(collection, key, current));
            }
            put_key(txn, (collection, key, value), Writing::by_key(revision, 0, at))
        }
        Command::CasRevision { collection, key, expected_revision, value } => {
            let current = current(txn, collection, key)?;
            if !revision_matches(current.as_ref(), *expected_revision) {
                return Ok(mismatch(collection, key, current));
            }
            put_key(txn, (collection, key, value), Writing::by_key(revision, 0, at))
        }
        Command::Drop { collection } => {
            if !txn.drop_tree(&data_tree(collection))? {
                return Ok(Outcome::not_found(collection, Missing::Collection));
            }
            txn.drop_tree(&index_tree(collection))?;
            Ok(Outcome::Dropped { collection: collection.clone() })
        }
        Command::DropValueIndex { collection } => {
            if !txn.tree_exists(&data_tree(collection))? {
                return Ok(Outcome::not_found(collection, Missing::Collection));
            }
            if !txn.drop_tree(&index_tree(collection))? {
                return Ok(Outcome::not_found(collection, Missing::ValueIndex));
            }
            Ok(Outcome::ValueIndexDropped { collection: collection.clone() })
        }
        Command::DeleteRange { collection, start, end, prefix } => {
            let range = key_range(start, end, prefix);
            delete_range(txn, collection, &range)
        }
        Command::Txn(text) => match super::request::parse_txn(text) {
            Ok(spec) => apply_txn(txn, &spec, at),
            // Checked before it was proposed: only a damaged entry could
            // fail here, and every replica refuses it alike.
            Err(why) => Ok(Outcome::Malformed(why)),
        },
        Command::LeaseGrant { id, ttl_ms } => Ok(match lease::grant(txn, *id, *ttl_ms)? {
            true => Outcome::Lease { id: *id, ttl_ms: *ttl_ms },
            false => Outcome::LimitReached("leases"),
        }),
        Command::LeaseRevoke { id } => revoke_lease(txn, *id),
        Command::PutLeased { collection, key, value, lease: id, expected_revision } => {
            let writing = Writing::by_key(revision, *id, at);
            put_leased(txn, (collection, key, value), writing, *expected_revision)
        }
        Command::SetClusterVersion { version } => {
            // Never lowered: a stale proposal changes nothing.
            let version = (*version).max(at.cluster_version);
            set_cluster_version(txn, version)?;
            Ok(Outcome::item("", "cluster_version", &version.to_string()))
        }
    }
}

/// A put attached to lease `id` (which must exist), if `expected_revision`
/// (when given) is the key's mod_revision (0: absent).
fn put_leased(
    txn: &mut WriteTxn<'_>,
    (collection, key, value): (&str, &str, &str),
    writing: Writing,
    expected_revision: Option<u64>,
) -> rdb_storage::Result<Outcome> {
    if lease::ttl_ms(txn, writing.lease)?.is_none() {
        return Ok(Outcome::not_found("", Missing::Lease));
    }
    if let Some(expected) = expected_revision {
        let current = current(txn, collection, key)?;
        if !revision_matches(current.as_ref(), expected) {
            return Ok(mismatch(collection, key, current));
        }
    }
    put_key(txn, (collection, key, value), writing)
}

/// Removes lease `id` and deletes the keys it holds.
fn revoke_lease(txn: &mut WriteTxn<'_>, id: u64) -> rdb_storage::Result<Outcome> {
    let Some(held) = lease::revoke(txn, id)? else {
        return Ok(Outcome::not_found("", Missing::Lease));
    };
    let mut removed = Vec::with_capacity(held.len());
    for (collection, key) in held {
        // Only if the key still holds this lease (it is detached otherwise).
        let stored = txn.get(&data_tree(&collection), key.as_bytes())?;
        if stored.as_deref().map(lease::lease_of) == Some(id) {
            if let Some((revisions, value)) = delete_key(txn, &collection, &key)? {
                removed.push((collection, key, value, revisions));
            }
        }
    }
    Ok(Outcome::LeaseRevoked { id, removed })
}

/// Bytes of keys and values in an outcome.
fn outcome_bytes(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Item { key, value, .. } => key.len() + value.len(),
        Outcome::Items { items, .. } => items.iter().map(|(k, v, _)| k.len() + v.len()).sum(),
        _ => 0,
    }
}

/// Runs a txn's compares, then its success or failure operations. A put on
/// a lease that does not exist fails the whole txn before anything changes
/// (as etcd's does), and so does a delete by value in a collection that
/// keeps no value index (as the state was before the txn).
fn apply_txn(
    txn: &mut WriteTxn<'_>,
    spec: &super::request::Txn,
    at: Applying,
) -> rdb_storage::Result<Outcome> {
    let succeeded =
        spec.holds(|collection, key| txn.get(&data_tree(collection), key.as_bytes()))?;
    let ops = if succeeded { &spec.success } else { &spec.failure };
    for op in ops {
        match op {
            super::Request::Write(Command::PutLeased { lease: id, .. })
                if lease::ttl_ms(txn, *id)?.is_none() =>
            {
                return Ok(Outcome::not_found("", Missing::Lease));
            }
            super::Request::Write(Command::DeleteValue { collection, .. })
                if !keeps_value_index(collection, |tree| txn.tree_exists(tree))? =>
            {
                return Ok(Outcome::NoValueIndex { collection: collection.clone() });
            }
            _ => {}
        }
    }
    let mut results = Vec::with_capacity(ops.len());
    let mut answer_bytes = 0usize;
    for op in ops {
        let outcome = match op {
            super::Request::Write(command) => apply(txn, command, at)?,
            // Reads past the answer's limit are not computed.
            super::Request::Read { .. } if answer_bytes > TXN_ANSWER_BYTES_MAX => {
                Outcome::TooLarge { bytes: answer_bytes, max: TXN_ANSWER_BYTES_MAX }
            }
            super::Request::Read { query, .. } => query.run_in(txn)?,
            // The txn parser takes nothing else.
            _ => Outcome::not_found("", Missing::Key),
        };
        answer_bytes += outcome_bytes(&outcome);
        results.push(outcome);
    }
    Ok(Outcome::Txn { succeeded, results })
}

/// The item at `key` now: its revisions and value.
fn current(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
) -> rdb_storage::Result<Option<(Revisions, String)>> {
    Ok(txn.get(&data_tree(collection), key.as_bytes())?.map(|stored| {
        let (revisions, value) = item::decode(&stored);
        (revisions, String::from_utf8_lossy(value).into_owned())
    }))
}

/// Whether an item (None: absent) has mod_revision `expected` (0: absent).
/// An item written before cluster version 2 (revision 0) matches no
/// expectation.
fn revision_matches(current: Option<&(Revisions, String)>, expected: u64) -> bool {
    match current {
        None => expected == 0,
        Some((revisions, _)) => expected != 0 && revisions.mod_revision == expected,
    }
}

fn mismatch(collection: &str, key: &str, current: Option<(Revisions, String)>) -> Outcome {
    let mod_revision = current.as_ref().map_or(0, |(revisions, _)| revisions.mod_revision);
    Outcome::CasMismatch {
        collection: collection.to_string(),
        key: key.to_string(),
        current: current.map(|(_, value)| value),
        mod_revision,
    }
}

fn put_value(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
    value: &str,
    revision: Option<u64>,
) -> rdb_storage::Result<Outcome> {
    if !keeps_value_index(collection, |tree| txn.tree_exists(tree))? {
        return Ok(Outcome::NoValueIndex { collection: collection.to_string() });
    }
    let hash = value_hash(value);
    if let Some(existing) = txn.get(&index_tree(collection), &hash)? {
        let existing = String::from_utf8_lossy(&existing).into_owned();
        let revisions = current(txn, collection, &existing)?.map(|(r, _)| r).unwrap_or_default();
        return Ok(Outcome::item_at(collection, &existing, value, revisions));
    }
    // The proposer's key is 256 random bits; should it ever be taken, every
    // replica sees the same and refuses the same way.
    if txn.get(&data_tree(collection), key.as_bytes())?.is_some() {
        return Ok(Outcome::KeyTaken);
    }
    let writing = Writing { revision, lease: 0, create_index: true };
    put_key(txn, (collection, key, value), writing)
}

/// How a put writes, besides what it writes.
#[derive(Debug, Clone, Copy)]
struct Writing {
    /// The entry's index, from cluster version 2 on (None: no revisions).
    revision: Option<u64>,
    /// The lease the item is attached to (0: none).
    lease: u64,
    /// Whether to create the collection's value index when it has none.
    create_index: bool,
}

impl Writing {
    /// A key-addressed write: it creates a value index only before
    /// cluster version 3 (the index costs a second random B-tree insert
    /// per put, for lookups by value that key-addressed users rarely make).
    fn by_key(revision: Option<u64>, lease: u64, at: Applying) -> Self {
        let create_index = at.cluster_version < super::command::UNINDEXED_KEY_COLLECTIONS_VERSION;
        Writing { revision, lease, create_index }
    }
}

/// Sets `key` to `value` (with revisions when `writing.revision` is given)
/// and, if the collection keeps a value index, keeps it pointing at a key
/// that holds each value (the first one that did, while it does).
fn put_key(
    txn: &mut WriteTxn<'_>,
    (collection, key, value): (&str, &str, &str),
    writing: Writing,
) -> rdb_storage::Result<Outcome> {
    let (data, index) = (data_tree(collection), index_tree(collection));
    let old = txn.get(&data, key.as_bytes())?;
    let previous = old.as_deref().map(|old| item::decode(old).0);
    let revisions = writing.revision.map(|revision| Revisions::after_write(previous, revision));
    let lease = writing.lease;
    let stored = match revisions {
        Some(revisions) if lease != 0 => item::encode_leased(revisions, lease, value),
        _ => item::encode(revisions, value),
    };
    // Requests are checked against smaller limits; should one still not
    // fit, every replica refuses it alike, before changing anything,
    // rather than stop.
    let max = rdb_storage::btree::VALUE_BYTES_MAX;
    if stored.len() > max || key.len() > rdb_storage::btree::KEY_BYTES_MAX {
        return Ok(Outcome::TooLarge { bytes: stored.len() + key.len(), max });
    }
    if lease != 0 && !lease::attach(txn, lease, collection, key)? {
        return Ok(Outcome::LimitReached("keys on one lease"));
    }
    txn.create_tree(&data)?;
    if writing.create_index {
        txn.create_tree(&index)?;
    }
    let indexed = txn.tree_exists(&index)?;
    if let Some(old) = &old {
        let (_, old_lease, old_value) = item::decode_leased(old);
        if old_lease != lease {
            lease::detach(txn, old_lease, collection, key)?;
        }
        if indexed {
            unindex(txn, &index, old_value, key)?;
        }
    }
    txn.put(&data, key.as_bytes(), &stored)?;
    if indexed {
        let hash = value_hash(value);
        if txn.get(&index, &hash)?.is_none() {
            txn.put(&index, &hash, key.as_bytes())?;
        }
    }
    Ok(Outcome::item_at(collection, key, value, revisions.unwrap_or_default()))
}

/// Removes `key`, and its value's index entry if it points at `key`; the
/// item's revisions and value as they were.
fn delete_key(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    key: &str,
) -> rdb_storage::Result<Option<(Revisions, String)>> {
    let Some(old) = txn.delete(&data_tree(collection), key.as_bytes())? else {
        return Ok(None);
    };
    let (revisions, old_lease, value) = item::decode_leased(&old);
    lease::detach(txn, old_lease, collection, key)?;
    unindex(txn, &index_tree(collection), value, key)?;
    Ok(Some((revisions, String::from_utf8_lossy(value).into_owned())))
}

/// Removes every key of `range`; how many.
fn delete_range(
    txn: &mut WriteTxn<'_>,
    collection: &str,
    range: &KeyRange,
) -> rdb_storage::Result<Outcome> {
    let tree = data_tree(collection);
    if !txn.tree_exists(&tree)? {
        return Ok(Outcome::not_found(collection, Missing::Collection));
    }
    let mut keys = txn.keys(&tree, range, DELETE_RANGE_KEYS_MAX + 1)?;
    let more = keys.len() > DELETE_RANGE_KEYS_MAX;
    keys.truncate(DELETE_RANGE_KEYS_MAX);
    let mut removed = Vec::with_capacity(keys.len());
    for key in &keys {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some((revisions, value)) = delete_key(txn, collection, &key)? {
            removed.push((key, value, revisions));
        }
    }
    let deleted = removed.len() as u64;
    Ok(Outcome::Deleted { collection: collection.to_string(), deleted, more, keys: removed })
}

fn unindex(
    txn: &mut WriteTxn<'_>,
    index: &str,
    old_value: &[u8],
    key: &str,
) -> rdb_storage::Result<()> {
    let hash = value_hash(&String::from_utf8_lossy(old_value));
    if txn.get(index, &hash)?.as_deref() == Some(key.as_bytes()) {
        txn.delete(index, &hash)?;
    }
    Ok(())
}
