//! What a client may send: the sizes of bodies, keys and values, settable
//! per node within fixed bounds.
//!
//! The defaults are rdb's historical limits. The upper bounds come from
//! what lies underneath: a value must fit the state file's value limit
//! (values over a page go to overflow runs, up to 1 MiB), a key the state
//! file's key limit, and a body must hold a maximal `cas` (two values and a
//! key, JSON-escaped) without letting one connection hold more than 16 MiB.
//! Limits are checked where a request enters (the HTTP edge and
//! [`super::Request::parse`]), never when an entry is applied, so nodes
//! with different limits still apply the same log the same way; set the
//! same limits on every node so that a request is refused or accepted
//! whichever node it reaches.

use super::error::Error;

/// The default largest request body, in bytes (`--body-bytes-max`).
pub const BODY_BYTES_MAX: usize = 3 << 20;
/// The highest `--body-bytes-max` allowed, in bytes.
pub const BODY_BYTES_MAX_LIMIT: usize = 16 << 20;
/// The default largest key, in bytes (`--key-bytes-max`).
pub const KEY_BYTES_MAX: usize = 1024;
/// The highest `--key-bytes-max` allowed: the state file's key limit.
pub const KEY_BYTES_MAX_LIMIT: usize = rdb_storage::btree::KEY_BYTES_MAX;
/// The default largest value, in bytes (`--value-bytes-max`).
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// The highest `--value-bytes-max` allowed: 1 MiB, which the state file
/// stores with the item's revisions in front (checked below).
pub const VALUE_BYTES_MAX_LIMIT: usize = 1 << 20;
const _: () = assert!(
    VALUE_BYTES_MAX_LIMIT + super::item::ITEM_HEADER_BYTES_MAX
        <= rdb_storage::btree::VALUE_BYTES_MAX,
    "a maximal value and its item header must fit the state file's value limit"
);

/// The limits one node enforces on client requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body, in bytes (the HTTP edge answers 413).
    pub body_bytes_max: usize,
    /// The largest key (and range bound or prefix), in bytes.
    pub key_bytes_max: usize,
    /// The largest value (and `cas` expected value), in bytes.
    pub value_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: BODY_BYTES_MAX,
            key_bytes_max: KEY_BYTES_MAX,
            value_bytes_max: VALUE_BYTES_MAX,
        }
    }
}

impl Limits {
    /// Checks each limit against its bounds; the error names the setting.
    pub fn check(&self) -> Result<(), Error> {
        let bounds = [
            ("body_bytes_max", self.body_bytes_max, BODY_BYTES_MAX_LIMIT),
            ("key_bytes_max", self.key_bytes_max, KEY_BYTES_MAX_LIMIT),
            ("value_bytes_max", self.value_bytes_max, VALUE_BYTES_MAX_LIMIT),
        ];
        for (name, value, max) in bounds {
            if !(1..=max).contains(&value) {
                return Err(Error::InvalidLimit { name, value, max });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_and_named() {
        assert!(Limits::default().check().is_ok());
        let over = Limits { key_bytes_max: KEY_BYTES_MAX_LIMIT + 1, ..Limits::default() };
        assert!(over.check().unwrap_err().to_string().contains("key_bytes_max"));
        let zero = Limits { value_bytes_max: 0, ..Limits::default() };
        assert!(zero.check().unwrap_err().to_string().contains("value_bytes_max"));
        let body = Limits { body_bytes_max: BODY_BYTES_MAX_LIMIT + 1, ..Limits::default() };
        assert!(body.check().unwrap_err().to_string().contains("body_bytes_max"));
    }
}
