//! The command line: `rdb serve`, `rdb dev`, and the subcommands that drive
//! a running cluster (`rdb put|get|delete|cas|range|collections|drop`, `rdb
//! member`, `rdb leader`, `rdb status`, `rdb bench`).

pub mod bench;
pub mod client;
mod config;
mod dev;
mod dev_certs;
mod error;
pub mod haproxy;
pub mod inspect;
pub mod kv;
pub mod logging;
pub mod member;
mod notify;
mod serve;
pub mod snapshot;
pub mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use config::{ServeConfig, MEMBERS_MAX};
pub use dev::{dev, DevOptions, DEV_NODES_MAX};
pub use error::Error;
pub use serve::serve;

/// rdb: a fault-tolerant, replicated key-value store.
#[derive(Debug, Parser)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("RDB_GIT_COMMIT"), ")"), about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Cmd,
    /// Log lines as text (with syslog priority prefixes when systemd's
    /// journal is stderr) or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Cmd {
    /// Run one node (what the systemd unit runs).
    Serve(ServeArgs),
    /// Run a local cluster on 127.0.0.1 for trying rdb out.
    Dev(DevArgs),
    /// List, add, promote or remove cluster members (through any node).
    Member {
        /// What to do.
        #[command(subcommand)]
        command: member::MemberCmd,
        /// Where the cluster is.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Move leadership to another voter (through any node).
    Leader {
        /// What to do.
        #[command(subcommand)]
        command: member::LeaderCmd,
        /// Where the cluster is.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Save a node's snapshot to a file, restore a data directory from one,
    /// or check one.
    Snapshot {
        /// What to do.
        #[command(subcommand)]
        command: snapshot::SnapshotCmd,
    },
    /// Look inside a node's data directory, offline and read-only (safe
    /// beside the running node).
    Inspect(inspect::InspectArgs),
    /// One table of every member's role, indexes, lag, sizes and
    /// reachability, from any one node.
    Status {
        /// Where the cluster is.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Load a cluster (puts, gets, txns, lease keepalives, watches) and report throughput and latency.
    Bench(bench::BenchArgs),
    /// The key-value actions (through any node).
    #[command(flatten)]
    Kv(kv::KvCmd),
}

/// `rdb serve` flags; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML config file (keys as the long flags, with underscores).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id, listed in --peers.
    #[arg(long)]
    pub id: Option<u64>,
    /// The data directory (wal/, state/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The client API address.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// The peer address to listen on (default: this node's entry in --peers).
    #[arg(long)]
    pub raft: Option<std::net::SocketAddr>,
    /// The initial members of a new cluster as id=host:port, comma-separated,
    /// this node included (ignored once the data directory holds a
    /// membership).
    #[arg(long)]
    pub peers: Option<String>,
    /// Join a running cluster: start knowing no members, never campaign, and
    /// wait for its leader to add this node (POST /admin/members).
    #[arg(long)]
    pub join: bool,
    /// The cluster name peers must share.
    #[arg(long)]
    pub cluster: Option<String>,
    /// The Raft tick in milliseconds.
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Ticks without a leader before an election.
    #[arg(long)]
    pub election_ticks: Option<u32>,
    /// Milliseconds before a request is answered 503 or 504.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Compact the WAL (below the durable state file) after this many
    /// entries applied since the last compaction.
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// ... or after the WAL grew this many bytes since the last compaction.
    #[arg(long)]
    pub snapshot_wal_bytes: Option<u64>,
    /// Entries kept in the WAL below the compaction point for slightly slow
    /// followers.
    #[arg(long)]
    pub compaction_margin_entries: Option<u64>,
    /// The WAL segment size limit in bytes.
    #[arg(long)]
    pub wal_segment_bytes: Option<u64>,
    /// Bytes per snapshot chunk sent to a follower.
    #[arg(long)]
    pub snapshot_chunk_bytes: Option<usize>,
    /// This node's TLS certificate (PEM): with --tls-key and --tls-ca, HTTPS
    /// for clients and mutual TLS between peers.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA that signs every node's certificate (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Require HTTP clients to present a certificate signed by this CA.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// The largest request body in bytes (default 3 MiB, at most 16 MiB).
    #[arg(long)]
    pub body_bytes_max: Option<usize>,
    /// The largest key in bytes (default 1024, at most 4096).
    #[arg(long)]
    pub key_bytes_max: Option<usize>,
    /// The largest value in bytes (default and most: 1 MiB).
    #[arg(long)]
    pub value_bytes_max: Option<usize>,
    /// The URL clients reach this node at, shown by `rdb status` (default:
    /// http(s)://<--http> unless that is a wildcard address).
    #[arg(long)]
    pub advertise_client_url: Option<String>,
    /// The space guard: past this many bytes of live data in the state file
    /// puts are refused (507, alarm NOSPACE) until deletes free space; 0
    /// turns it off (default 8 GiB).
    #[arg(long)]
    pub state_bytes_max: Option<u64>,
    /// Changes kept in memory for watchers resuming from a revision
    /// (default 10,000; 0: no history).
    #[arg(long)]
    pub watch_history_events: Option<usize>,
    /// ... and at most this many bytes of them (default 64 MiB).
    #[arg(long)]
    pub watch_history_bytes: Option<usize>,
}

impl ServeArgs {
    /// The config file (if any) with the flags applied over it.
    pub fn resolve(&self) -> Result<ServeConfig, Error> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
                ServeConfig::from_toml(&text)?
            }
            None => ServeConfig::default(),
        };
        self.apply_flags(&mut config);
        Ok(config)
    }

    /// Sets every field of `config` that a flag gives.
    fn apply_flags(&self, config: &mut ServeConfig) {
        macro_rules! apply {
            ($($field:ident),*) => { $( if let Some(value) = &self.$field { config.$field = value.clone().into(); } )* };
        }
        apply!(id, data_dir, http, peers, cluster, tick_ms, election_ticks, request_timeout_ms);
        apply!(snapshot_entries, snapshot_wal_bytes, compaction_margin_entries, wal_segment_bytes);
        self.apply_limit_flags(config);
        self.apply_tls_flags(config);
        if self.raft.is_some() {
            config.raft = self.raft;
        }
        config.join |= self.join;
    }

    /// Sets the sizes and limits that flags give.
    fn apply_limit_flags(&self, config: &mut ServeConfig) {
        macro_rules! apply {
            ($($field:ident),*) => { $( if let Some(value) = &self.$field { config.$field = value.clone().into(); } )* };
        }
        apply!(snapshot_chunk_bytes, body_bytes_max, key_bytes_max, value_bytes_max);
        apply!(advertise_client_url, state_bytes_max, watch_history_events, watch_history_bytes);
    }

    /// Sets the certificate paths that flags give.
    fn apply_tls_flags(&self, config: &mut ServeConfig) {
        for (flag, field) in [
            (&self.tls_cert, &mut config.tls_cert),
            (&self.tls_key, &mut config.tls_key),
            (&self.tls_ca, &mut config.tls_ca),
            (&self.client_ca, &mut config.client_ca),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
    }
}

/// `rdb dev` flags.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Where the nodes keep their data (one directory each).
    #[arg(long, default_value = "rdb-dev")]
    pub data_dir: PathBuf,
    /// HTTP port of node 1 (node i: this + i - 1).
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
    /// Peer port of node 1 (node i: this + i - 1).
    #[arg(long, default_value_t = 9081)]
    pub raft_port: u16,
    /// HTTPS and mutual TLS between the nodes, with throwaway certificates
    /// made under the data directory.
    #[arg(long)]
    pub tls: bool,
    /// Put haproxy (Debian's package) in front of the nodes, with
    /// deploy/haproxy.cfg adapted to the dev ports.
    #[arg(long)]
    pub haproxy: bool,
    /// The port haproxy listens on, on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub haproxy_port: u16,
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every subcommand's flags (unique names, valid
    /// groups): a mistake there panics at parse time, in the operator's hands.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
