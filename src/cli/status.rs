//! `rdb status`: one table for the whole cluster from any single endpoint
//! (`GET /cluster`): every member's id, addresses, role, term, commit and
//! applied index, lag behind the leader, WAL and state-file bytes, live data
//! (and its share of the space guard's limit), whether
//! the endpoint's node could reach it, and its version.

use serde_json::Value;

use super::client::{Client, ClientArgs, ClientError};

/// Runs `rdb status`; what to print. Exit 3 when no endpoint answers; a
/// member that cannot be reached is a row that says so, not an error.
pub fn status(args: &ClientArgs) -> Result<String, ClientError> {
    let answer = Client::new(args)?.expect_ok("GET", "/cluster", None)?;
    Ok(if args.json { answer.to_string() } else { table(&answer) })
}

/// The columns, with their widths.
const COLUMNS: [(&str, usize); 14] = [
    ("ID", 4),
    ("ROLE", 14),
    ("PEER", 21),
    ("CLIENT URL", 26),
    ("TERM", 6),
    ("COMMIT", 10),
    ("APPLIED", 10),
    ("LAG", 7),
    ("WAL", 9),
    ("STATE", 9),
    ("LIVE", 14),
    ("ALARMS", 8),
    ("VERSION", 8),
    ("REACHABLE", 0),
];

/// The members as a table; the leader's row marked with `*`.
pub fn table(answer: &Value) -> String {
    let members = answer["members"].as_array().cloned().unwrap_or_default();
    let leader = answer["leader"].as_u64().unwrap_or(0);
    // Lag is measured against the leader's commit index, as it reports it.
    let leader_commit = members
        .iter()
        .find(|m| m["id"].as_u64() == Some(leader))
        .and_then(|m| m["status"]["commit_index"].as_u64());
    let mut out = row(&COLUMNS.map(|(name, _)| name.to_string()));
    for member in &members {
        out.push_str(&row(&cells(member, leader, leader_commit)));
    }
    let leader_text = if leader == 0 { "none known".to_string() } else { leader.to_string() };
    out.push_str(&format!(
        "* leader: {leader_text} (term {}, as node {} sees it)",
        answer["term"], answer["id"]
    ));
    out
}

fn cells(member: &Value, leader: u64, leader_commit: Option<u64>) -> [String; 14] {
    let status = &member["status"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let number = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let id = member["id"].as_u64().unwrap_or(0);
    let role = match status["role"].as_str() {
        Some(role) => format!("{role}{}", if id == leader { "*" } else { "" }),
        None => format!("({})", text(&member["role"])),
    };
    // The member's own URL when it advertises one, else the membership's.
    let own_url = text(&status["client_url"]);
    let url = if own_url.is_empty() { text(&member["client_url"]) } else { own_url };
    let lag = match (leader_commit, status["applied_index"].as_u64()) {
        (Some(commit), Some(applied)) => commit.saturating_sub(applied).to_string(),
        _ => "-".to_string(),
    };
    let alarms: Vec<String> = status["alarms"].as_array().into_iter().flatten().map(text).collect();
    let reachable = if member["reachable"].as_bool() == Some(true) {
        "yes".to_string()
    } else {
        format!("no: {}", text(&member["error"]))
    };
    [
        id.to_string(),
        role,
        text(&member["peer"]),
        if url.is_empty() { "-".to_string() } else { url },
        number(&status["term"]),
        number(&status["commit_index"]),
        number(&status["applied_index"]),
        lag,
        bytes(&status["wal_bytes"]),
        bytes(&status["state_bytes"]),
        live(status),
        if alarms.is_empty() { "-".to_string() } else { alarms.join(",") },
        status["version"].as_str().unwrap_or("-").to_string(),
        reachable,
    ]
}

fn row(cells: &[String; 14]) -> String {
    let mut line = String::new();
    for ((_, width), cell) in COLUMNS.iter().zip(cells) {
        line.push_str(&format!("{cell:<width$} "));
    }
    format!("{}\n", line.trim_end())
}

/// The state's live data, with its share of the space guard's limit.
fn live(status: &Value) -> String {
    let used = bytes(&status["state_used_bytes"]);
    match (status["state_used_bytes"].as_u64(), status["state_bytes_max"].as_u64()) {
        (Some(used_bytes), Some(max)) if max > 0 => {
            format!("{used} {:.0}%", used_bytes as f64 * 100.0 / max as f64)
        }
        _ => used,
    }
}

/// A byte count in binary units, as `du -h` shows it ("-" if unknown).
pub fn bytes(value: &Value) -> String {
    let Some(n) = value.as_u64() else { return "-".to_string() };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = n as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{size:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unreachable_member_is_a_row_and_lag_is_against_the_leader() {
        let answer = json!({"id": 1, "leader": 1, "term": 3, "members": [
            {"id": 1, "peer": "127.0.0.1:9081", "client_url": "", "role": "voter",
             "reachable": true, "status": {"role": "leader", "term": 3, "commit_index": 50,
             "applied_index": 50, "wal_bytes": 2048, "state_bytes": 3_145_728,
             "state_used_bytes": 1_048_576, "state_bytes_max": 2_097_152,
             "client_url": "http://127.0.0.1:8081", "version": "0.1.0", "alarms": []}},
            {"id": 2, "peer": "127.0.0.1:9082", "client_url": "", "role": "voter",
             "reachable": true, "status": {"role": "follower", "term": 3, "commit_index": 48,
             "applied_index": 40, "wal_bytes": 10, "state_bytes": 0, "version": "0.1.0",
             "alarms": ["NOSPACE"]}},
            {"id": 3, "peer": "127.0.0.1:9083", "client_url": "", "role": "voter",
             "reachable": false, "status": null, "error": "no connection to member 3"}]});
        let text = table(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID   ROLE"), "{text}");
        assert!(lines[1].contains("leader*") && lines[1].contains("http://127.0.0.1:8081"));
        assert!(lines[1].contains("2.0KiB") && lines[1].contains("3.0MiB"), "{text}");
        assert!(lines[1].contains("1.0MiB 50%"), "live data and its share of the guard: {text}");
        let follower: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(follower[7], "10", "lag = leader commit 50 - applied 40: {text}");
        assert!(lines[2].contains("NOSPACE"));
        assert!(
            lines[3].contains("(voter)") && lines[3].ends_with("no: no connection to member 3")
        );
        assert!(lines[4].starts_with("* leader: 1 (term 3"), "{text}");
    }
}
