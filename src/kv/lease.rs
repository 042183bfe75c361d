//! Leases in the replicated state: which leases exist (id and TTL) and
//! which keys each one holds, so that revoking a lease deletes its keys in
//! the same entry on every replica.
//!
//! Trees: `s/leases` maps a lease id (8 bytes, big-endian) to its TTL in
//! milliseconds (8 bytes, little-endian); `s/lease_keys` holds one entry per
//! attached key: the id, the collection, a 0 byte, the key. An item records
//! its lease in its header (`item.rs`), so that a put or delete of the key
//! detaches it from the lease it had.
//!
//! When a lease expires is not replicated state: the leader tracks
//! deadlines in memory (`node/leases.rs`) and proposes a revoke; a new
//! leader gives every lease a full TTL again, as etcd does.
//!
//! Caveats: dropping a collection leaves its keys' attachments: a revoke
//! skips them, the list leaves them out, and a lease that reaches its key
//! limit prunes them before it refuses.

use rdb_storage::btree::{KeyRange, ReadTxn, WriteTxn};

use super::item::{self, Revisions};

/// The tree of leases.
const LEASES_TREE: &str = "s/leases";
/// The tree of keys attached to leases.
const LEASE_KEYS_TREE: &str = "s/lease_keys";
/// Leases that may exist at once.
pub const LEASES_MAX: usize = 10_000;
/// Keys one lease may hold.
pub const LEASE_KEYS_MAX: usize = 10_000;
/// The shortest TTL a lease may have, in milliseconds.
pub const LEASE_TTL_MS_MIN: u64 = 1_000;
/// The longest TTL a lease may have (a day), in milliseconds.
pub const LEASE_TTL_MS_MAX: u64 = 86_400_000;

/// A lease id as clients see it: 16 hex digits.
pub fn lease_text(id: u64) -> String {
    format!("{id:016x}")
}

/// The id of a lease's text, if it is one.
pub fn parse_lease(text: &str) -> Option<u64> {
    (text.len() == 16).then(|| u64::from_str_radix(text, 16).ok()).flatten().filter(|&id| id != 0)
}

/// The attachment entries of lease `id`.
fn attachments_of(id: u64) -> KeyRange {
    KeyRange { prefix: Some(id.to_be_bytes().to_vec()), ..KeyRange::default() }
}

fn attachment(lease: u64, collection: &str, key: &str) -> Vec<u8> {
    let mut out = lease.to_be_bytes().to_vec();
    out.extend_from_slice(collection.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The TTL of lease `id` in milliseconds, if it exists.
pub fn ttl_ms(txn: &mut WriteTxn<'_>, id: u64) -> rdb_storage::Result<Option<u64>> {
    Ok(txn.get(LEASES_TREE, &id.to_be_bytes())?.map(|bytes| decode_ttl(&bytes)))
}

fn decode_ttl(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_le_bytes)
}

/// Creates lease `id`; false if there are [`LEASES_MAX`] already or the
/// id is taken.
pub fn grant(txn: &mut WriteTxn<'_>, id: u64, ttl_ms: u64) -> rdb_storage::Result<bool> {
    txn.create_tree(LEASES_TREE)?;
    txn.create_tree(LEASE_KEYS_TREE)?;
    let taken = txn.get(LEASES_TREE, &id.to_be_bytes())?.is_some();
    if taken || txn.keys(LEASES_TREE, &KeyRange::all(), LEASES_MAX)?.len() >= LEASES_MAX {
        return Ok(false);
    }
    txn.put(LEASES_TREE, &id.to_be_bytes(), &ttl_ms.to_le_bytes())?;
    Ok(true)
}

/// Attaches `collection`/`key` to lease `id` (which exists); false if it
/// holds [`LEASE_KEYS_MAX`] keys already.
pub fn attach(
    txn: &mut WriteTxn<'_>,
    id: u64,
    collection: &str,
    key: &str,
) -> rdb_storage::Result<bool> {
    let of_lease = attachments_of(id);
    let entry = attachment(id, collection, key);
    if txn.get(LEASE_KEYS_TREE, &entry)?.is_none()
        && txn.keys(LEASE_KEYS_TREE, &of_lease, LEASE_KEYS_MAX)?.len() >= LEASE_KEYS_MAX
        && prune(txn, id, &of_lease)? == 0
    {
        return Ok(false);
    }
    txn.put(LEASE_KEYS_TREE, &entry, &[])?;
    Ok(true)
}

/// Removes the attachments of lease `id` whose key no longer holds it (its
/// collection was dropped); how many. Runs only when the lease is full.
fn prune(txn: &mut WriteTxn<'_>, id: u64, of_lease: &KeyRange) -> rdb_storage::Result<usize> {
    let mut pruned = 0;
    for entry in txn.keys(LEASE_KEYS_TREE, of_lease, LEASE_KEYS_MAX)? {
        let Some((collection, key)) = split_attachment(&entry) else { continue };
        let stored = txn.get(&format!("d/{collection}"), key.as_bytes())?;
        if stored.as_deref().map(lease_of) != Some(id) {
            txn.delete(LEASE_KEYS_TREE, &entry)?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// The collection and key of an attachment entry.
fn split_attachment(entry: &[u8]) -> Option<(String, String)> {
    let rest = entry.get(8..)?;
    let split = rest.iter().position(|&b| b == 0)?;
    Some((
        String::from_utf8_lossy(&rest[..split]).into_owned(),
        String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
    ))
}

/// Detaches `collection`/`key` from lease `id`.
pub fn detach(
    txn: &mut WriteTxn<'_>,
    id: u64,
    collection: &str,
    key: &str,
) -> rdb_storage::Result<()> {
    if id != 0 {
        txn.delete(LEASE_KEYS_TREE, &attachment(id, collection, key))?;
    }
    Ok(())
}

/// Removes lease `id` and its attachments; the (collection, key) pairs it
/// held, for the caller to delete. None if it does not exist.
pub fn revoke(
    txn: &mut WriteTxn<'_>,
    id: u64,
) -> rdb_storage::Result<Option<Vec<(String, String)>>> {
    if txn.delete(LEASES_TREE, &id.to_be_bytes())?.is_none() {
        return Ok(None);
    }
    let of_lease = attachments_of(id);
    let entries = txn.keys(LEASE_KEYS_TREE, &of_lease, LEASE_KEYS_MAX + 1)?;
    let mut held = Vec::with_capacity(entries.len());
    for entry in entries {
        txn.delete(LEASE_KEYS_TREE, &entry)?;
        held.extend(split_attachment(&entry));
    }
    Ok(Some(held))
}

/// Every lease: (id, TTL in ms), by id.
pub fn list(txn: &ReadTxn) -> rdb_storage::Result<Vec<(u64, u64)>> {
    if !txn.tree_exists(LEASES_TREE)? {
        return Ok(Vec::new());
    }
    let mut leases = Vec::new();
    for entry in txn.range(LEASES_TREE, &KeyRange::all())? {
        let (id, ttl) = entry?;
        let id = id.try_into().map_or(0, u64::from_be_bytes);
        leases.push((id, decode_ttl(ttl)));
    }
    Ok(leases)
}

/// The keys lease `id` holds, as (collection, key), at most `limit`.
pub fn keys_of(txn: &ReadTxn, id: u64, limit: usize) -> rdb_storage::Result<Vec<(String, String)>> {
    if !txn.tree_exists(LEASE_KEYS_TREE)? {
        return Ok(Vec::new());
    }
    let of_lease = attachments_of(id);
    let mut out = Vec::new();
    for entry in txn.range(LEASE_KEYS_TREE, &of_lease)? {
        if out.len() >= limit {
            break;
        }
        let Some((collection, key)) = split_attachment(entry?.0) else { continue };
        // Not a key whose collection was dropped since.
        let held = txn.get(&format!("d/{collection}"), key.as_bytes())?;
        if held.is_some_and(|stored| lease_of(stored) == id) {
            out.push((collection, key));
        }
    }
    Ok(out)
}

/// The lease a stored item is attached to (0: none).
pub fn lease_of(stored: &[u8]) -> u64 {
    item::decode_leased(stored).1
}

/// What revoking found of one key: its value and revisions before.
pub type Removed = (String, String, String, Revisions);
