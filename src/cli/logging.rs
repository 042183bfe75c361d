//! Log lines for people, for journald and for log shippers.
//!
//! - `text` (the default) on a terminal: `[time LEVEL target] message`.
//! - `text` under systemd, when stderr is the journal's stream (systemd
//!   sets `JOURNAL_STREAM` to its `device:inode`): `<N>message`, the
//!   priority prefix of sd-daemon(3), so that journald records each line's
//!   level (`journalctl -u rdb -p err` finds the errors) and adds its own
//!   timestamp.
//! - `json`: one object per line, `{"ts", "level", "target", "msg"}`.
//!
//! `RUST_LOG` chooses what is logged (env_logger's syntax; default
//! `info`).

use std::io::Write as _;

/// How log lines look (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people; with syslog priority prefixes under systemd.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The flag's value for it.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The line style chosen for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Terminal,
    Journal,
    Json,
}

/// Installs the logger; call once, first thing.
pub fn init(format: LogFormat) {
    let style = match format {
        LogFormat::Json => Style::Json,
        LogFormat::Text if stderr_is_the_journal() => Style::Journal,
        LogFormat::Text => Style::Terminal,
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |buf, record| {
            let time = buf.timestamp_millis().to_string();
            let line = format_line(style, record.level(), record.target(), record.args(), &time);
            writeln!(buf, "{line}")
        })
        .init();
}

/// One log line, without its newline.
fn format_line(
    style: Style,
    level: log::Level,
    target: &str,
    message: &std::fmt::Arguments<'_>,
    time: &str,
) -> String {
    match style {
        Style::Terminal => format!("[{time} {level:<5} {target}] {message}"),
        Style::Journal => format!("<{}>{message}", syslog_priority(level)),
        Style::Json => serde_json::json!({
            "ts": time, "level": level.as_str().to_ascii_lowercase(), "target": target,
            "msg": message.to_string(),
        })
        .to_string(),
    }
}

/// sd-daemon(3)'s priority for `level`: SD_ERR 3, SD_WARNING 4, SD_INFO 6,
/// SD_DEBUG 7.
fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Whether stderr is the stream systemd connected to the journal: its
/// device and inode are the ones `JOURNAL_STREAM` names (systemd.exec(5)).
fn stderr_is_the_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((device, inode)) = stream.split_once(':') else { return false };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
    device.parse() == Ok(stderr.dev()) && inode.parse() == Ok(stderr.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_style_writes_its_line() {
        let line = |style, level| {
            format_line(style, level, "rdb::node", &format_args!("a \"quoted\" word"), "T")
        };
        assert_eq!(
            line(Style::Terminal, log::Level::Warn),
            "[T WARN  rdb::node] a \"quoted\" word"
        );
        assert_eq!(line(Style::Journal, log::Level::Error), "<3>a \"quoted\" word");
        assert_eq!(line(Style::Journal, log::Level::Info), "<6>a \"quoted\" word");
        let json: serde_json::Value =
            serde_json::from_str(&line(Style::Json, log::Level::Info)).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"ts": "T", "level": "info", "target": "rdb::node",
                                            "msg": "a \"quoted\" word"})
        );
    }
}
