//! Storage errors, typed by what the caller does next.
//!
//! - [`Error::InvalidArgument`]: the caller broke the API's contract (a gap in
//!   appended indexes, a term going down). Nothing changed; fix the caller.
//! - [`Error::TooLarge`]: a key, value or name is above its limit. Nothing
//!   changed; answer the client.
//! - [`Error::Io`], [`Error::Poisoned`]: the disk failed. The component that
//!   returned it refuses further writes; the node must stop and restart,
//!   letting recovery decide what is durable.
//! - [`Error::Corrupt`]: a file cannot be trusted. The node must stop with
//!   the message, which names the file and the byte offset.

use std::io;
use std::path::PathBuf;

/// The result type of every fallible storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in storage; see the module docs for what each variant asks
/// of the caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system IO error on a named file.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Stored bytes fail their checksum or break an invariant of the format,
    /// in a place a crash cannot explain.
    #[error("corrupt {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage inside `path`.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The caller asked for something the API does not allow; nothing changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A key, value or name is above its limit; nothing changed.
    #[error("{what} of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What was too large: "key", "value" or "tree name".
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An earlier IO error left the in-memory state unsure of what is on disk;
    /// the component must be reopened, which runs recovery.
    #[error("storage failed earlier and must be reopened: {0}")]
    Poisoned(String),
}

impl Error {
    /// Wraps an IO error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A corruption error at `offset` of `path`.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), offset, reason: reason.into() }
    }

    /// True when the node must stop: the disk failed or cannot be trusted.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::InvalidArgument(_) | Error::TooLarge { .. })
    }
}
