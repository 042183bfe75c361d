//! The settings of `rdb serve`: a TOML file, overridden by flags.

use super::error::Error;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::node::{InitialMembership, NodeConfig};
use crate::raft::{Member, MemberRole, Membership, NodeId};
use crate::rpc::RpcConfig;

/// Voters in a new cluster (`--peers`), at most.
pub const MEMBERS_MAX: usize = crate::raft::VOTERS_MAX;

/// Everything `rdb serve` needs. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// This node's id: a positive integer listed in `peers`.
    pub id: NodeId,
    /// Where the WAL and the state file live.
    pub data_dir: PathBuf,
    /// The client API address.
    pub http: SocketAddr,
    /// The peer address this node listens on (default: its entry in `peers`).
    pub raft: Option<SocketAddr>,
    /// The initial members of a new cluster as `id=host:port`,
    /// comma-separated, this node included; ignored once the data directory
    /// records a membership.
    pub peers: String,
    /// Start knowing no members and wait for a leader to add this node
    /// (instead of `peers`).
    pub join: bool,
    /// A name shared by the members; peers presenting another are refused.
    pub cluster: String,
    /// The Raft tick in milliseconds.
    pub tick_ms: u64,
    /// Ticks without a leader before an election.
    pub election_ticks: u32,
    /// Milliseconds a client request may take before 503/504.
    pub request_timeout_ms: u64,
    /// Compact the WAL after this many entries applied since the last time.
    pub snapshot_entries: u64,
    /// ... or after the WAL grew this many bytes since the last time.
    pub snapshot_wal_bytes: u64,
    /// Entries kept in the WAL below the compaction point for slightly slow
    /// followers.
    pub compaction_margin_entries: u64,
    /// The WAL segment size limit (compaction deletes whole segments).
    pub wal_segment_bytes: u64,
    /// Bytes per snapshot chunk sent to a follower.
    pub snapshot_chunk_bytes: usize,
    /// This node's TLS certificate (PEM); with `tls_key` and `tls_ca`,
    /// turns on HTTPS and mutual TLS between peers.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The cluster CA that signs every node's certificate (PEM).
    pub tls_ca: Option<PathBuf>,
    /// If set, HTTP clients must present a certificate from this CA.
    pub client_ca: Option<PathBuf>,
    /// The largest request body, in bytes.
    pub body_bytes_max: usize,
    /// The largest key (and range bound or prefix), in bytes.
    pub key_bytes_max: usize,
    /// The largest value, in bytes.
    pub value_bytes_max: usize,
    /// The URL clients reach this node at, shown in its status (default:
    /// derived from `http` unless that is a wildcard address).
    pub advertise_client_url: Option<String>,
    /// The space guard: past this many bytes of live data in the state
    /// file, puts are refused (507) until deletes free space; 0 turns it
    /// off.
    pub state_bytes_max: u64,
    /// Changes kept in memory for watchers that resume from a revision.
    pub watch_history_events: usize,
    /// ... and at most this many bytes of them.
    pub watch_history_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            id: 0,
            data_dir: PathBuf::from("/var/lib/rdb"),
            http: SocketAddr::from(([127, 0, 0, 1], 8081)),
            raft: None,
            peers: String::new(),
            join: false,
            cluster: "rdb".into(),
            tick_ms: 50,
            election_ticks: 10,
            request_timeout_ms: 5_000,
            snapshot_entries: 100_000,
            snapshot_wal_bytes: 64 << 20,
            compaction_margin_entries: 10_000,
            wal_segment_bytes: 64 << 20,
            snapshot_chunk_bytes: crate::rpc::CHUNK_BYTES,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            client_ca: None,
            body_bytes_max: crate::kv::BODY_BYTES_MAX,
            key_bytes_max: crate::kv::KEY_BYTES_MAX,
            value_bytes_max: crate::kv::VALUE_BYTES_MAX,
            advertise_client_url: None,
            state_bytes_max: crate::node::STATE_BYTES_MAX_DEFAULT,
            watch_history_events: 10_000,
            watch_history_bytes: 64 << 20,
        }
    }
}

impl ServeConfig {
    /// Reads a TOML file; unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Usage(format!("config file: {e}")))
    }

    /// The initial members (`peers`), checked.
    pub fn members(&self) -> Result<BTreeMap<NodeId, SocketAddr>, Error> {
        let mut members = BTreeMap::new();
        for item in self.peers.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (id, addr) = item
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("peer {item:?} is not id=host:port")))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| Error::Usage(format!("peer id {id:?} is not a number")))?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|e| Error::Usage(format!("peer {id} address {addr:?}: {e}")))?;
            if id == 0 || members.insert(id, addr).is_some() {
                return Err(Error::Usage(format!("peer id {id} is 0 or listed twice")));
            }
        }
        if members.len() > MEMBERS_MAX {
            return Err(Error::Usage(format!(
                "{} members; at most {MEMBERS_MAX} are supported",
                members.len()
            )));
        }
        if !members.contains_key(&self.id) {
            return Err(Error::Usage(format!(
                "--id {} is not among --peers {:?}",
                self.id, self.peers
            )));
        }
        Ok(members)
    }

    /// Where the node's membership comes from when its data directory
    /// records none: `peers` (a new cluster) or nothing (`join`).
    pub fn initial_membership(&self) -> Result<InitialMembership, Error> {
        if self.id == 0 {
            return Err(Error::Usage("--id must be a positive integer".into()));
        }
        match (self.join, self.peers.trim().is_empty()) {
            (true, true) => Ok(InitialMembership::Join),
            (true, false) => Err(Error::Usage(
                "--join and --peers exclude each other: a joining node learns the members \
                 from the leader"
                    .into(),
            )),
            (false, true) => Err(Error::Usage(
                "--peers (the initial members of a new cluster) or --join (to be added to a \
                 running one) is required"
                    .into(),
            )),
            (false, false) => {
                let members = self
                    .members()?
                    .into_iter()
                    .map(|(id, addr)| Member {
                        id,
                        role: MemberRole::Voter,
                        peer: addr.to_string(),
                        client_url: String::new(),
                    })
                    .collect();
                let membership =
                    Membership::new(members).map_err(|e| Error::Usage(e.to_string()))?;
                Ok(InitialMembership::Bootstrap(membership))
            }
        }
    }

    /// The node's settings.
    pub fn node(&self) -> Result<NodeConfig, Error> {
        if self.tick_ms == 0 || self.request_timeout_ms == 0 || self.election_ticks < 2 {
            return Err(Error::Usage(
                "tick_ms and request_timeout_ms must be > 0, election_ticks >= 2".into(),
            ));
        }
        let min = rdb_storage::wal::SEGMENT_BYTES_MIN;
        let max = rdb_storage::wal::SEGMENT_BYTES_MAX_LIMIT;
        if !(min..=max).contains(&self.wal_segment_bytes) {
            return Err(Error::Usage(format!("wal_segment_bytes must be from {min} to {max}")));
        }
        let mut node = NodeConfig::new(self.id, self.initial_membership()?, self.data_dir.clone());
        node.tick = Duration::from_millis(self.tick_ms);
        node.election_ticks = self.election_ticks;
        node.request_timeout = Duration::from_millis(self.request_timeout_ms);
        node.snapshot_entries = self.snapshot_entries;
        node.snapshot_wal_bytes = self.snapshot_wal_bytes;
        node.compaction_margin_entries = self.compaction_margin_entries;
        node.wal_segment_bytes = self.wal_segment_bytes;
        node.limits = self.limits()?;
        node.client_url = self.client_url()?;
        node.state_bytes_max = self.state_bytes_max;
        node.watch_history_events = self.watch_history_events;
        node.watch_history_bytes = self.watch_history_bytes;
        Ok(node)
    }

    /// The URL this node advertises: `advertise_client_url`, checked, or
    /// one made of `http` (empty for a wildcard address such as 0.0.0.0,
    /// which no client can dial).
    pub fn client_url(&self) -> Result<String, Error> {
        match &self.advertise_client_url {
            Some(url) => {
                let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                if !scheme_ok || url.len() > crate::raft::ADDRESS_BYTES_MAX {
                    return Err(Error::Usage(format!(
                        "advertise_client_url {url:?} must be an http:// or https:// URL of at \
                         most {} bytes",
                        crate::raft::ADDRESS_BYTES_MAX
                    )));
                }
                Ok(url.clone())
            }
            None if self.http.ip().is_unspecified() => Ok(String::new()),
            None => {
                let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
                Ok(format!("{scheme}://{}", self.http))
            }
        }
    }

    /// The limits on client requests, checked against their bounds.
    pub fn limits(&self) -> Result<crate::kv::Limits, Error> {
        let limits = crate::kv::Limits {
            body_bytes_max: self.body_bytes_max,
            key_bytes_max: self.key_bytes_max,
            value_bytes_max: self.value_bytes_max,
        };
        limits.check()?;
        Ok(limits)
    }

    /// The TLS files, if TLS is configured (all three of cert, key and CA).
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, Error> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
                client_ca: self.client_ca.clone(),
            })),
            (None, None, None) if self.client_ca.is_none() => Ok(None),
            (None, None, None) => {
                Err(Error::Usage("client_ca needs tls_cert, tls_key and tls_ca".into()))
            }
            _ => Err(Error::Usage("TLS needs all of tls_cert, tls_key and tls_ca".into())),
        }
    }

    /// The RPC edge's settings.
    pub fn rpc(&self) -> Result<RpcConfig, Error> {
        let listen = match self.raft {
            Some(listen) => listen,
            None if self.join => {
                return Err(Error::Usage("a joining node needs --raft (its peer address)".into()))
            }
            None => self.members()?[&self.id],
        };
        if !(1..=crate::rpc::CHUNK_BYTES_MAX).contains(&self.snapshot_chunk_bytes) {
            return Err(Error::Usage(format!(
                "snapshot_chunk_bytes must be from 1 to {}",
                crate::rpc::CHUNK_BYTES_MAX
            )));
        }
        Ok(RpcConfig {
            id: self.id,
            listen,
            cluster: self.cluster.clone(),
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            tls: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_every_key_parses_and_checks() {
        let config = ServeConfig::from_toml(
            "id = 2\ndata_dir = \"/tmp/x\"\nhttp = \"0.0.0.0:8082\"\n\
             peers = \"1=10.0.0.1:9081, 2=10.0.0.2:9081,3=10.0.0.3:9081\"\n\
             cluster = \"prod\"\ntick_ms = 50\nelection_ticks = 20\nrequest_timeout_ms = 2000\n",
        )
        .expect("valid");
        let InitialMembership::Bootstrap(membership) = config.node().expect("valid").initial else {
            panic!("a new cluster's node")
        };
        assert_eq!(membership.voters().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(membership.get(3).expect("member").peer, "10.0.0.3:9081");
        assert_eq!(config.rpc().expect("valid").listen, "10.0.0.2:9081".parse().expect("addr"));
    }

    /// deploy/rdb.toml shows every option with its default (but for `id`,
    /// `peers` and the TLS paths, which have none).
    #[test]
    fn the_example_config_parses_and_shows_the_defaults() {
        let example = ServeConfig::from_toml(include_str!("../../deploy/rdb.toml")).expect("valid");
        let defaults = ServeConfig {
            id: example.id,
            peers: example.peers.clone(),
            raft: example.raft,
            http: example.http,
            tls_cert: example.tls_cert.clone(),
            tls_key: example.tls_key.clone(),
            tls_ca: example.tls_ca.clone(),
            ..ServeConfig::default()
        };
        assert_eq!(example, defaults);
        assert!(example.tls_files().expect("complete").is_some());
        assert!(matches!(example.node().expect("valid").initial, InitialMembership::Bootstrap(_)));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(ServeConfig::from_toml("idd = 1").unwrap_err().to_string().contains("idd"));
        let config = |peers: &str| ServeConfig { id: 1, peers: peers.into(), ..Default::default() };
        assert!(config("1=x").members().unwrap_err().to_string().contains("address"));
        assert!(config("2=127.0.0.1:1").members().unwrap_err().to_string().contains("not among"));
        assert!(config("1=127.0.0.1:1,1=127.0.0.1:2")
            .members()
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(config("0=127.0.0.1:1").members().is_err());
        let join = ServeConfig { id: 4, join: true, ..Default::default() };
        assert_eq!(join.initial_membership().ok(), Some(InitialMembership::Join));
        assert!(join.rpc().unwrap_err().to_string().contains("--raft"));
        let both = ServeConfig { peers: "4=127.0.0.1:1".into(), ..join };
        assert!(both.initial_membership().unwrap_err().to_string().contains("exclude"));
        let neither = ServeConfig { id: 1, ..Default::default() };
        assert!(neither.initial_membership().unwrap_err().to_string().contains("--join"));
    }
}
