//! The watchers of `rdb bench watch`: `--watchers` streaming watches on the
//! run's collection, dealt over the endpoints and over threads of their
//! own, each counting the put events it receives and, from the send time
//! stamped at the front of each value (`workload::stamp_of`), how long
//! after its put was sent each event arrived. The run's connections put
//! at `--rate` meanwhile (`mod.rs`); every acknowledged put should reach
//! every watcher once.
//!
//! Caveats: delivery times come from the system clock of this machine, so
//! the putters and watchers must be one process (they are); an event whose
//! put failed still counts (rdb may have applied it). A watcher that the
//! node cuts (an error event) or whose stream fails is not reopened: it is
//! counted as cut, and the events it missed show as the shortfall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::conn::{Conn, Target, CONNECT_TIMEOUT};
use super::workload::{now_micros, stamp_of};

/// The most watchers one run opens.
pub const WATCHERS_MAX: usize = 100_000;
/// How long a watcher waits for bytes before it checks whether to stop.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// What the watchers saw, shared by their tasks.
#[derive(Default)]
struct Shared {
    /// Watchers whose `created` line arrived.
    created: AtomicU64,
    /// Put events received, all watchers.
    events: AtomicU64,
    /// Watchers cut by an error event, or whose stream failed or ended.
    cut: AtomicU64,
    /// Set when the run is over.
    stop: AtomicBool,
    /// The first reason a watcher ended early.
    first_cut: Mutex<Option<String>>,
}

/// The watchers of a run, running.
pub struct Watchers {
    shared: Arc<Shared>,
    count: usize,
    threads: Vec<std::thread::JoinHandle<Histogram<u64>>>,
}

/// What the watchers received, for the report.
#[derive(Debug)]
pub struct WatchReport {
    /// Watchers opened.
    pub watchers: usize,
    /// Put events received by all of them.
    pub events: u64,
    /// Events expected: acknowledged puts times watchers.
    pub expected: u64,
    /// Watchers that ended early, and the first one's reason.
    pub cut: u64,
    /// Why the first cut watcher ended.
    pub first_cut: Option<String>,
    /// From a put's sending to an event's arrival, in microseconds.
    pub delivery_us: Histogram<u64>,
}

impl Watchers {
    /// Opens `count` watches of `body` (a watch command, streaming) over
    /// `targets`, on `threads` threads of their own.
    pub fn start(targets: &[Target], count: usize, threads: usize, body: String) -> Watchers {
        let shared = Arc::new(Shared::default());
        let body = Arc::new(body);
        let threads = (0..threads.clamp(1, count))
            .map(|t| {
                let mine: Vec<Target> = (t..count)
                    .step_by(threads.clamp(1, count))
                    .map(|i| targets[i % targets.len()].clone())
                    .collect();
                let (shared, body) = (shared.clone(), body.clone());
                std::thread::Builder::new()
                    .name(format!("bench-watch-{t}"))
                    .spawn(move || watch_thread(mine, &shared, &body))
                    .expect("a thread can be started")
            })
            .collect();
        Watchers { shared, count, threads }
    }

    /// Waits until every watcher is set up; false if `timeout` passed or
    /// one ended first.
    pub fn wait_created(&self, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let count = self.count as u64;
        while self.shared.created.load(Ordering::Relaxed) < count {
            let cut = self.shared.cut.load(Ordering::Relaxed);
            if cut > 0 || Instant::now() >= deadline {
                let why = self.shared.first_cut.lock().unwrap_or_else(PoisonError::into_inner);
                return Err(format!(
                    "{} of {count} watchers set up in {:.1?}; {cut} failed: {}",
                    self.shared.created.load(Ordering::Relaxed),
                    started.elapsed(),
                    why.as_deref().unwrap_or("none failed")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits until `puts` acknowledged puts reached every watcher, or
    /// `grace` passed, then stops them: what they saw.
    pub fn finish(self, puts: u64, grace: Duration) -> WatchReport {
        let expected = puts * self.count as u64;
        let deadline = Instant::now() + grace;
        while self.shared.events.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut delivery_us = new_histogram();
        for thread in self.threads {
            if let Ok(histogram) = thread.join() {
                let _ = delivery_us.add(&histogram);
            }
        }
        let first_cut =
            self.shared.first_cut.lock().unwrap_or_else(PoisonError::into_inner).clone();
        WatchReport {
            watchers: self.count,
            events: self.shared.events.load(Ordering::Relaxed),
            expected,
            cut: self.shared.cut.load(Ordering::Relaxed),
            first_cut,
            delivery_us,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// One thread's watchers, on its own executor, until the run stops; their
/// delivery times.
fn watch_thread(targets: Vec<Target>, shared: &Arc<Shared>, body: &Arc<String>) -> Histogram<u64> {
    let histogram = Arc::new(Mutex::new(new_histogram()));
    let executor = async_executor::LocalExecutor::new();
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|target| {
            executor.spawn(watcher(target, shared.clone(), body.clone(), histogram.clone()))
        })
        .collect();
    async_io::block_on(executor.run(futures::future::join_all(tasks)));
    let histogram = histogram.lock().unwrap_or_else(PoisonError::into_inner);
    histogram.clone()
}

/// One watcher: opens its stream and counts what arrives until the stop.
async fn watcher(
    target: Target,
    shared: Arc<Shared>,
    body: Arc<String>,
    histogram: Arc<Mutex<Histogram<u64>>>,
) {
    let mut ended: Option<String> = None;
    let outcome = async {
        let mut conn = Conn::open(&target, CONNECT_TIMEOUT).await?;
        conn.stream(body.as_bytes(), IDLE_CHECK, |line| {
            if shared.stop.load(Ordering::Relaxed) {
                return false;
            }
            on_line(line, &shared, &histogram, &mut ended)
        })
        .await
    }
    .await;
    let why = match outcome {
        Err(e) => Some(format!("{target:?}: {e}")),
        Ok(()) if shared.stop.load(Ordering::Relaxed) => None,
        Ok(()) => Some(ended.unwrap_or_else(|| format!("{target:?}: the stream ended"))),
    };
    if let Some(why) = why {
        shared.cut.fetch_add(1, Ordering::Relaxed);
        let mut first = shared.first_cut.lock().unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(why);
    }
}

/// Takes one line of a watch stream; false to end the stream (an error
/// event, whose text goes to `ended`).
fn on_line(
    line: &[u8],
    shared: &Shared,
    histogram: &Mutex<Histogram<u64>>,
    ended: &mut Option<String>,
) -> bool {
    // Fields come in name order; "type" is among the last.
    let has = |field: &[u8]| line.windows(field.len()).any(|w| w == field);
    if has(br#""type":"put""#) {
        shared.events.fetch_add(1, Ordering::Relaxed);
        if let Some(sent) = stamp_of(line) {
            let us = now_micros().saturating_sub(sent).max(1);
            let _ = histogram.lock().unwrap_or_else(PoisonError::into_inner).record(us);
        }
    } else if has(br#""type":"created""#) {
        shared.created.fetch_add(1, Ordering::Relaxed);
    } else if has(br#""type":"error""#) {
        *ended = Some(String::from_utf8_lossy(line).into_owned());
        return false;
    }
    true
}

impl WatchReport {
    /// Lines for the table.
    pub fn table(&self, seconds: f64) -> String {
        let ms = |q: f64| self.delivery_us.value_at_quantile(q) as f64 / 1000.0;
        let mut out = format!(
            "watchers      {} ({} ended early{})\n",
            self.watchers,
            self.cut,
            self.first_cut.as_ref().map_or(String::new(), |why| format!("; first: {why}"))
        );
        out += &format!(
            "events        {} received of {} expected, {:.0} events/s\n",
            self.events,
            self.expected,
            self.events as f64 / seconds.max(1e-9)
        );
        out += &format!(
            "delivery ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.delivery_us.max() as f64 / 1000.0
        );
        out
    }

    /// The same as JSON.
    pub fn json(&self, seconds: f64) -> Value {
        let ms = |q: f64| self.delivery_us.value_at_quantile(q) as f64 / 1000.0;
        json!({
            "watchers": self.watchers,
            "ended_early": self.cut,
            "first_ended_because": self.first_cut,
            "events": self.events,
            "expected_events": self.expected,
            "events_per_second": self.events as f64 / seconds.max(1e-9),
            "delivery_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99),
                "max": self.delivery_us.max() as f64 / 1000.0},
        })
    }
}
