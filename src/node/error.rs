//! The node's error: what stopped the event loop, the apply thread, a
//! snapshot or the opening of a data directory, typed by what the operator
//! or the caller does next.
//!
//! - [`Error::is_damage`]: a file of this node cannot be trusted.
//!   Restarting will not help; the operator moves the data directory aside
//!   (the leader then sends a snapshot) or restores a backup.
//! - [`Error::is_retryable`]: the same request may succeed later (the node
//!   was busy, or a snapshot from a peer arrived damaged).
//! - Anything else stops the node: the disk failed, or a thread it needs
//!   is gone. A restart runs recovery, which decides what is durable.

use std::io;
use std::path::{Path, PathBuf};

use crate::raft::{MembershipError, RaftError};

/// What went wrong in the node; see the module docs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WAL or the state file failed (the storage error names the file
    /// and, for damage, the byte offset).
    #[error("{what}: {source}")]
    Storage {
        /// Which file, doing what ("state file commit", "WAL append").
        what: &'static str,
        /// The storage error.
        #[source]
        source: rdb_storage::Error,
    },
    /// Raft refused to go on: its log store failed, or a change it made
    /// cannot be carried out.
    #[error("raft: {0}")]
    Raft(#[from] RaftError),
    /// An operating-system IO error on a snapshot file or directory.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation ("create", "sync", "rename").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A snapshot file that is not whole, fails a checksum, or is not the
    /// snapshot it claims to be.
    #[error("snapshot {}: {reason}", path.display())]
    BadSnapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A membership stored in the state file or a snapshot does not decode.
    #[error("{what}: {source}")]
    Membership {
        /// Where it was read.
        what: &'static str,
        /// Why it does not decode.
        #[source]
        source: MembershipError,
    },
    /// The data directory's files disagree with one another (a WAL that is
    /// not the state file's, a gap no snapshot covers).
    #[error("{0}")]
    Inconsistent(String),
    /// The node is too busy to take the request now.
    #[error("{0}")]
    Busy(&'static str),
    /// A thread the node needs has stopped, could not start, or panicked.
    #[error("{0}")]
    Stopped(String),
}

/// The result of the node's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A storage error on the file `what` names.
    pub fn storage(what: &'static str) -> impl FnOnce(rdb_storage::Error) -> Self {
        move |source| Error::Storage { what, source }
    }

    /// An IO error of `op` on `path`.
    pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Error::Io { op, path: path.to_path_buf(), source }
    }

    /// A snapshot file refused for `reason`.
    pub fn bad_snapshot(path: &Path, reason: impl Into<String>) -> Self {
        Error::BadSnapshot { path: path.to_path_buf(), reason: reason.into() }
    }

    /// True when a file of this node cannot be trusted: the operator must
    /// replace the data directory (or restore a backup); restarting the
    /// node as it is will not help.
    pub fn is_damage(&self) -> bool {
        let corrupt = |e: &rdb_storage::Error| matches!(e, rdb_storage::Error::Corrupt { .. });
        match self {
            Error::Storage { source, .. } => corrupt(source),
            // The WAL, read by Raft: its error is kept whole in the failure.
            Error::Raft(RaftError::Fatal(failure)) => {
                failure.error().downcast_ref::<rdb_storage::Error>().is_some_and(corrupt)
            }
            Error::Membership { .. } | Error::Inconsistent(_) => true,
            _ => false,
        }
    }

    /// True when the node was too busy: the same request may succeed if
    /// made again shortly (answer 503).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy(_))
    }
}
