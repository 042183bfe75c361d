//! The key-value layer's error: a log entry that is not a command, or a
//! limit set out of its bounds.

/// What went wrong; each variant says what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A log entry that does not decode as a command. Every replica finds
    /// the same bytes, so apply answers it 400 and skips it, identically
    /// everywhere; nothing is retried.
    #[error("{0}")]
    Malformed(String),
    /// A limit configured outside its bounds: the operator fixes the
    /// setting named.
    #[error("{name} must be from 1 to {max} (got {value})")]
    InvalidLimit {
        /// The setting.
        name: &'static str,
        /// What it was set to.
        value: usize,
        /// Its largest allowed value.
        max: usize,
    },
}
