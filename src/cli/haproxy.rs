//! The shipped haproxy configuration (`deploy/haproxy.cfg`), adapted to
//! other addresses and certificate paths: what `rdb dev --haproxy` runs,
//! and what the haproxy test runs in front of a real TLS cluster, so the
//! file users copy is the file that is tested.
//!
//! Adapting rewrites only these directives of the shipped file and keeps
//! every other line as it is: the frontend's `bind`, the `stats socket`,
//! the `ca-file` of `default-server` (or, without TLS, its TLS options),
//! and the `server` lines, which become one per node built from the first
//! shipped one. A shipped file missing any of them is an error, so a change
//! to it that the adaptation does not understand fails its test.

use super::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `deploy/haproxy.cfg` as shipped.
pub const SHIPPED_CONFIG: &str = include_str!("../../deploy/haproxy.cfg");

/// Where the adapted configuration points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyPlan {
    /// The address clients use.
    pub bind: SocketAddr,
    /// With TLS: the frontend's certificate and key in one PEM, and the CA
    /// that signed the nodes' certificates. Without: plain HTTP throughout.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The admin socket (`show stat`).
    pub stats_socket: PathBuf,
    /// Each node: its server name, its API address, and the name its
    /// certificate carries (checked with `verifyhost`).
    pub servers: Vec<(String, SocketAddr, String)>,
}

/// `shipped` with `plan`'s addresses and paths; the error names the
/// directive the file lacks.
pub fn adapt(shipped: &str, plan: &HaproxyPlan) -> Result<String, Error> {
    let mut out = Vec::new();
    let mut seen = [false; 4];
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let tokens: Vec<&str> = trimmed.split_whitespace().collect();
        match tokens.first().copied() {
            Some("bind") => {
                seen[0] = true;
                let tls = plan.tls.as_ref().map(|(pem, _)| format!(" ssl crt {}", pem.display()));
                out.push(format!("{indent}bind {}{}", plan.bind, tls.unwrap_or_default()));
            }
            Some("stats") if tokens.get(1) == Some(&"socket") => {
                seen[1] = true;
                let path = plan.stats_socket.display();
                out.push(format!("{indent}stats socket {path} mode 600 level admin"));
            }
            Some("default-server") => {
                seen[2] = true;
                out.push(format!("{indent}{}", default_server(&tokens, plan).join(" ")));
            }
            Some("server") if !seen[3] => {
                seen[3] = true;
                for (name, addr, tls_name) in &plan.servers {
                    let line = server(&tokens, name, *addr, tls_name, plan.tls.is_some());
                    out.push(format!("{indent}{}", line.join(" ")));
                }
            }
            Some("server") => {}
            _ => out.push(line.to_string()),
        }
    }
    let names = ["bind", "stats socket", "default-server", "server"];
    if let Some(missing) = seen.iter().position(|seen| !seen) {
        return Err(Error::System(format!(
            "the haproxy configuration has no `{}` line",
            names[missing]
        )));
    }
    Ok(out.join("\n") + "\n")
}

/// `default-server` with the CA path replaced, or without TLS options.
fn default_server(tokens: &[&str], plan: &HaproxyPlan) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        match (token, &plan.tls) {
            ("ca-file", Some((_, ca))) => {
                out.push(format!("ca-file {}", ca.display()));
                i += 1;
            }
            ("ca-file" | "verify", None) => i += 1,
            ("ssl", None) => {}
            _ => out.push(token.to_string()),
        }
        i += 1;
    }
    out
}

/// One `server` line from the shipped template's options.
fn server(
    template: &[&str],
    name: &str,
    addr: SocketAddr,
    tls_name: &str,
    tls: bool,
) -> Vec<String> {
    let mut out = vec!["server".to_string(), name.to_string(), addr.to_string()];
    let mut i = 3;
    while i < template.len() {
        match template[i] {
            "sni" | "verifyhost" if !tls => i += 1,
            "sni" => {
                out.push(format!("sni str({tls_name})"));
                i += 1;
            }
            "verifyhost" => {
                out.push(format!("verifyhost {tls_name}"));
                i += 1;
            }
            token => out.push(token.to_string()),
        }
        i += 1;
    }
    out
}

/// Whether `haproxy` can be run.
pub fn installed() -> bool {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Writes the adapted configuration into `dir` and starts haproxy in the
/// foreground on it, its output going to `dir/haproxy.log`.
pub fn start(plan: &HaproxyPlan, dir: &std::path::Path) -> Result<std::process::Child, Error> {
    let config = adapt(SHIPPED_CONFIG, plan)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::System(format!("{}: {e}", dir.display())))?;
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).map_err(|e| Error::System(format!("{}: {e}", path.display())))?;
    let log_path = dir.join("haproxy.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| Error::System(format!("{}: {e}", log_path.display())))?;
    let log_err =
        log.try_clone().map_err(|e| Error::System(format!("{}: {e}", log_path.display())))?;
    std::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| Error::System(format!("cannot start haproxy: {e}")))
}

/// The backend the shipped configuration defines.
pub const BACKEND: &str = "rdb_nodes";

/// Asks the admin socket at `socket` for each server of [`BACKEND`] and its
/// status ("UP", "DOWN", "UP 1/2", ...).
pub fn server_states(socket: &std::path::Path) -> std::io::Result<Vec<(String, String)>> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    stream.write_all(b"show stat\n")?;
    let mut csv = String::new();
    stream.take(1 << 20).read_to_string(&mut csv)?;
    Ok(parse_show_stat(&csv, BACKEND))
}

/// The status of each server of backend `backend` from the admin socket's
/// `show stat` CSV: (server name, status such as "UP", "DOWN", "UP 1/2").
pub fn parse_show_stat(csv: &str, backend: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status)) = (column("pxname"), column("svname"), column("status"))
    else {
        return Vec::new();
    };
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.len() > status && f[px] == backend && f[sv] != "BACKEND" && f[sv] != "FRONTEND"
        })
        .map(|f| (f[sv].to_string(), f[status].to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(tls: bool) -> HaproxyPlan {
        HaproxyPlan {
            bind: "127.0.0.1:8080".parse().expect("addr"),
            tls: tls.then(|| (PathBuf::from("/t/front.pem"), PathBuf::from("/t/ca.pem"))),
            stats_socket: PathBuf::from("/t/admin.sock"),
            servers: (1..=2)
                .map(|i| {
                    (
                        format!("rdb{i}"),
                        format!("127.0.0.1:808{i}").parse().expect("addr"),
                        "localhost".into(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_shipped_file_adapts_with_and_without_tls() {
        let with = adapt(SHIPPED_CONFIG, &plan(true)).expect("adapts");
        assert!(with.contains("bind 127.0.0.1:8080 ssl crt /t/front.pem"), "{with}");
        assert!(with.contains("ca-file /t/ca.pem"), "{with}");
        assert!(
            with.contains("server rdb2 127.0.0.1:8082 sni str(localhost) verifyhost localhost"),
            "{with}"
        );
        assert!(!with.contains("10.0.0."), "{with}");
        let without = adapt(SHIPPED_CONFIG, &plan(false)).expect("adapts");
        assert!(without.contains("bind 127.0.0.1:8080\n"), "{without}");
        assert!(!without.contains("ssl") && !without.contains("verify"), "{without}");
        assert!(without.contains("server rdb1 127.0.0.1:8081\n"), "{without}");
        assert!(without.contains("http-check send meth GET uri /health"), "kept as shipped");
    }

    #[test]
    fn a_file_without_the_directives_is_refused() {
        let error = adapt("global\n    maxconn 10\n", &plan(false)).unwrap_err();
        assert!(error.to_string().contains("bind"), "{error}");
    }

    #[test]
    fn show_stat_is_read_by_column_name() {
        let csv = "# pxname,svname,qcur,status,weight\nrdb_https,FRONTEND,,OPEN,\n\
                   rdb_nodes,rdb1,0,UP,1\nrdb_nodes,rdb2,0,DOWN,1\nrdb_nodes,BACKEND,0,UP,2\n";
        assert_eq!(
            parse_show_stat(csv, "rdb_nodes"),
            vec![("rdb1".into(), "UP".into()), ("rdb2".into(), "DOWN".into())]
        );
    }
}
