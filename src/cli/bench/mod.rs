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

mod args;
mod conn;
mod report;
mod watch;
mod workload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use args::{parse_duration, BenchArgs, CONNECTIONS_MAX, THREADS_MAX, VALUE_BYTES_MAX};
use workload::PUT_SUFFIX;
pub use workload::{random_key, Consistency, KeyOrder, Operation};

use crate::cli::client::ClientError;
use args::plan;
use conn::{Conn, Target, CONNECT_TIMEOUT};
use report::{process_cpu, progress_line, Stats, Summary};
use watch::Watchers;
use workload::{Rng, ValueKind, Workload};

/// The time one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a request waiting for its turn under `--rate` checks for Ctrl-C.
const PACE_CHECK: Duration = Duration::from_millis(100);
/// The pause before a connection that failed is opened again.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

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
    /// one): request n goes at n / rate seconds after the start. False if
    /// that turn falls at or after the deadline, or the run is stopped
    /// (Ctrl-C) while waiting: the request is not sent.
    async fn pace(&self) -> bool {
        let Some((rate, started)) = self.rate else { return true };
        let n = self.paced.fetch_add(1, Ordering::Relaxed);
        let at = Duration::try_from_secs_f64(n as f64 / rate)
            .ok()
            .and_then(|offset| started.checked_add(offset));
        let Some(at) = at.filter(|at| self.deadline.is_none_or(|d| *at < d)) else {
            return false;
        };
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return false;
            }
            let wait = at.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return true;
            }
            async_io::Timer::after(wait.min(PACE_CHECK)).await;
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
    let keys = match args.operation {
        Operation::LeaseKeepalive => "one lease each".to_string(),
        _ => format!("{} keys", format!("{:?}", workload.keys).to_lowercase()),
    };
    let mut title = format!(
        "rdb bench {operation}: {} connections to {}, {values}{keys}",
        args.connections,
        endpoints.join(","),
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
        if !budget.pace().await {
            break;
        }
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
    if let Some(lease) = lease {
        revoke_lease(conn, &target, &lease).await;
    }
}

/// Revokes a `lease-keepalive` connection's lease once the run is over
/// (best effort, within [`CONNECT_TIMEOUT`]), so runs leave no leases.
async fn revoke_lease(conn: Option<Conn>, target: &Target, lease: &str) {
    let revoke = async {
        let mut conn = match conn {
            Some(conn) => conn,
            None => Conn::open(target, CONNECT_TIMEOUT).await?,
        };
        let request = format!(r#"{{"action":"lease revoke","payload":{{"lease":"{lease}"}}}}"#);
        conn.command(&[request.as_bytes()]).await
    };
    let _ = async_std::future::timeout(CONNECT_TIMEOUT, revoke).await;
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
        Operation::PutValue => {
            workload.put_value_body(&workload.next_key(false, rng, next_index)?, body)
        }
        Operation::Put | Operation::Get | Operation::Mixed => {
            let get = workload.next_is_get(rng);
            let key = workload.next_key(get, rng, next_index)?;
            if get {
                workload.get_body(&key, body);
            } else if workload.values == ValueKind::Distinct {
                workload.put_body(&key, body);
            } else {
                workload.put_prefix(&key, body);
                return Some(true);
            }
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
