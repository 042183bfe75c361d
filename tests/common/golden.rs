//! Golden scripts (etcd raft's `testdata/*.txt`, toydb's goldenscripts):
//! a file of commands, each followed by `----` and the output it must
//! print, blocks separated by blank lines; `#` lines are comments. A
//! runner turns each command into output; [`check`] compares, or with
//! `RDB_SCRIPTS_REWRITE=1` rewrites the file with what the commands print
//! now (review the diff).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Set to rewrite the expected output.
pub const REWRITE: &str = "RDB_SCRIPTS_REWRITE";

/// One command and the output it must print.
pub struct Case {
    /// The command line.
    pub command: String,
    /// The expected output (lines, without the trailing newline).
    pub expected: String,
}

/// The blocks of a script: each with the comments before it, the last
/// with only the trailing comments.
pub fn parse(text: &str) -> Vec<(String, Option<Case>)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    let mut preamble = String::new();
    while let Some(line) = lines.next() {
        if line.starts_with('#') || line.trim().is_empty() {
            preamble.push_str(line);
            preamble.push('\n');
            continue;
        }
        let command = line.to_string();
        assert_eq!(lines.next(), Some("----"), "a command must be followed by ----: {command}");
        let mut expected = Vec::new();
        while let Some(line) = lines.next_if(|l| !l.trim().is_empty()) {
            expected.push(line);
        }
        // The blank line that ends the block belongs to it.
        lines.next_if(|l| l.trim().is_empty());
        blocks.push((
            std::mem::take(&mut preamble),
            Some(Case { command, expected: expected.join("\n") }),
        ));
    }
    blocks.push((preamble, None));
    blocks
}

/// Runs every command of the script at `path` through `run` (its output,
/// or why it failed) and compares with the expected output.
pub fn check(
    path: &Path,
    mut run: impl FnMut(&str) -> Result<String, String>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    for (preamble, case) in parse(&text) {
        rewritten.push_str(&preamble);
        let Some(case) = case else { continue };
        let actual = run(&case.command).unwrap_or_else(|why| format!("error: {why}"));
        if actual != case.expected {
            failures.push(format!(
                "{}: `{}`\n  expected:\n{}\n  actual:\n{}",
                path.display(),
                case.command,
                case.expected,
                actual
            ));
        }
        let _ = write!(rewritten, "{}\n----\n{}", case.command, actual);
        rewritten.push_str(if actual.is_empty() { "\n" } else { "\n\n" });
    }
    if std::env::var_os(REWRITE).is_some() {
        return std::fs::write(path, rewritten).map_err(|e| e.to_string());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// The `.txt` scripts in `dir` (relative to the package), sorted.
pub fn scripts(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scripts in {}", dir.display());
    paths
}
