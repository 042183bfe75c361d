//! `rdb bench`'s flags and their checks: what a run is asked to do, turned
//! into a workload and the endpoints its connections go to.

use std::sync::Arc;
use std::time::Duration;

use super::conn::Target;
use super::watch::WATCHERS_MAX;
use super::workload::{
    Consistency, KeyOrder, Operation, ValueKind, Workload, KEY_INDEX_MAX, STAMP_DIGITS,
};
use crate::cli::client::{ClientArgs, ClientError};
use crate::kv::lease::{LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN};
use crate::kv::{COLLECTION_BYTES_MAX, TXN_OPS_MAX};

/// The most connections one run opens.
pub const CONNECTIONS_MAX: usize = 10_000;
/// The most threads one run starts.
pub const THREADS_MAX: usize = 256;
/// The largest value a run writes (rdb's own limit).
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// `rdb bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What each request does.
    #[arg(value_enum)]
    pub operation: Operation,
    /// Connections, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Threads the connections are dealt to (default: one per core).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, |n| n.get()))]
    pub threads: usize,
    /// How long to run (e.g. 30s, 2m, 500ms); the default when --requests
    /// is not given is 30s.
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Stop after this many requests in all.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Bytes in each value put.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// What the values put are: distinct (each value starts with its key
    /// name, so values differ as users' data does) or same (one value for
    /// every put, as etcd's `benchmark` sends; a friendly pattern where the
    /// collection keeps a value index: `put-value`'s, and collections made
    /// before cluster version 3).
    #[arg(long, value_enum, default_value_t = ValueKind::Distinct)]
    pub values: ValueKind,
    /// How keys are chosen: random (new keys, scattered), sequential (new
    /// keys, ascending: a friendly pattern), existing (among the keys a
    /// random put run of --key-space requests wrote). Default: existing for
    /// get, random otherwise. The gets of mixed always read existing keys.
    #[arg(long, value_enum)]
    pub keys: Option<KeyOrder>,
    /// How many keys `existing` chooses among.
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    /// The index of the first new key (to continue an earlier run's keys).
    #[arg(long, default_value_t = 0)]
    pub first_key: u64,
    /// The share of gets in `mixed`, 0 to 1.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// The consistency of gets (the server's default: linearizable).
    #[arg(long, value_enum)]
    pub consistency: Option<Consistency>,
    /// Puts in each txn of `txn-put`.
    #[arg(long, default_value_t = 2)]
    pub txn_ops: usize,
    /// The TTL of the lease each connection of `lease-keepalive` grants
    /// and renews, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub lease_ttl_ms: u64,
    /// Streaming watches `watch` opens on the collection (spread over the
    /// endpoints; a node serves at most 1,000).
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,
    /// Requests per second in all (0: as fast as answers come); `watch`
    /// defaults to 100 puts/s.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The collection written and read.
    #[arg(long, default_value = "bench")]
    pub collection: String,
    /// The seed of key names and of each connection's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the cluster is (connections are spread over the endpoints).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Parses `30s`, `2m`, `1h`, `500ms` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ClientError> {
    let usage = ClientError::Usage;
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        usage(format!("{text:?}: not a duration like 30s (a number, then ms, s, m or h)"))
    })?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(usage(format!("{text:?}: the unit is one of ms, s, m, h"))),
    };
    if !(0.001..=7.0 * 86_400.0).contains(&seconds) {
        return Err(usage(format!("{text:?}: between 1 ms and 7 days")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Checks the flags; the workload and where each connection goes.
pub(super) fn plan(args: &BenchArgs) -> Result<(Workload, Vec<Target>), ClientError> {
    let usage = |m: String| ClientError::Usage(m);
    if !(1..=CONNECTIONS_MAX).contains(&args.connections) {
        return Err(usage(format!("--connections is 1 to {CONNECTIONS_MAX}")));
    }
    if args.value_bytes > VALUE_BYTES_MAX {
        return Err(usage(format!("--value-bytes is at most {VALUE_BYTES_MAX}")));
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(usage("--read-ratio is between 0 and 1".into()));
    }
    if args.key_space == 0 || args.requests == Some(0) {
        return Err(usage("--key-space and --requests are at least 1".into()));
    }
    if args.first_key > KEY_INDEX_MAX || args.key_space > KEY_INDEX_MAX + 1 {
        return Err(usage(format!("--first-key and --key-space are at most {KEY_INDEX_MAX}")));
    }
    if !(1..=THREADS_MAX).contains(&args.threads) {
        return Err(usage(format!("--threads is 1 to {THREADS_MAX}")));
    }
    if args.collection.is_empty() || args.collection.len() > COLLECTION_BYTES_MAX {
        return Err(usage(format!("--collection is 1 to {COLLECTION_BYTES_MAX} bytes")));
    }
    check_feature_flags(args).map_err(usage)?;
    let keys = args.keys.unwrap_or(match args.operation {
        Operation::Get => KeyOrder::Existing,
        _ => KeyOrder::Random,
    });
    let tls = tls_config(&args.client).map_err(usage)?;
    let targets = args
        .client
        .endpoints
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| Target::parse(e, tls.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err(usage("no endpoint given (--endpoints)".into()));
    }
    let workload = Workload {
        operation: args.operation,
        keys,
        collection_json: serde_json::Value::from(args.collection.as_str()).to_string(),
        value: Workload::value_of(args.value_bytes, args.seed),
        consistency: args.consistency,
        read_ratio: args.read_ratio,
        key_space: args.key_space,
        seed: args.seed,
        txn_ops: args.txn_ops,
        lease_ttl_ms: args.lease_ttl_ms,
        values: args.values,
    };
    Ok((workload, targets))
}

/// Checks the flags of txn-put, lease-keepalive and watch.
fn check_feature_flags(args: &BenchArgs) -> Result<(), String> {
    if !(1..=TXN_OPS_MAX).contains(&args.txn_ops) {
        return Err(format!("--txn-ops is 1 to {TXN_OPS_MAX}"));
    }
    if !(LEASE_TTL_MS_MIN..=LEASE_TTL_MS_MAX).contains(&args.lease_ttl_ms) {
        return Err(format!("--lease-ttl-ms is {LEASE_TTL_MS_MIN} to {LEASE_TTL_MS_MAX}"));
    }
    if !(1..=WATCHERS_MAX).contains(&args.watchers) {
        return Err(format!("--watchers is 1 to {WATCHERS_MAX}"));
    }
    if args.rate.is_some_and(|r| r != 0.0 && !(0.001..=1e7).contains(&r)) {
        return Err("--rate is 0 (unpaced) or 0.001 to 10,000,000 requests per second".into());
    }
    if args.operation == Operation::Watch && args.value_bytes < STAMP_DIGITS {
        return Err(format!("watch stamps each value: --value-bytes is at least {STAMP_DIGITS}"));
    }
    Ok(())
}

/// The TLS client settings for https endpoints: --cacert verifies the
/// nodes, --cert and --key present a client certificate.
fn tls_config(args: &ClientArgs) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let Some(cacert) = &args.cacert else {
        if args.endpoints.iter().any(|e| e.trim().starts_with("https://")) {
            return Err("https endpoints need --cacert (the CA that signed the nodes)".into());
        }
        return Ok(None);
    };
    let builder = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(crate::tls::read_roots(cacert).map_err(|e| e.to_string())?);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                crate::tls::read_certs(cert).map_err(|e| e.to_string())?,
                crate::tls::read_key(key).map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("{}: {e}", cert.display()))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "0s", "-1s", "10x", "8d", "1e9", "0.5ms", "0.0001ms", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
