//! The error of `rdb serve` and `rdb dev`: why a node or a local cluster
//! could not start or stopped, typed by what the operator does next. (The
//! client subcommands have their own, [`super::client::ClientError`], whose
//! exit codes scripts test.)

/// Why `rdb serve` or `rdb dev` stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, the config file or an environment variable is wrong: fix
    /// it and run the command again.
    #[error("{0}")]
    Usage(String),
    /// A limit set out of its bounds.
    #[error(transparent)]
    Limits(#[from] crate::kv::Error),
    /// A TLS file does not load.
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    /// The node could not open its data directory, or stopped.
    #[error(transparent)]
    Node(#[from] crate::node::Error),
    /// Something the command needs from the system failed: a port to
    /// listen on, a file, a thread, a child process. Fix the system (free
    /// the port, the disk) and run again.
    #[error("{0}")]
    System(String),
}

impl Error {
    /// What to tell the operator beside the error, if anything: a damaged
    /// data directory is not fixed by restarting.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Node(error) if error.is_damage() => Some(
                "this node's data cannot be trusted; restarting will not help: move the data \
                 directory aside and replace this member with a new id (rdb member add, then \
                 rdb member remove this one; docs/OPERATIONS.md, \"A node will not start\"), or \
                 restore the whole cluster from a backup",
            ),
            Error::Usage(_) => Some("see rdb --help"),
            _ => None,
        }
    }
}
