//! What `rdb bench` sends: which key each request names and the JSON body
//! that carries it. Pure functions of the flags, a seed and a counter, so
//! a later run can read back exactly the keys an earlier run wrote.
//!
//! Key names (`--keys`), all 16 ASCII characters:
//! - `random`: `key(i)` = the 64-bit mix of `seed × 0x9e3779b97f4a7c15 + i`
//!   in hex. The mix is a bijection, so distinct indexes never name the same key: a put run
//!   writes new keys only, scattered over the key space as real
//!   (hash-derived) keys are. The same names are used by
//!   `benches/cluster/etcd-native` so both systems store the same keys.
//! - `sequential`: `i` in decimal, zero-padded (a friendly pattern: every
//!   write lands at the right edge of the tree).
//! - `existing`: `key(i)` for a uniformly random `i` below `--key-space`,
//!   the keys a `random` put run of that many requests (same seed, first
//!   key 0) wrote.
//!
//! In `mixed`, gets always read existing keys and puts name theirs as
//! `--keys` says (new random keys by default).

use std::fmt::Write as _;

use crate::raft::{mix64, splitmix64};

/// What follows the value in a put's body.
pub const PUT_SUFFIX: &[u8] = b"\"}}";

/// The operation a request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Operation {
    /// Key-addressed puts.
    Put,
    /// Value-addressed puts (rdbv2's `put`: the node draws each key), of
    /// values as `--values` says; the collection keeps a value index, so
    /// each new value is a second B-tree insert.
    PutValue,
    /// Gets.
    Get,
    /// Gets with probability `--read-ratio`, puts otherwise.
    Mixed,
    /// Txns of `--txn-ops` puts each (no compares), as etcd's `benchmark
    /// txn-put`.
    TxnPut,
    /// Keepalives: each connection grants a lease, then renews it, as
    /// etcd's `benchmark lease-keepalive`.
    LeaseKeepalive,
    /// `--watchers` streaming watches on the collection while the
    /// connections put at `--rate`: events delivered, and the time from a
    /// put's sending to each watcher's receiving it.
    Watch,
}

/// How keys are chosen (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyOrder {
    /// New keys in random order, never reused.
    Random,
    /// New keys in ascending order (a friendly pattern).
    Sequential,
    /// Random keys among those a random put run wrote.
    Existing,
}

/// The read consistency of gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// Reflects every write acknowledged before it (ReadIndex).
    Linearizable,
    /// The receiving node's applied state, possibly stale.
    Serializable,
}

/// A small seeded generator (SplitMix64): each connection has its own.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` and `stream` (the connection number).
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(mix64(seed ^ mix64(stream.wrapping_add(1))))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `0..n` (`n` > 0; the bias of the modulo is below 2^-40
    /// for the key spaces used here).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The name of random key `index` for `seed`.
pub fn random_key(seed: u64, index: u64) -> String {
    format!("{:016x}", mix64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(index)))
}

/// The largest key index: sequential names stay 16 digits, and random
/// ones never wrap around.
pub const KEY_INDEX_MAX: u64 = 9_999_999_999_999_999;

/// The name of sequential key `index`.
pub fn sequential_key(index: u64) -> String {
    format!("{index:016}")
}

/// Everything that decides the requests of a run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// What each request does.
    pub operation: Operation,
    /// How keys are named and chosen.
    pub keys: KeyOrder,
    /// The collection, already a JSON string literal.
    pub collection_json: String,
    /// The value of every put (ASCII letters and digits).
    pub value: String,
    /// For gets; `None` sends no field (the server's default, linearizable).
    pub consistency: Option<Consistency>,
    /// The share of gets in `mixed`, in `[0, 1]`.
    pub read_ratio: f64,
    /// How many keys `existing` chooses among (> 0).
    pub key_space: u64,
    /// The seed of key names and of every connection's generator.
    pub seed: u64,
    /// Puts in each txn of `txn-put` (≥ 1).
    pub txn_ops: usize,
    /// The TTL of `lease-keepalive`'s leases, in milliseconds.
    pub lease_ttl_ms: u64,
    /// What the values put are (`--values`).
    pub values: ValueKind,
}

/// What the values put are (`--values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueKind {
    /// One value for every put.
    Same,
    /// Each value starts with its key.
    Distinct,
}

/// Digits of the send time (microseconds since the Unix epoch) at the
/// front of every value a `watch` run puts.
pub const STAMP_DIGITS: usize = 20;

/// Microseconds since the Unix epoch, by the system clock (the putters and
/// the watchers of a run share it).
pub fn now_micros() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The send time stamped at the front of a `watch` event's value, if the
/// event line carries one.
pub fn stamp_of(event_line: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = br#""value":""#;
    let at = event_line.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits = event_line.get(at..at + STAMP_DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Workload {
    /// A value of `bytes` ASCII letters and digits, the same for a seed.
    pub fn value_of(bytes: usize, seed: u64) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = Rng::new(seed, u64::MAX);
        (0..bytes).map(|_| ALPHABET[(rng.next_u64() % 62) as usize] as char).collect()
    }

    /// Whether the next request is a get.
    pub fn next_is_get(&self, rng: &mut Rng) -> bool {
        match self.operation {
            Operation::Get => true,
            Operation::Mixed => rng.unit() < self.read_ratio,
            _ => false,
        }
    }

    /// The key of the next request (a get if `get`); `next_index` hands
    /// out new indexes. The gets of `mixed` read existing keys; its puts,
    /// and every other request, name keys as `keys` says.
    pub fn next_key(
        &self,
        get: bool,
        rng: &mut Rng,
        next_index: impl FnOnce() -> u64,
    ) -> Option<String> {
        let existing =
            self.keys == KeyOrder::Existing || (get && self.operation == Operation::Mixed);
        if existing {
            return Some(random_key(self.seed, rng.below(self.key_space)));
        }
        // Past the last index there are no new keys: the run ends.
        let index = Some(next_index()).filter(|i| *i <= KEY_INDEX_MAX)?;
        Some(match self.keys {
            KeyOrder::Sequential => sequential_key(index),
            KeyOrder::Random | KeyOrder::Existing => random_key(self.seed, index),
        })
    }

    /// The body of a put of `key` is `out` (cleared and filled here), then
    /// the value, then [`PUT_SUFFIX`]: the value, the same for every put,
    /// is sent from the workload, never copied per request.
    pub fn put_prefix(&self, key: &str, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            r#"{{"action":"put","payload":{{"collection":{},"key":"{key}","value":""#,
            self.collection_json
        );
    }

    /// The body of a txn putting the value on each of `keys` (each its
    /// own when values are distinct), into `out` (cleared first).
    pub fn txn_put_body(&self, keys: &[String], out: &mut String) {
        out.clear();
        out.push_str(r#"{"action":"txn","payload":{"compare":[],"success":["#);
        for (n, key) in keys.iter().enumerate() {
            let comma = if n == 0 { "" } else { "," };
            let _ = write!(
                out,
                r#"{comma}{{"action":"put","payload":{{"collection":{},"key":"{key}","value":""#,
                self.collection_json
            );
            self.push_value(key, out);
            out.push_str(r#""}}"#);
        }
        out.push_str("]}}");
    }

    /// The whole body of a put of `key`, its value as [`Self::push_value`]
    /// makes it, into `out` (cleared first). A plain put of the same value
    /// is sent from its parts instead ([`Self::put_prefix`]).
    pub fn put_body(&self, key: &str, out: &mut String) {
        self.put_prefix(key, out);
        self.push_value(key, out);
        out.push_str(r#""}}"#);
    }

    /// Appends the value put on `key`: the workload's value, its start
    /// replaced by the key (as much as fits) when values are distinct.
    fn push_value(&self, key: &str, out: &mut String) {
        let head = match self.values {
            ValueKind::Distinct => key.len().min(self.value.len()),
            ValueKind::Same => 0,
        };
        out.push_str(&key[..head]);
        out.push_str(&self.value[head..]);
    }

    /// The body of a value-addressed put of the value [`Self::push_value`]
    /// makes for `key` (a key name only to make values differ: the node
    /// draws the key), into `out` (cleared first).
    pub fn put_value_body(&self, key: &str, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            r#"{{"action":"put","payload":{{"collection":{},"value":""#,
            self.collection_json
        );
        self.push_value(key, out);
        out.push_str(r#""}}"#);
    }

    /// The body of a put of `key` whose value starts with the send time
    /// (`watch`), into `out` (cleared first).
    pub fn stamped_put_body(&self, key: &str, out: &mut String) {
        self.put_prefix(key, out);
        let stamp = format!("{:0width$}", now_micros(), width = STAMP_DIGITS);
        out.push_str(&stamp);
        out.push_str(self.value.get(STAMP_DIGITS..).unwrap_or_default());
        out.push_str(r#""}}"#);
    }

    /// The body of a keepalive of `lease`, into `out` (cleared first).
    pub fn keepalive_body(lease: &str, out: &mut String) {
        out.clear();
        let _ = write!(out, r#"{{"action":"lease keepalive","payload":{{"lease":"{lease}"}}}}"#);
    }

    /// The body of a get of `key`, into `out` (cleared first).
    pub fn get_body(&self, key: &str, out: &mut String) {
        out.clear();
        let consistency = match self.consistency {
            None => "",
            Some(Consistency::Linearizable) => r#","consistency":"linearizable""#,
            Some(Consistency::Serializable) => r#","consistency":"serializable""#,
        };
        let _ = write!(
            out,
            r#"{{"action":"get","payload":{{"collection":{},"key":"{key}"{consistency}}}}}"#,
            self.collection_json
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(keys: KeyOrder) -> Workload {
        Workload {
            operation: Operation::Put,
            keys,
            collection_json: "\"bench\"".into(),
            value: Workload::value_of(8, 1),
            consistency: Some(Consistency::Serializable),
            read_ratio: 0.9,
            key_space: 1_000,
            seed: 1,
            txn_ops: 2,
            lease_ttl_ms: 60_000,
            values: ValueKind::Same,
        }
    }

    #[test]
    fn distinct_values_start_with_their_key_and_keep_their_length() {
        let mut w = workload(KeyOrder::Random);
        w.values = ValueKind::Distinct;
        w.value = Workload::value_of(100, 1);
        let mut body = String::new();
        let mut values = Vec::new();
        for key in [random_key(1, 0), random_key(1, 1), "ab".into()] {
            w.put_body(&key, &mut body);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let value = v["payload"]["value"].as_str().unwrap().to_string();
            assert_eq!(value.len(), 100);
            assert!(value.starts_with(&key), "{value} starts with {key}");
            assert_eq!(v["payload"]["key"], key.as_str());
            values.push(value);
        }
        assert!(values[0] != values[1] && values[1] != values[2], "{values:?}");
        w.put_value_body(&random_key(1, 0), &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["payload"]["value"], values[0].as_str(), "the same value, by value");
        assert!(v["payload"].get("key").is_none(), "the node draws the key: {v}");
        w.value = Workload::value_of(4, 1);
        w.put_body("0123456789abcdef", &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["payload"]["value"], "0123", "a short value is the key's start");
    }

    #[test]
    fn random_keys_are_distinct_and_unordered() {
        let keys: Vec<String> = (0..10_000).map(|i| random_key(7, i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len());
        assert_ne!(sorted, keys);
        assert!(keys.iter().all(|k| k.len() == 16));
        assert_ne!(random_key(7, 0), random_key(8, 0));
    }

    #[test]
    fn existing_keys_are_among_those_a_random_load_wrote() {
        let w = workload(KeyOrder::Existing);
        let written: std::collections::HashSet<String> =
            (0..w.key_space).map(|i| random_key(w.seed, i)).collect();
        let mut rng = Rng::new(w.seed, 3);
        for _ in 0..1_000 {
            assert!(written.contains(&w.next_key(false, &mut rng, || unreachable!()).unwrap()));
        }
    }

    #[test]
    fn bodies_are_the_api_s_json() {
        let w = workload(KeyOrder::Sequential);
        let mut body = String::new();
        w.put_prefix(&sequential_key(42), &mut body);
        let whole = [body.as_bytes(), w.value.as_bytes(), PUT_SUFFIX].concat();
        let v: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(v["payload"]["key"], "0000000000000042");
        assert_eq!(v["payload"]["value"].as_str().unwrap().len(), 8);
        w.get_body("k", &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["action"], "get");
        assert_eq!(v["payload"]["consistency"], "serializable");
    }

    #[test]
    fn txn_keepalive_and_stamped_bodies_are_the_api_s_json() {
        let w = workload(KeyOrder::Random);
        let mut body = String::new();
        w.txn_put_body(&["a".into(), "b".into()], &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["action"], "txn");
        assert_eq!(v["payload"]["success"][1]["payload"]["key"], "b");
        assert_eq!(v["payload"]["success"][1]["payload"]["value"], w.value.as_str());
        let mut distinct = workload(KeyOrder::Random);
        distinct.values = ValueKind::Distinct;
        distinct.txn_put_body(&["a".into(), "b".into()], &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let value = |i: usize| v["payload"]["success"][i]["payload"]["value"].as_str().unwrap();
        assert!(value(0).starts_with('a') && value(1).starts_with('b'), "{v}");
        assert_eq!((value(0).len(), value(1).len()), (8, 8));
        Workload::keepalive_body("00000000000000ff", &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["payload"]["lease"], "00000000000000ff");
        let mut w = w;
        w.value = Workload::value_of(30, 1);
        let before = now_micros();
        w.stamped_put_body("k", &mut body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["payload"]["value"].as_str().unwrap().len(), 30);
        let event = format!(r#"{{"type":"put","key":"k","value":{}}}"#, v["payload"]["value"]);
        let stamp = stamp_of(event.as_bytes()).expect("a stamp");
        assert!(stamp >= before && stamp <= now_micros(), "{stamp}");
        assert_eq!(stamp_of(br#"{"type":"created"}"#), None);
    }

    #[test]
    fn mixed_reads_about_the_read_ratio() {
        let mut w = workload(KeyOrder::Existing);
        w.operation = Operation::Mixed;
        let mut rng = Rng::new(1, 0);
        let gets = (0..10_000).filter(|_| w.next_is_get(&mut rng)).count();
        assert!((8_800..9_200).contains(&gets), "{gets}");
        // Its puts write new keys, its gets read existing ones.
        w.keys = KeyOrder::Random;
        assert_eq!(w.next_key(false, &mut rng, || 5_000), Some(random_key(w.seed, 5_000)));
        assert_eq!(w.next_key(false, &mut rng, || KEY_INDEX_MAX + 1), None, "no more new keys");
        let read = w.next_key(true, &mut rng, || unreachable!()).unwrap();
        assert!((0..w.key_space).any(|i| random_key(w.seed, i) == read));
    }
}
