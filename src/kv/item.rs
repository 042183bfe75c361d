//! How an item is stored in its collection's tree (`d/<collection>`), and
//! the revisions it carries.
//!
//! A revision is the Raft log index of the entry that made a change (as
//! Consul's `ModifyIndex` is): the same on every replica, increasing with
//! every write, with gaps where the log holds entries that change nothing.
//! Each item records `create_revision` (the entry that created it since it
//! was last absent), `mod_revision` (the entry that last wrote it) and
//! `version` (writes since it was created: 1 for a new item).
//!
//! Layout: from cluster version 2 on, a stored item is the byte 0xFF, then
//! the three numbers as unsigned LEB128 varints (create, mod, version),
//! then the value's UTF-8. 0xFF never begins UTF-8, so an item written
//! before (the value's bytes alone) reads as revisions 0, identically on
//! every replica.
//!
//! Caveats: a header that does not decode (only damage the state file's
//! checksums did not catch could make one) reads as a legacy value of
//! those bytes rather than stopping the node.

/// The first byte of an item with revisions; never the first byte of UTF-8.
pub const ITEM_MARKER: u8 = 0xFF;
/// The first byte of an item with revisions and a lease: a fourth varint,
/// the lease id, follows the three.
pub const LEASED_ITEM_MARKER: u8 = 0xFE;
/// Bytes of one varint, at most (a u64 in 7-bit groups).
const VARINT_BYTES_MAX: usize = 10;
/// Bytes an item's header takes at most: the marker and four varints.
pub const ITEM_HEADER_BYTES_MAX: usize = 1 + 4 * VARINT_BYTES_MAX;

/// An item's revisions (all 0 for an item written before cluster
/// version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revisions {
    /// The revision that created it (since it was last absent).
    pub create_revision: u64,
    /// The revision that last wrote it.
    pub mod_revision: u64,
    /// Writes since it was created (1 for a new item).
    pub version: u64,
}

impl Revisions {
    /// The revisions after a write at `revision` over `previous` (None:
    /// the key is new).
    pub fn after_write(previous: Option<Revisions>, revision: u64) -> Revisions {
        match previous {
            Some(old) => Revisions {
                create_revision: old.create_revision,
                mod_revision: revision,
                version: old.version + 1,
            },
            None => Revisions { create_revision: revision, mod_revision: revision, version: 1 },
        }
    }
}

/// The stored bytes of `value` with `revisions` (`None`: the legacy form,
/// the value alone, as cluster version 1 stores it).
pub fn encode(revisions: Option<Revisions>, value: &str) -> Vec<u8> {
    let Some(revisions) = revisions else { return value.as_bytes().to_vec() };
    let mut out = Vec::with_capacity(ITEM_HEADER_BYTES_MAX + value.len());
    out.push(ITEM_MARKER);
    for number in [revisions.create_revision, revisions.mod_revision, revisions.version] {
        put_varint(&mut out, number);
    }
    out.extend_from_slice(value.as_bytes());
    out
}

/// The stored bytes of `value` with `revisions` and attached to `lease`
/// (0: none, the plain form).
pub fn encode_leased(revisions: Revisions, lease: u64, value: &str) -> Vec<u8> {
    if lease == 0 {
        return encode(Some(revisions), value);
    }
    let mut out = Vec::with_capacity(ITEM_HEADER_BYTES_MAX + value.len());
    out.push(LEASED_ITEM_MARKER);
    for number in [revisions.create_revision, revisions.mod_revision, revisions.version, lease] {
        put_varint(&mut out, number);
    }
    out.extend_from_slice(value.as_bytes());
    out
}

/// The revisions and the value's bytes of a stored item.
pub fn decode(stored: &[u8]) -> (Revisions, &[u8]) {
    let (revisions, _, value) = decode_leased(stored);
    (revisions, value)
}

/// The revisions, the lease (0: none) and the value's bytes of a stored
/// item.
pub fn decode_leased(stored: &[u8]) -> (Revisions, u64, &[u8]) {
    let legacy = (Revisions::default(), 0, stored);
    let (count, mut rest) = match stored.split_first() {
        Some((&ITEM_MARKER, rest)) => (3, rest),
        Some((&LEASED_ITEM_MARKER, rest)) => (4, rest),
        _ => return legacy,
    };
    let mut numbers = [0u64; 4];
    for number in numbers.iter_mut().take(count) {
        let Some((value, after)) = take_varint(rest) else { return legacy };
        *number = value;
        rest = after;
    }
    let [create_revision, mod_revision, version, lease] = numbers;
    (Revisions { create_revision, mod_revision, version }, lease, rest)
}

fn put_varint(out: &mut Vec<u8>, mut number: u64) {
    while number >= 0x80 {
        out.push(number.to_le_bytes()[0] | 0x80);
        number >>= 7;
    }
    out.push(number.to_le_bytes()[0]);
}

fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut number = 0u64;
    for (at, &byte) in bytes.iter().enumerate().take(VARINT_BYTES_MAX) {
        let shift = u32::try_from(7 * at).ok()?;
        number |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((number, &bytes[at + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_legacy_values_read_as_revision_zero() {
        let revisions = Revisions { create_revision: 3, mod_revision: 300_000, version: 7 };
        for value in ["", "v", "a longer value \u{e9}"] {
            let stored = encode(Some(revisions), value);
            assert_eq!(decode(&stored), (revisions, value.as_bytes()));
            let legacy = encode(None, value);
            assert_eq!(decode(&legacy), (Revisions::default(), value.as_bytes()));
        }
        let max = Revisions { create_revision: u64::MAX, mod_revision: u64::MAX, version: 0 };
        assert_eq!(decode(&encode(Some(max), "x")).0, max);
        // A damaged header reads as a legacy value, never a panic.
        assert_eq!(decode(&[ITEM_MARKER, 0x80]).0, Revisions::default());
        assert_eq!(decode(&[ITEM_MARKER; 12]).0, Revisions::default());
        let leased = encode_leased(revisions, 0xdead_beef, "v");
        assert_eq!(decode_leased(&leased), (revisions, 0xdead_beef, &b"v"[..]));
        assert_eq!(decode(&leased), (revisions, &b"v"[..]));
        assert_eq!(encode_leased(revisions, 0, "v"), encode(Some(revisions), "v"));
    }

    #[test]
    fn a_write_advances_mod_revision_and_version_and_keeps_create_revision() {
        let new = Revisions::after_write(None, 5);
        assert_eq!(new, Revisions { create_revision: 5, mod_revision: 5, version: 1 });
        let again = Revisions::after_write(Some(new), 9);
        assert_eq!(again, Revisions { create_revision: 5, mod_revision: 9, version: 2 });
    }
}
