//! The dashboard (GET /ui) in a real browser: headless Chromium driven
//! through ChromeDriver's WebDriver API (plain HTTP and JSON) against a
//! 3-node cluster under load. The page must draw the put throughput and
//! latency charts and list the three members with the leader; a screenshot
//! goes to target/tmp/dashboard-*.png for a person to look at. Then the
//! leader is killed, and the page must show the new leader, the dead member
//! as unreachable and the change in its list.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::TestCluster;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A ChromeDriver process and one browser session; both ended on drop.
struct Browser {
    driver: Child,
    url: String,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    fn start(port: u16, profile: &std::path::Path) -> Browser {
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser { driver, url, session: String::new(), agent };
        let deadline = Instant::now() + WAIT;
        while browser.agent.get(&format!("{}/status", browser.url)).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"].as_str().expect("a session").to_string();
        browser
    }

    /// A WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let response = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
            None if method == "GET" => self.agent.get(&url).call(),
            None => self.agent.delete(&url).call(),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text =
            response.body_mut().with_config().limit(64 << 20).read_to_string().expect("text");
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        assert!(answer["value"]["error"].is_null(), "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn run(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Polls `script` until it returns true; the page's text on failure.
    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        while self.run(script) != json!(true) {
            let page = self.run("return document.body.innerText;");
            assert!(Instant::now() < deadline, "{what}: never so; the page says:\n{page}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn screenshot(&self, name: &str) {
        let png = self.session_call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, bytes).expect("saved");
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.url, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Puts to node `id` until `stop`, at most `max` of them.
fn load(cluster: &TestCluster, id: u16, stop: &AtomicBool, max: u32) {
    for n in 0..max {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let _ = cluster
            .post_raw_maybe(id, common::put("load", &format!("k{n}"), "v").to_string().as_bytes());
    }
}

#[test]
fn the_dashboard_shows_the_cluster_live_and_a_new_leader() {
    if !common::have_tool("chromedriver") || !common::have_tool("chromium") {
        return;
    }
    let base = common::ports::base("dashboard");
    let mut cluster = TestCluster::start(3, base, &[]);
    let leader = cluster.wait_for_leader(WAIT);
    // The page is served by a follower, so that it outlives the leader.
    let viewer = if leader == 1 { 2 } else { 1 };
    let profile = tempfile::tempdir().expect("a browser profile");
    let browser = Browser::start(base + 70, profile.path());
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        scope.spawn(|| load(&cluster, viewer, &stop, 200_000));
        browser.open(&format!("{}/ui", cluster.nodes[usize::from(viewer) - 1].client_url()));
        browser.wait_for(
            "three members and the leader",
            &format!("return document.querySelectorAll('#members tbody tr').length === 3 \
                      && document.getElementById('leader').textContent === '{leader}' \
                      && document.querySelector('#members tr[data-id=\"{leader}\"]').dataset.role === 'leader';"),
        );
        browser.wait_for(
            "the put throughput and latency charts",
            "return document.querySelector('#throughput path[data-action=\"put\"]') !== null \
             && document.querySelector('#latency path[data-action=\"put\"]') !== null \
             && /put \\d/.test(document.getElementById('throughput-legend').textContent);",
        );
        browser.screenshot("dashboard-under-load.png");
        stop.store(true, Ordering::Relaxed);
    });
    cluster.kill(leader);
    browser.wait_for(
        "a new leader, the old one unreachable, the change listed",
        &format!("const now = document.getElementById('leader').textContent; \
                  return now !== '{leader}' && now !== 'none' && now !== '?' \
                  && document.querySelector('#members tr[data-id=\"{leader}\"]').dataset.role === 'unreachable' \
                  && document.querySelector('#leader-changes li[data-leader]') !== null;"),
    );
    let shown = browser.run("return document.getElementById('leader').textContent;");
    let actual = cluster.wait_for_leader(WAIT);
    assert_eq!(shown, json!(actual.to_string()), "the page shows the cluster's leader");
    browser.screenshot("dashboard-after-failover.png");
}
