//! GET /metrics: the node's counters and histograms, gauges of its status,
//! the standard `process_*` metrics and `rdb_build_info`, in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Names follow Prometheus' conventions (base units, `_total` for
//! counters) and, where etcd has the same signal, etcd's meaning.
//!
//! Caveats: the `process_*` metrics come from `/proc/self` and are left out
//! where it cannot be read (not Linux).

use std::fmt::Write as _;

use crate::node::{NodeHandle, Status, GIT_COMMIT, VERSION};

/// The whole page.
pub(super) fn render(node: &NodeHandle) -> String {
    let status = node.status();
    let mut out = String::new();
    node.metrics().render(&mut out);
    status_gauges(&mut out, &status, node.state_bytes_max());
    gauge(&mut out, "rdb_watchers", "Watchers this node serves.", &node.watchers().to_string());
    disk_gauges(&mut out, node.data_dir());
    if let Some(process) = Process::read() {
        process.render(&mut out);
    }
    gauge(&mut out, "rdb_build_info", "Always 1; the labels name the build.", "");
    let _ = writeln!(out, "rdb_build_info{{version=\"{VERSION}\",commit=\"{GIT_COMMIT}\"}} 1");
    out
}

/// Writes the HELP and TYPE lines of a gauge, and its value unless empty.
fn gauge(out: &mut String, name: &str, help: &str, value: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    if !value.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    }
}

fn status_gauges(out: &mut String, status: &Status, state_bytes_max: u64) {
    let gauges = [
        ("rdb_raft_term", "The current Raft term.", status.term),
        ("rdb_raft_leader", "The leader's id (0: none known).", status.leader),
        ("rdb_raft_commit_index", "The highest committed index.", status.commit_index),
        ("rdb_raft_applied_index", "The highest applied index.", status.applied_index),
        ("rdb_raft_apply_lag", "Committed entries not yet applied.", status.apply_lag()),
        ("rdb_raft_last_log_index", "The last index in the log.", status.last_log_index),
        ("rdb_snapshot_index", "The index of the newest snapshot.", status.snapshot_index),
        ("rdb_wal_bytes", "Bytes of WAL segments on disk.", status.wal_bytes),
        ("rdb_wal_segments", "WAL segment files on disk.", status.wal_segments),
        ("rdb_state_bytes", "The state file's length in bytes.", status.state_bytes),
        (
            "rdb_state_used_bytes",
            "Bytes of state pages holding live data.",
            status.state_used_bytes,
        ),
        ("rdb_state_free_pages", "State-file pages free for reuse.", status.state_free_pages),
        ("rdb_state_bytes_max", "The space guard's limit in bytes (0: none).", state_bytes_max),
    ];
    for (name, help, value) in gauges {
        gauge(out, name, help, &value.to_string());
    }
    gauge(out, "rdb_raft_role", "1 for this node's role.", "");
    for role in ["follower", "pre-candidate", "candidate", "leader"] {
        let _ = writeln!(out, "rdb_raft_role{{role=\"{role}\"}} {}", u8::from(role == status.role));
    }
    let help = "1 while the alarm is raised (NOSPACE: writes refused; CORRUPT: the log lost \
                entries it acknowledged).";
    gauge(out, "rdb_alarm", help, "");
    for alarm in [crate::node::ALARM_NOSPACE, crate::node::ALARM_CORRUPT] {
        let raised = status.alarms.contains(&alarm);
        let _ = writeln!(out, "rdb_alarm{{alarm=\"{alarm}\"}} {}", u8::from(raised));
    }
}

/// The file system holding the data directory: what the WAL and the state
/// file can still grow into (node_exporter's figures, for one directory).
fn disk_gauges(out: &mut String, data_dir: &std::path::Path) {
    let Ok(fs) = rustix::fs::statvfs(data_dir) else { return };
    let fragment = fs.f_frsize;
    let available = fs.f_bavail.saturating_mul(fragment);
    let size = fs.f_blocks.saturating_mul(fragment);
    let help = "Bytes available to rdb on the data directory's file system.";
    gauge(out, "rdb_disk_available_bytes", help, &available.to_string());
    let help = "Size of the data directory's file system in bytes.";
    gauge(out, "rdb_disk_size_bytes", help, &size.to_string());
}

/// The process's resources, as Prometheus' client libraries report them.
#[derive(Debug)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: u64,
    max_fds: Option<u64>,
}

/// The kernel's clock ticks per second for /proc times (`USER_HZ`, 100 on
/// every Linux architecture rdb builds for).
const CLOCK_TICKS_PER_S: f64 = 100.0;
/// Bytes per page for /proc's RSS (4 KiB on x86_64 and most aarch64).
const PROC_PAGE_BYTES: u64 = 4096;

impl Process {
    /// Reads /proc/self; None where it is not there.
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces; fields count from
        // after its closing parenthesis, where field 3 is the state.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
        let boot_time_s = std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|line| {
            line.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok())
        })?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        });
        Some(Process {
            cpu_seconds: (utime + stime) as f64 / CLOCK_TICKS_PER_S,
            resident_bytes: field(24)? * PROC_PAGE_BYTES,
            virtual_bytes: field(23)?,
            start_time_seconds: boot_time_s as f64 + start_ticks as f64 / CLOCK_TICKS_PER_S,
            open_fds,
            max_fds,
        })
    }

    fn render(&self, out: &mut String) {
        let cpu = "process_cpu_seconds_total";
        let _ = writeln!(out, "# HELP {cpu} User and system CPU time spent in seconds.\n# TYPE {cpu} counter\n{cpu} {}", self.cpu_seconds);
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &self.resident_bytes.to_string(),
        );
        gauge(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &self.virtual_bytes.to_string(),
        );
        gauge(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &self.start_time_seconds.to_string(),
        );
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            &self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            gauge(
                out,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                &max.to_string(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_itself() {
        let process = Process::read().expect("/proc/self on Linux");
        assert!(process.resident_bytes > 0 && process.virtual_bytes >= process.resident_bytes);
        assert!(process.open_fds >= 3, "{process:?}");
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        // The test process started within the last day, not in the future.
        assert!(process.start_time_seconds <= now_s + 1.0, "{process:?}");
        assert!(process.start_time_seconds > now_s - 86_400.0, "{process:?}");
    }
}
