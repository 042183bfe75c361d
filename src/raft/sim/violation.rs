//! [`Violation`]: what makes a simulated run fail.

use std::fmt;

/// A broken safety property found by the [`super::Checker`], a node that
/// misbehaved (a commit index going back, a read nobody asked for), or a
/// fatal error from a node's Raft. The test that drove the run fails with
/// it; there is nothing to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

impl From<String> for Violation {
    fn from(why: String) -> Self {
        Violation(why)
    }
}

impl From<Violation> for String {
    fn from(violation: Violation) -> Self {
        violation.0
    }
}
