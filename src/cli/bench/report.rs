//! What `rdb bench` counts and prints: per-connection latency histograms
//! (HDR, microseconds, 3 significant digits) and status counts, merged for
//! the progress line each second and for the final table or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// The largest latency recorded exactly, in microseconds (longer ones are
/// recorded as this).
const LATENCY_US_MAX: u64 = 60_000_000;

/// What one connection (or all of them, merged) saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every answered request, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused, reset, timed out,
    /// a malformed answer), by what happened (at most
    /// [`ERROR_KINDS_MAX`] messages; the rest under "other errors").
    pub errors: BTreeMap<String, u64>,
    /// Requests cut off at the run's deadline, unanswered: neither answered
    /// nor errors (the run ends at its deadline).
    pub unfinished: u64,
}

/// Distinct error messages kept.
pub const ERROR_KINDS_MAX: usize = 16;

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("static histogram bounds are valid"),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            unfinished: 0,
        }
    }
}

impl Stats {
    /// Records an answer with `status` after `latency`.
    pub fn answered(&mut self, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
        self.latency_us.saturating_record(us);
        *self.statuses.entry(status).or_default() += 1;
    }

    /// Records a request without an answer, under its error's message
    /// (what a user needs: "invalid peer certificate: UnknownIssuer", not
    /// "invalid data").
    pub fn failed(&mut self, what: &std::io::Error) {
        let mut message: String = what.to_string().chars().take(160).collect();
        if !self.errors.contains_key(&message) && self.errors.len() >= ERROR_KINDS_MAX {
            message = "other errors".into();
        }
        *self.errors.entry(message).or_default() += 1;
    }

    /// Adds `other` into this.
    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency_us.add(&other.latency_us);
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (what, n) in &other.errors {
            *self.errors.entry(what.clone()).or_default() += n;
        }
        self.unfinished += other.unfinished;
    }

    /// Answered requests.
    pub fn answered_count(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Requests without an answer.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Answers with a 2xx status.
    pub fn success_count(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum()
    }

    /// Answers with another status.
    pub fn non_2xx_count(&self) -> u64 {
        self.answered_count() - self.success_count()
    }

    /// The latency at `quantile` (0..=1), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// One progress line (stderr): the last second's answered requests, p99
/// so far.
pub fn progress_line(elapsed: Duration, ops_in_second: u64, so_far: &Stats) -> String {
    format!(
        "{:>4.0}s {:>8} ops/s  p99 so far {:>7.2} ms  non-2xx {}  errors {}",
        elapsed.as_secs_f64(),
        ops_in_second,
        so_far.latency_ms(0.99),
        so_far.non_2xx_count(),
        so_far.error_count()
    )
}

/// The whole run, for the final report.
#[derive(Debug)]
pub struct Summary {
    /// A line saying what ran.
    pub title: String,
    /// Everything merged.
    pub stats: Stats,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// CPU this process spent (user + system), if /proc told.
    pub client_cpu: Option<Duration>,
    /// What the watchers of a `watch` run received.
    pub watch: Option<super::watch::WatchReport>,
}

impl Summary {
    /// Answered requests per second.
    pub fn ops_per_second(&self) -> f64 {
        self.stats.answered_count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The client's CPU per answered request, in microseconds.
    pub fn client_cpu_us_per_op(&self) -> Option<f64> {
        let ops = self.stats.answered_count();
        self.client_cpu.filter(|_| ops > 0).map(|cpu| cpu.as_secs_f64() * 1e6 / ops as f64)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = &self.stats;
        let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let mut out = format!("{}\n", self.title);
        out += &format!(
            "requests      {} answered in {:.2} s\n",
            s.answered_count(),
            self.elapsed.as_secs_f64()
        );
        out += &format!("throughput    {:.0} ops/s\n", self.ops_per_second());
        out += &format!(
            "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
            s.latency_ms(0.5),
            s.latency_ms(0.9),
            s.latency_ms(0.99),
            s.latency_ms(0.999),
            s.latency_us.max() as f64 / 1000.0
        );
        out += &format!(
            "statuses      {}\n",
            if statuses.is_empty() { "none".into() } else { statuses.join(", ") }
        );
        out += &format!(
            "errors        {}\n",
            if errors.is_empty() { "none".into() } else { errors.join(", ") }
        );
        if s.unfinished > 0 {
            out +=
                &format!("unfinished    {} in flight at the deadline, not counted\n", s.unfinished);
        }
        if let Some(us) = self.client_cpu_us_per_op() {
            out += &format!("client CPU    {us:.1} us per request (this process)\n");
        }
        if let Some(watch) = &self.watch {
            out += &watch.table(self.elapsed.as_secs_f64());
        }
        out.trim_end().to_string()
    }

    /// The same as JSON, for scripts.
    pub fn json(&self) -> Value {
        let s = &self.stats;
        let mut out = json!({
            "title": self.title,
            "requests": s.answered_count(),
            "seconds": self.elapsed.as_secs_f64(),
            "ops_per_second": self.ops_per_second(),
            "latency_ms": {
                "p50": s.latency_ms(0.5), "p90": s.latency_ms(0.9), "p99": s.latency_ms(0.99),
                "p999": s.latency_ms(0.999), "max": s.latency_us.max() as f64 / 1000.0,
            },
            "statuses": s.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "errors": s.errors,
            "unfinished": s.unfinished,
            "client_cpu_us_per_request": self.client_cpu_us_per_op(),
        });
        if let Some(watch) = &self.watch {
            out["watch"] = watch.json(self.elapsed.as_secs_f64());
        }
        out
    }
}

/// CPU time (user + system) this process has used, from /proc/self/stat
/// (in clock ticks of 1/100 s, Linux's USER_HZ on every common platform).
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge_and_report() {
        let mut a = Stats::default();
        for ms in 1..=100 {
            a.answered(200, Duration::from_millis(ms));
        }
        let mut b = Stats::default();
        b.answered(404, Duration::from_millis(500));
        b.failed(&std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        for i in 0..100 {
            b.failed(&std::io::Error::other(format!("distinct {i}")));
        }
        assert_eq!(b.errors.len(), ERROR_KINDS_MAX + 1, "bounded, plus \"other errors\"");
        assert_eq!(b.errors["other errors"], 100 - (ERROR_KINDS_MAX as u64 - 1));
        a.merge(&b);
        assert_eq!((a.answered_count(), a.success_count(), a.non_2xx_count()), (101, 100, 1));
        assert_eq!(a.error_count(), 101);
        assert!((a.latency_ms(0.5) - 51.0).abs() < 0.1, "{}", a.latency_ms(0.5));
        let summary = Summary {
            title: "t".into(),
            stats: a,
            elapsed: Duration::from_secs(2),
            client_cpu: Some(Duration::from_millis(101)),
            watch: None,
        };
        assert!((summary.ops_per_second() - 50.5).abs() < 1e-9);
        let json = summary.json();
        assert_eq!(json["statuses"]["404"], 1);
        assert_eq!(json["client_cpu_us_per_request"], 1000.0);
        assert!(summary.table().contains("200: 100, 404: 1"), "{}", summary.table());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert_ne!(spin, 1);
        assert!(process_cpu().is_some());
    }
}
