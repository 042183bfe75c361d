//! The monitoring files under deploy/ as their programs read them:
//! Prometheus' `promtool` checks the alert rules and runs their unit tests
//! (deploy/prometheus-rules.test.yml: made-up series, the alerts that must
//! fire); the Grafana dashboard parses and every panel has a query. That
//! the metrics they name exist is checked against a live node in
//! tests/operator.rs.

mod common;

use std::path::Path;
use std::process::Command;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool").args(args).output().expect("promtool runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    if !common::have_tool("promtool") {
        return;
    }
    let rules = deploy("prometheus-rules.yml");
    promtool(&["check", "rules", rules.to_str().expect("utf-8")]);
    // The test file names the rules relative to itself.
    let tests = deploy("prometheus-rules.test.yml");
    promtool(&["test", "rules", tests.to_str().expect("utf-8")]);
}

#[test]
fn every_alert_has_a_unit_test() {
    let rules = std::fs::read_to_string(deploy("prometheus-rules.yml")).expect("rules");
    let tests = std::fs::read_to_string(deploy("prometheus-rules.test.yml")).expect("tests");
    let alerts: Vec<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    for alert in alerts {
        assert!(tests.contains(&format!("alertname: {alert}\n")), "no test fires {alert}");
    }
}

#[test]
fn the_dashboard_is_grafana_json_with_a_query_per_panel() {
    let text = std::fs::read_to_string(deploy("grafana-dashboard.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dashboard["uid"], "rdb-cluster");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            assert!(expr.contains("job=\"$job\""), "{}: {expr}", panel["title"]);
        }
        let grid = &panel["gridPos"];
        assert!(grid["w"].as_u64().is_some_and(|w| w <= 24) && grid["h"].is_u64());
    }
}
