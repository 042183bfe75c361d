//! `rdb bench`: the load generator operators run against their own cluster,
//! in the manner of etcd's `benchmark` tool. Many keep-alive connections,
//! each with one request in flight, on async-std's executor (one thread per
//! core, like wrk's `-t`), key-addressed puts and gets of keys chosen as
//! `--keys` says (`workload.rs`), a progress line each second on stderr and
//! a table (or `--json`) at the end (`report.rs`).
//!
//! Caveats: it measures from the client: latency includes its own queueing
//! when the client is CPU-starved, and on a machine shared with the cluster
//! it takes CPU the cluster would have used (the table reports its CPU per
//! request so that can be judged). Requests that fail are not retried.

mod conn;
mod report;
mod watch;
mod workload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use workload::{random_key, Consistency, KeyOrder, Operation};
use workload::{KEY_INDEX_MAX, PUT_SUFFIX};

use crate::cli::client::{ClientArgs, ClientError};
use crate::kv::lease::{LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN};
use crate::kv::{COLLECTION_BYTES_MAX, TXN_OPS_MAX};
use conn::{Conn, Target, CONNECT_TIMEOUT};
use report::{process_cpu, progress_line, Stats, Summary};
use watch::{Watchers, WATCHERS_MAX};
use workload::{Rng, Workload, STAMP_DIGITS};

/// The most connections one run opens.
pub const CONNECTIONS_MAX: usize = 10_000;
/// The most threads one run starts.
pub const THREADS_MAX: usize = 256;
/// The largest value a run writes (rdb's own limit).
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// The time one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause before a connection that failed is opened again.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

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

/// When the run ends: a deadline, or a number of requests handed out.
struct Budget {
    deadline: Option<Instant>,
    remaining: Option<AtomicU64>,
    /// Index of the next new key.
    next_index: AtomicU64,
    /// Set by Ctrl-C: no new requests.
    stopped: AtomicBool,
    /// Requests per second in all, and when the pacing started; None:
    /// unpaced.
    rate: Option<(f64, Instant)>,
    /// Requests paced so far.
    paced: AtomicU64,
}

impl Budget {
    /// The time until the deadline (zero past it); `None` without one.
    fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the run's deadline has passed.
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Waits for the next request's turn under `--rate` (at once without
    /// one): request n goes at n / rate seconds after the start.
    async fn pace(&self) {
        if let Some((rate, started)) = self.rate {
            let n = self.paced.fetch_add(1, Ordering::Relaxed);
            let at = started + Duration::from_secs_f64(n as f64 / rate);
            let wait = at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                async_io::Timer::after(wait).await;
            }
        }
    }

    /// Takes one request from the budget; false once it is spent.
    fn take(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(n) => {
                n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
            }
        }
    }
}

/// Runs the benchmark `args` describe; the report to print (a table, or
/// JSON with `--json`). Usage errors (bad flags, unreadable TLS files) are
/// [`ClientError::Usage`]; a run in which no request succeeded is
/// [`ClientError::Unavailable`].
pub fn bench(args: &BenchArgs) -> Result<String, ClientError> {
    let (workload, targets) = plan(args)?;
    let title = title(args, &workload, &targets);
    let watchers = match args.operation {
        Operation::Watch => Some(open_watchers(args, &targets)?),
        _ => None,
    };
    let rate = match (args.rate, args.operation) {
        (Some(r), _) if r > 0.0 => Some(r),
        (None, Operation::Watch) => Some(DEFAULT_WATCH_PUT_RATE),
        _ => None,
    };
    let budget = Arc::new(Budget {
        deadline: match (args.duration, args.requests) {
            (Some(d), _) => Some(Instant::now() + d),
            (None, None) => Some(Instant::now() + Duration::from_secs(30)),
            (None, Some(_)) => None,
        },
        remaining: args.requests.map(AtomicU64::new),
        next_index: AtomicU64::new(args.first_key),
        stopped: AtomicBool::new(false),
        rate: rate.map(|r| (r, Instant::now())),
        paced: AtomicU64::new(0),
    });
    // Ctrl-C (or SIGTERM) ends the run early with its report; a second one
    // quits at once. Fails only if a handler is already set (not in the CLI).
    let stopping = budget.clone();
    let _ = ctrlc::set_handler(move || {
        if stopping.stopped.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("stopping: waiting for the requests in flight (again to quit at once)");
    });
    let cpu_before = process_cpu();
    let (stats, elapsed) = run(args, workload, targets, budget);
    let watch = watchers.map(|w| w.finish(stats.success_count(), WATCH_GRACE));
    let client_cpu = match (cpu_before, process_cpu()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let summary = Summary { title, stats, elapsed, client_cpu, watch };
    if summary.stats.success_count() == 0 {
        return Err(ClientError::Unavailable(format!("no request succeeded\n{}", summary.table())));
    }
    Ok(if args.client.json { summary.json().to_string() } else { summary.table() })
}

/// Puts per second of a `watch` run without `--rate`.
const DEFAULT_WATCH_PUT_RATE: f64 = 100.0;
/// How long after the last put the watchers may take to receive it.
const WATCH_GRACE: Duration = Duration::from_secs(5);
/// How long the watchers of a run may take to be set up.
const WATCH_SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The report's first line.
fn title(args: &BenchArgs, workload: &Workload, targets: &[Target]) -> String {
    let values = match args.operation {
        Operation::Get | Operation::LeaseKeepalive => String::new(),
        Operation::TxnPut => {
            format!("{} puts of {}-byte values a txn, ", args.txn_ops, args.value_bytes)
        }
        _ => format!("{}-byte values, ", args.value_bytes),
    };
    let endpoints: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    let operation = clap::ValueEnum::to_possible_value(&args.operation)
        .map_or(String::new(), |v| v.get_name().to_string());
    let mut title = format!(
        "rdb bench {operation}: {} connections to {}, {values}{} keys",
        args.connections,
        endpoints.join(","),
        format!("{:?}", workload.keys).to_lowercase(),
    );
    if args.operation == Operation::Watch {
        title += &format!(", {} watchers", args.watchers);
    }
    title
}

/// Opens the watchers of a `watch` run and waits until all are set up.
fn open_watchers(args: &BenchArgs, targets: &[Target]) -> Result<Watchers, ClientError> {
    let body = serde_json::json!({"action": "watch", "payload": {"collection": args.collection, "prefix": ""}});
    let watchers = Watchers::start(targets, args.watchers, args.threads, body.to_string());
    watchers.wait_created(WATCH_SETUP_TIMEOUT).map_err(ClientError::Unavailable)?;
    Ok(watchers)
}

/// Checks the flags; the workload and where each connection goes.
fn plan(args: &BenchArgs) -> Result<(Workload, Vec<Target>), ClientError> {
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
    if args.rate.is_some_and(|r| !(0.0..=1e7).contains(&r)) {
        return Err("--rate is 0 (unpaced) to 10,000,000 requests per second".into());
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

/// Drives every connection until the budget is spent; all stats merged and
/// the time from start to the last answer. Connections are dealt to
/// `--threads` threads, each running its own executor that polls the
/// reactor itself (as wrk's threads each run an epoll loop): a ready socket
/// wakes the thread that owns it, with no hand-off between threads.
fn run(
    args: &BenchArgs,
    workload: Workload,
    targets: Vec<Target>,
    budget: Arc<Budget>,
) -> (Stats, Duration) {
    let started = Instant::now();
    let workload = Arc::new(workload);
    let threads = args.threads.clamp(1, args.connections);
    // One histogram per thread, shared by its connections (one executor
    // thread: the lock is contended only by the progress line): memory
    // stays ~128 KiB per thread however many connections.
    let per_thread: Vec<Arc<Mutex<Stats>>> =
        (0..threads).map(|_| Arc::new(Mutex::new(Stats::default()))).collect();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<_> = (t..args.connections)
                .step_by(threads)
                .map(|i| {
                    let target = targets[i % targets.len()].clone();
                    let rng = Rng::new(args.seed, i as u64);
                    (target, per_thread[t].clone(), rng)
                })
                .collect();
            let (workload, budget) = (workload.clone(), budget.clone());
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || {
                    let executor = async_executor::LocalExecutor::new();
                    let tasks: Vec<_> = mine
                        .into_iter()
                        .map(|(target, stats, rng)| {
                            executor.spawn(drive(
                                target,
                                workload.clone(),
                                budget.clone(),
                                stats,
                                rng,
                            ))
                        })
                        .collect();
                    async_io::block_on(executor.run(futures::future::join_all(tasks)));
                })
                .expect("a thread can be started")
        })
        .collect();
    let mut answered_before = 0;
    let mut next = started + Duration::from_secs(1);
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let so_far = merged(&per_thread);
            let answered = so_far.answered_count();
            eprintln!("{}", progress_line(started.elapsed(), answered - answered_before, &so_far));
            answered_before = answered;
        }
    }
    let elapsed = started.elapsed();
    for worker in workers {
        let _ = worker.join();
    }
    (merged(&per_thread), elapsed)
}

/// One connection's loop: a request, its answer, the next. A request
/// still unanswered at the run's deadline is cut off and counted as
/// unfinished (like wrk, the run ends at its deadline).
async fn drive(
    target: Target,
    workload: Arc<Workload>,
    budget: Arc<Budget>,
    stats: Arc<Mutex<Stats>>,
    mut rng: Rng,
) {
    let mut conn: Option<Conn> = None;
    let mut lease: Option<String> = None;
    let mut body = String::new();
    while budget.take() {
        if workload.operation == Operation::LeaseKeepalive && lease.is_none() {
            match grant_lease(&target, workload.lease_ttl_ms).await {
                Ok((c, id)) => (conn, lease) = (Some(c), Some(id)),
                Err(e) => {
                    stats.lock().unwrap_or_else(PoisonError::into_inner).failed(&e);
                    async_std::task::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            }
        }
        // Paced before the body is made: a watch run stamps the send time in it.
        budget.pace().await;
        let Some(shared_value) =
            next_body(&workload, &mut rng, &budget, lease.as_deref(), &mut body)
        else {
            break;
        };
        let parts: [&[u8]; 3] = match shared_value {
            true => [body.as_bytes(), workload.value.as_bytes(), PUT_SUFFIX],
            false => [body.as_bytes(), b"", b""],
        };
        let started = Instant::now();
        let limit = budget.time_left().unwrap_or(REQUEST_TIMEOUT).min(REQUEST_TIMEOUT);
        let attempt = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => Conn::open(&target, limit).await?,
            };
            let answer = c.command(&parts).await?;
            Ok::<_, std::io::Error>((c, answer))
        };
        let outcome = async_std::future::timeout(limit, attempt).await;
        let failed = {
            let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(Ok((c, answer))) => {
                    s.answered(answer.status, started.elapsed());
                    conn = (!answer.closing).then_some(c);
                    // An expired lease is granted again.
                    lease = lease.filter(|_| answer.status != 404);
                    false
                }
                Ok(Err(e)) => {
                    s.failed(&e);
                    true
                }
                Err(_) if budget.past_deadline() => {
                    s.unfinished += 1;
                    false
                }
                Err(_) => {
                    s.failed(&std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer in 60 s",
                    ));
                    true
                }
            }
        };
        if failed {
            async_std::task::sleep(RECONNECT_DELAY).await;
        }
    }
}

/// Fills `body` with the next request (`lease`: the connection's, for
/// keepalives); true if the workload's shared value and [`PUT_SUFFIX`]
/// follow it (a plain put). None: no new keys are left.
fn next_body(
    workload: &Workload,
    rng: &mut Rng,
    budget: &Budget,
    lease: Option<&str>,
    body: &mut String,
) -> Option<bool> {
    let next_index = || budget.next_index.fetch_add(1, Ordering::Relaxed);
    match workload.operation {
        Operation::LeaseKeepalive => Workload::keepalive_body(lease?, body),
        Operation::TxnPut => {
            let keys = (0..workload.txn_ops)
                .map(|_| workload.next_key(false, rng, next_index))
                .collect::<Option<Vec<_>>>()?;
            workload.txn_put_body(&keys, body);
        }
        Operation::Watch => {
            workload.stamped_put_body(&workload.next_key(false, rng, next_index)?, body)
        }
        Operation::Put | Operation::Get | Operation::Mixed => {
            let get = workload.next_is_get(rng);
            let key = workload.next_key(get, rng, next_index)?;
            if !get {
                workload.put_prefix(&key, body);
                return Some(true);
            }
            workload.get_body(&key, body);
        }
    }
    Some(false)
}

/// Opens a connection to `target` and grants a lease of `ttl_ms` on it:
/// the connection and the lease's id.
async fn grant_lease(target: &Target, ttl_ms: u64) -> std::io::Result<(Conn, String)> {
    let mut conn = Conn::open(target, CONNECT_TIMEOUT).await?;
    let request = format!(r#"{{"action":"lease grant","payload":{{"ttl_ms":{ttl_ms}}}}}"#);
    let mut body = Vec::new();
    let answer = async_std::future::timeout(
        REQUEST_TIMEOUT,
        conn.command_keeping(&[request.as_bytes()], &mut body),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 60 s"))??;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match (answer.status, value["lease"].as_str()) {
        (200, Some(id)) => Ok((conn, id.to_string())),
        _ => Err(std::io::Error::other(format!(
            "lease grant answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&body).trim()
        ))),
    }
}

/// Every thread's stats, merged.
fn merged(per_thread: &[Arc<Mutex<Stats>>]) -> Stats {
    let mut all = Stats::default();
    for stats in per_thread {
        all.merge(&stats.lock().unwrap_or_else(PoisonError::into_inner));
    }
    all
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

    #[test]
    fn a_request_budget_hands_out_exactly_that_many() {
        let budget = Budget {
            deadline: None,
            remaining: Some(AtomicU64::new(3)),
            next_index: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            rate: None,
            paced: AtomicU64::new(0),
        };
        assert_eq!((0..10).filter(|_| budget.take()).count(), 3);
        let endless = Budget {
            deadline: None,
            remaining: None,
            next_index: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            rate: None,
            paced: AtomicU64::new(0),
        };
        assert!(endless.take());
        endless.stopped.store(true, Ordering::Relaxed);
        assert!(!endless.take(), "a stopped run takes no more");
    }
}
