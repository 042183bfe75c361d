//! Snapshot files: `<data-dir>/snapshots/state_<hash>.lz4`.
//!
//! A snapshot is a compact copy of the state file at one applied index
//! (`ReadTxn::export`), compressed as one LZ4 frame behind a header and the
//! cluster's membership as of that index:
//!
//! ```text
//! offset size
//!      0    8  magic "rdbSNAP1"
//!      8    4  format version (2)
//!     12    4  membership bytes m (at most MEMBERSHIP_BYTES_MAX)
//!     16    8  last included index
//!     24    8  its term
//!     32    8  content bytes (the uncompressed state file)
//!     40   32  SHA-256 of the content
//!     72   72  zero
//!    144    4  CRC-32 of bytes 0..144 followed by the m membership bytes
//!    148   12  zero
//!    160    m  the membership (`Membership::encode`)
//!  160+m  ...  LZ4 frame of the content (with block checksums since
//!               2026-11-30; frames without them are still read)
//! ```
//!
//! Version 1 (read, never written) had no membership block: bytes 12..16
//! counted member ids in 72..144, all voters, and the CRC covered 0..144.
//!
//! `<hash>` is the first 16 bytes of the content's SHA-256 in hex, so equal
//! states get equal names. A file is written under a temporary name, synced,
//! renamed and its directory synced: a crash leaves either no snapshot or a
//! whole one. Reading verifies the header's CRC and, while decompressing,
//! the content's length and hash; a snapshot that fails either is refused.

use std::io::{ErrorKind, Read};
use std::path::Path;

use super::error::{Error, Result};
use crate::raft::{Membership, Position};

/// Identifies a snapshot file.
const MAGIC: [u8; 8] = *b"rdbSNAP1";
/// The format this code writes.
const VERSION: u32 = 2;
/// The first format, still read.
const VERSION_1: u32 = 1;
/// Bytes of the fixed header, before the membership.
pub const HEADER_BYTES: usize = 160;
/// Bytes of an encoded membership, at most.
pub const MEMBERSHIP_BYTES_MAX: usize = 16 << 10;
/// Member slots in a version 1 header.
const MEMBER_SLOTS_V1: usize = 9;
/// Where the header's CRC sits (it covers everything before).
const CRC_OFFSET: usize = 144;
/// The format this code writes (the snapshot directory writes files in it).
pub(super) const FORMAT_VERSION: u32 = VERSION;
/// The name a snapshot is written under before it is complete.
pub const TEMP_NAME: &str = "snapshot.tmp";
/// The name a snapshot from the leader is received under until it is whole
/// and verified (a leftover one is removed at start).
pub const INCOMING_NAME: &str = "incoming.tmp";
/// Buffer size for streaming files.
pub(super) const IO_BUFFER_BYTES: usize = 1 << 20;

/// What a snapshot's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The last index and term it includes.
    pub meta: Position,
    /// The cluster's membership as of `meta.index`.
    pub membership: Membership,
    /// Bytes of the uncompressed state file.
    pub content_bytes: u64,
    /// SHA-256 of the uncompressed state file.
    pub hash: [u8; 32],
    /// The file's format version.
    pub version: u32,
}

impl SnapshotHeader {
    /// The header and membership block, as written at the file's start
    /// (to be `path`).
    pub(super) fn encode(&self, path: &Path) -> Result<Vec<u8>> {
        let membership = self.membership.encode();
        if membership.len() > MEMBERSHIP_BYTES_MAX {
            let why = format!("a membership of {} bytes", membership.len());
            return Err(Error::bad_snapshot(path, why));
        }
        let mut out = vec![0u8; HEADER_BYTES];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let length = u32::try_from(membership.len()).unwrap_or(u32::MAX);
        out[12..16].copy_from_slice(&length.to_le_bytes());
        out[16..24].copy_from_slice(&self.meta.index.to_le_bytes());
        out[24..32].copy_from_slice(&self.meta.term.to_le_bytes());
        out[32..40].copy_from_slice(&self.content_bytes.to_le_bytes());
        out[40..72].copy_from_slice(&self.hash);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&out[..CRC_OFFSET]);
        crc.update(&membership);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&membership);
        Ok(out)
    }

    /// Where the compressed content starts.
    pub fn content_offset(&self) -> u64 {
        match self.version {
            VERSION_1 => HEADER_BYTES as u64,
            _ => (HEADER_BYTES + self.membership.encode().len()) as u64,
        }
    }

    /// Reads and checks a header and membership block from `file`, which
    /// is `path`.
    pub(super) fn read(file: &mut impl Read, path: &Path) -> Result<Self> {
        let bad = |why: String| Error::bad_snapshot(path, why);
        let read_error = |e: std::io::Error| match e.kind() {
            ErrorKind::UnexpectedEof => Error::bad_snapshot(path, "truncated header"),
            _ => Error::io("read", path)(e),
        };
        let mut bytes = [0u8; HEADER_BYTES];
        file.read_exact(&mut bytes).map_err(read_error)?;
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        if bytes[..8] != MAGIC {
            return Err(bad("not a snapshot file (bad magic)".into()));
        }
        let version = u32_at(8);
        let block = match version {
            VERSION => usize::try_from(u32_at(12)).unwrap_or(usize::MAX),
            VERSION_1 => 0,
            other => return Err(bad(format!("format version {other} is not {VERSION}"))),
        };
        if block > MEMBERSHIP_BYTES_MAX {
            return Err(bad(format!("header claims a membership of {block} bytes")));
        }
        let mut membership = vec![0u8; block];
        file.read_exact(&mut membership).map_err(read_error)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[..CRC_OFFSET]);
        crc.update(&membership);
        if crc.finalize() != u32_at(CRC_OFFSET) {
            return Err(bad("header fails its checksum".into()));
        }
        let membership = match version {
            VERSION_1 => {
                let count = usize::try_from(u32_at(12)).unwrap_or(usize::MAX);
                if count > MEMBER_SLOTS_V1 {
                    return Err(bad(format!("header lists {count} members")));
                }
                let ids: Vec<u64> = (0..count).map(|slot| u64_at(72 + 8 * slot)).collect();
                Membership::voters_only(&ids)
            }
            // A snapshot's own damage (it may be the leader's, in transfer),
            // not this node's state: refused as a bad snapshot.
            _ => Membership::decode(&membership).map_err(|e| bad(format!("membership: {e}")))?,
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[40..72]);
        Ok(SnapshotHeader {
            meta: Position { index: u64_at(16), term: u64_at(24) },
            membership,
            content_bytes: u64_at(32),
            hash,
            version,
        })
    }

    /// The file name this snapshot has.
    pub fn file_name(&self) -> String {
        let hex: String = self.hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("state_{hex}.lz4")
    }
}
