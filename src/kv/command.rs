//! The writes that travel through the Raft log.

use serde_json::Value;

use super::error::Error;

/// The encoding's version, the first byte of every command.
const FORMAT_VERSION: u8 = 1;
/// The largest encoded command: a maximal value and key, the collection
/// name and the framing.
pub const COMMAND_BYTES_MAX: usize = super::VALUE_BYTES_MAX_LIMIT * 2
    + super::KEY_BYTES_MAX_LIMIT
    + super::COLLECTION_BYTES_MAX
    + 64;

/// A write, as stored in a log entry. Everything apply needs is inside: in
/// particular the key of a value-addressed put, chosen by the proposing
/// node, so that every replica stores the same key.
///
/// Encoding (all integers little-endian): the version byte, an operation
/// byte (1 put-value, 2 put-key, 3 delete-value, 4 delete-key, 5 cas,
/// 6 drop; from cluster version 2: 7 cas on a revision, 8 delete a range,
/// 9 set the cluster version), then the operation's strings in the order of
/// its fields, each as a u32 byte length and UTF-8 bytes; cas's `expected`
/// and a range's bounds are each preceded by a presence string (empty:
/// absent); numbers are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Value-addressed put: add `value` under `key` unless it is present.
    PutValue {
        /// The collection.
        collection: String,
        /// The key to use if the value is new.
        key: String,
        /// The value.
        value: String,
    },
    /// Key-addressed put: set `key` to `value`.
    PutKey {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove the value and its key.
    DeleteValue {
        /// The collection.
        collection: String,
        /// The value.
        value: String,
    },
    /// Remove a key.
    DeleteKey {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
    },
    /// Set `key` to `value` if its value is `expected` (None: absent).
    Cas {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The value it must have now.
        expected: Option<String>,
        /// The new value.
        value: String,
    },
    /// Remove a collection and everything in it.
    Drop {
        /// The collection.
        collection: String,
    },
    /// Remove a collection's value index (its items stay; value-addressed
    /// actions on it are refused from then on). Cluster version 3.
    DropValueIndex {
        /// The collection.
        collection: String,
    },
    /// Set `key` to `value` if its `mod_revision` is `expected_revision`
    /// (0: only if absent). Cluster version 2.
    CasRevision {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The mod_revision it must have now (0: absent).
        expected_revision: u64,
        /// The new value.
        value: String,
    },
    /// Remove every key of a range (as `range` selects them) in one entry.
    /// Cluster version 2.
    DeleteRange {
        /// The collection.
        collection: String,
        /// The first key included.
        start: Option<String>,
        /// The first key excluded.
        end: Option<String>,
        /// Keys must start with this.
        prefix: Option<String>,
    },
    /// Raise the cluster version (the leader proposes it once every member
    /// runs a binary that supports it).
    SetClusterVersion {
        /// The new version.
        version: u64,
    },
    /// Compares, then one list of operations or the other, atomically.
    /// Cluster version 2.
    /// The txn's canonical JSON (`request::parse_txn` reads it).
    Txn(String),
    /// Create a lease (its id drawn by the proposer). Cluster version 2.
    LeaseGrant {
        /// The lease's id (not 0).
        id: u64,
        /// Its time to live, in milliseconds.
        ttl_ms: u64,
    },
    /// Remove a lease and delete its keys (a client's revoke, or the
    /// leader's on expiry). Cluster version 2.
    LeaseRevoke {
        /// The lease.
        id: u64,
    },
    /// Set `key` to `value` attached to `lease`, if `expected_revision`
    /// (when given) is its mod_revision (0: absent). Cluster version 2.
    PutLeased {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The lease (which must exist).
        lease: u64,
        /// The cas condition, if any.
        expected_revision: Option<u64>,
    },
}

/// The cluster version this binary brings. Version 2: item revisions, cas
/// on a revision, range deletes, txns and leases. Version 3: a collection
/// made by a key-addressed write keeps no value index (one made by a
/// value-addressed put still does; collections made before keep theirs).
pub const CLUSTER_VERSION: u64 = 3;
/// The first cluster version at which key-addressed writes create no value
/// index.
pub const UNINDEXED_KEY_COLLECTIONS_VERSION: u64 = 3;

impl Command {
    /// Whether applying it may take more space in the state file (puts and
    /// cas); deletes and drops only free space. The space guard refuses the
    /// first kind past `--state-bytes-max`.
    pub fn may_grow(&self) -> bool {
        matches!(
            self,
            Command::PutValue { .. }
                | Command::PutKey { .. }
                | Command::Cas { .. }
                | Command::CasRevision { .. }
                | Command::Txn(_)
                | Command::LeaseGrant { .. }
                | Command::PutLeased { .. }
        )
    }

    /// The cluster version the command needs (every replica must decode it
    /// and apply it the same way).
    pub fn cluster_version_needed(&self) -> u64 {
        match self {
            Command::CasRevision { .. }
            | Command::DeleteRange { .. }
            | Command::SetClusterVersion { .. }
            | Command::Txn(_)
            | Command::LeaseGrant { .. }
            | Command::LeaseRevoke { .. }
            | Command::PutLeased { .. } => 2,
            Command::DropValueIndex { .. } => 3,
            _ => 1,
        }
    }

    /// The bytes of a log entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        let mut put = |field: &str| {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(field.as_bytes());
        };
        let op = match self {
            Command::PutValue { collection, key, value } => {
                [collection, key, value].into_iter().for_each(|f| put(f));
                1
            }
            Command::PutKey { collection, key, value } => {
                [collection, key, value].into_iter().for_each(|f| put(f));
                2
            }
            Command::DeleteValue { collection, value } => {
                [collection, value].into_iter().for_each(|f| put(f));
                3
            }
            Command::DeleteKey { collection, key } => {
                [collection, key].into_iter().for_each(|f| put(f));
                4
            }
            Command::Cas { collection, key, expected, value } => {
                [collection, key].into_iter().for_each(|f| put(f));
                put(if expected.is_some() { "\u{1}" } else { "" });
                put(expected.as_deref().unwrap_or(""));
                put(value);
                5
            }
            Command::Drop { collection } => {
                put(collection);
                6
            }
            Command::CasRevision { collection, key, expected_revision, value } => {
                [collection, key].into_iter().for_each(|f| put(f));
                put(&expected_revision.to_string());
                put(value);
                7
            }
            Command::DeleteRange { collection, start, end, prefix } => {
                put(collection);
                for bound in [start, end, prefix] {
                    put(if bound.is_some() { "\u{1}" } else { "" });
                    put(bound.as_deref().unwrap_or(""));
                }
                8
            }
            Command::SetClusterVersion { version } => {
                put(&version.to_string());
                9
            }
            Command::Txn(text) => {
                put(text);
                10
            }
            Command::LeaseGrant { id, ttl_ms } => {
                put(&id.to_string());
                put(&ttl_ms.to_string());
                11
            }
            Command::LeaseRevoke { id } => {
                put(&id.to_string());
                12
            }
            Command::PutLeased { collection, key, value, lease, expected_revision } => {
                [collection, key, value].into_iter().for_each(|f| put(f));
                put(&lease.to_string());
                put(&expected_revision.map_or(String::new(), |r| r.to_string()));
                13
            }
            Command::DropValueIndex { collection } => {
                put(collection);
                14
            }
        };
        out.insert(1, op);
        out
    }

    /// Reads a log entry; an entry that is not a command is an error that
    /// apply answers and skips, identically on every replica.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader { bytes, at: 2 };
        match (bytes.first(), bytes.get(1)) {
            (Some(&FORMAT_VERSION), Some(_)) => {}
            _ => return Err(Error::Malformed("log entry is not a command of this version".into())),
        }
        let command = match bytes[1] {
            1 => Command::PutValue {
                collection: reader.text()?,
                key: reader.text()?,
                value: reader.text()?,
            },
            2 => Command::PutKey {
                collection: reader.text()?,
                key: reader.text()?,
                value: reader.text()?,
            },
            3 => Command::DeleteValue { collection: reader.text()?, value: reader.text()? },
            4 => Command::DeleteKey { collection: reader.text()?, key: reader.text()? },
            5 => {
                let (collection, key) = (reader.text()?, reader.text()?);
                let present = !reader.text()?.is_empty();
                let expected = reader.text()?;
                let value = reader.text()?;
                Command::Cas { collection, key, expected: present.then_some(expected), value }
            }
            6 => Command::Drop { collection: reader.text()? },
            7 => Command::CasRevision {
                collection: reader.text()?,
                key: reader.text()?,
                expected_revision: reader.number()?,
                value: reader.text()?,
            },
            8 => Command::DeleteRange {
                collection: reader.text()?,
                start: reader.optional()?,
                end: reader.optional()?,
                prefix: reader.optional()?,
            },
            9 => Command::SetClusterVersion { version: reader.number()? },
            11 => Command::LeaseGrant { id: reader.number()?, ttl_ms: reader.number()? },
            12 => Command::LeaseRevoke { id: reader.number()? },
            13 => Command::PutLeased {
                collection: reader.text()?,
                key: reader.text()?,
                value: reader.text()?,
                lease: reader.number()?,
                expected_revision: match reader.text()?.as_str() {
                    "" => None,
                    text => Some(
                        text.parse()
                            .map_err(|_| Error::Malformed("a command number is not one".into()))?,
                    ),
                },
            },
            10 => Command::Txn(reader.text()?),
            14 => Command::DropValueIndex { collection: reader.text()? },
            op => return Err(Error::Malformed(format!("unknown command operation {op}"))),
        };
        if reader.at != bytes.len() {
            return Err(Error::Malformed("trailing bytes after the command".into()));
        }
        Ok(command)
    }

    /// The request a client would send for it (docs/API.md): `{"action",
    /// "payload"}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let payload = match self {
            Command::PutValue { collection, key, value } => {
                json!({"collection": collection, "value": value, "key": key})
            }
            Command::PutKey { collection, key, value } => {
                json!({"collection": collection, "key": key, "value": value})
            }
            Command::DeleteValue { collection, value } => {
                json!({"collection": collection, "value": value})
            }
            Command::DeleteKey { collection, key } => json!({"collection": collection, "key": key}),
            Command::Cas { collection, key, expected: Some(expected), value } => {
                json!({"collection": collection, "key": key, "expected": expected, "value": value})
            }
            Command::Cas { collection, key, expected: None, value } => {
                json!({"collection": collection, "key": key, "expected": null, "value": value})
            }
            Command::Drop { collection } | Command::DropValueIndex { collection } => {
                json!({"collection": collection})
            }
            Command::CasRevision { collection, key, expected_revision, value } => {
                json!({"collection": collection, "key": key,
                       "expected_revision": expected_revision, "value": value})
            }
            Command::DeleteRange { collection, start, end, prefix } => {
                let mut payload = json!({"collection": collection});
                for (name, bound) in [("start", start), ("end", end), ("prefix", prefix)] {
                    if let Some(bound) = bound {
                        payload[name] = bound.as_str().into();
                    }
                }
                payload
            }
            Command::SetClusterVersion { version } => json!({"version": version}),
            Command::Txn(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            Command::LeaseGrant { id, ttl_ms } => {
                json!({"lease": super::lease::lease_text(*id), "ttl_ms": ttl_ms})
            }
            Command::LeaseRevoke { id } => json!({"lease": super::lease::lease_text(*id)}),
            Command::PutLeased { collection, key, value, lease, expected_revision } => {
                let mut payload = json!({"collection": collection, "key": key, "value": value,
                                         "lease": super::lease::lease_text(*lease)});
                if let Some(revision) = expected_revision {
                    payload["expected_revision"] = json!(revision);
                }
                payload
            }
        };
        json!({"action": self.action(), "payload": payload})
    }

    /// The API action, for metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Command::PutValue { .. } | Command::PutKey { .. } => "put",
            Command::DeleteValue { .. } | Command::DeleteKey { .. } => "delete",
            Command::Cas { .. } | Command::CasRevision { .. } => "cas",
            Command::Drop { .. } => "drop collection",
            Command::DropValueIndex { .. } => "drop value index",
            Command::DeleteRange { .. } => "delete",
            Command::SetClusterVersion { .. } => "set cluster version",
            Command::Txn(_) => "txn",
            Command::LeaseGrant { .. } => "lease grant",
            Command::LeaseRevoke { .. } => "lease revoke",
            Command::PutLeased { expected_revision: None, .. } => "put",
            Command::PutLeased { .. } => "cas",
        }
    }
}

/// Reads the length-prefixed strings of an encoded command.
struct Reader<'a> {
    /// The whole command.
    bytes: &'a [u8],
    /// The next byte to read.
    at: usize,
}

impl Reader<'_> {
    fn number(&mut self) -> Result<u64, Error> {
        self.text()?.parse().map_err(|_| Error::Malformed("a command number is not one".into()))
    }

    fn optional(&mut self) -> Result<Option<String>, Error> {
        let present = !self.text()?.is_empty();
        let text = self.text()?;
        Ok(present.then_some(text))
    }

    fn text(&mut self) -> Result<String, Error> {
        let truncated = || Error::Malformed("truncated command".into());
        let len_bytes = self.bytes.get(self.at..self.at + 4).ok_or_else(truncated)?;
        let len = u32::from_le_bytes(len_bytes.try_into().map_err(|_| truncated())?);
        let len = usize::try_from(len).map_err(|_| truncated())?;
        let start = self.at + 4;
        let field = self.bytes.get(start..start.saturating_add(len)).ok_or_else(truncated)?;
        self.at = start + len;
        String::from_utf8(field.to_vec())
            .map_err(|_| Error::Malformed("a command field is not UTF-8".into()))
    }
}

/// A fresh lease id: 64 random bits, never 0.
pub fn new_lease_id() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..8]);
    }
    u64::from_le_bytes(bytes).max(1)
}

/// A fresh key: 64 lowercase hex characters from the operating system's
/// random source (256 bits, so two keys never meet in practice).
pub fn new_key() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS source is unavailable only on exotic platforms; fall back
        // to a seeded generator rather than refusing writes.
        let mut state = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() << 30 ^ u64::from(d.subsec_nanos()))
            ^ u64::from(std::process::id());
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&crate::raft::splitmix64(&mut state).to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Command> {
        let (c, k, v) = ("users".to_string(), "k\u{0}1".to_string(), "välue\n".to_string());
        vec![
            Command::PutValue { collection: c.clone(), key: k.clone(), value: v.clone() },
            Command::PutKey { collection: c.clone(), key: k.clone(), value: String::new() },
            Command::DeleteValue { collection: c.clone(), value: v.clone() },
            Command::DeleteKey { collection: c.clone(), key: k.clone() },
            Command::Cas {
                collection: c.clone(),
                key: k.clone(),
                expected: None,
                value: v.clone(),
            },
            Command::Cas { collection: c.clone(), key: k, expected: Some(String::new()), value: v },
            Command::DropValueIndex { collection: c.clone() },
            Command::Drop { collection: c },
        ]
    }

    #[test]
    fn every_command_survives_encoding() {
        for command in all() {
            assert_eq!(Command::decode(&command.encode()), Ok(command));
        }
    }

    #[test]
    fn damaged_entries_are_refused_not_misread() {
        let mut rng = fastrand::Rng::with_seed(11);
        for command in all() {
            let bytes = command.encode();
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err(), "{command:?} cut at {cut}");
            }
            for _ in 0..200 {
                let mut damaged = bytes.clone();
                let at = rng.usize(..damaged.len());
                damaged[at] = rng.u8(..);
                // Either refused or some well-formed command: never a panic.
                let _ = Command::decode(&damaged);
            }
        }
        assert!(Command::decode(&[FORMAT_VERSION, 9]).is_err());
        assert!(Command::decode(&[2, 1]).is_err());
    }
}
