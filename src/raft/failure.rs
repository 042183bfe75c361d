//! [`Failure`]: an error from beneath Raft (the log store's disk) that stops
//! the node, carried whole so that the log names the file and the offset.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// An IO or corruption error under Raft, or a broken invariant of the log
/// found by Raft itself. The node must stop; nothing Raft returned it for
/// may be retried. Cheap to clone (the error is shared), and two failures
/// are equal when they read the same, so that results holding one can be
/// compared in tests.
#[derive(Debug, Clone)]
pub struct Failure(Arc<dyn Error + Send + Sync + 'static>);

/// A failure described by a message alone.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

impl Failure {
    /// Wraps `error`, keeping it (and its sources) for the log.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Failure(Arc::new(error))
    }

    /// A broken invariant, described by `why`.
    pub fn invariant(why: impl Into<String>) -> Self {
        Failure(Arc::new(Message(why.into())))
    }

    /// The error as it was raised.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for Failure {
    // Transparent: the wrapped error's own source comes next in a chain.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

impl Eq for Failure {}
