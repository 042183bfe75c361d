//! TLS helpers for tests: certificates from deploy/gen-certs.sh, the
//! flags that give a node its certificate, and curl as a client runs it.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs deploy/gen-certs.sh into `dir` for `nodes` (`NAME:IP` each).
pub fn gen_certs(dir: &Path, nodes: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gen-certs.sh");
    let status = Command::new(script)
        .arg(dir)
        .args(nodes)
        .stdout(Stdio::null())
        .status()
        .expect("gen-certs.sh runs");
    assert!(status.success(), "gen-certs.sh failed");
}

/// curl as a client would run it; returns (HTTP status or 0 on failure, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = if out.status.success() { code.trim().parse().unwrap_or(0) } else { 0 };
    (code, body.to_string())
}

/// The `rdb serve` flags that give a node `name`'s certificate from `certs`.
pub fn tls_args(certs: &Path, name: &str) -> Vec<String> {
    let file = |f: String| certs.join(f).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("{name}.pem")),
        "--tls-key".into(),
        file(format!("{name}-key.pem")),
        "--tls-ca".into(),
        file("ca.pem".into()),
    ]
}
