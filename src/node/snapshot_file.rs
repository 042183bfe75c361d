//! Snapshot files: `<data-dir>/snapshots/state_<hash>.lz4`.
//!
//! A snapshot is a compact copy of the state file at one applied index
//! (`ReadTxn::export`), compressed as one LZ4 frame behind a fixed header:
//!
//! ```text
//! offset size
//!      0    8  magic "rdbSNAP1"
//!      8    4  format version (1)
//!     12    4  member count (at most MEMBERS_MAX)
//!     16    8  last included index
//!     24    8  its term
//!     32    8  content bytes (the uncompressed state file)
//!     40   32  SHA-256 of the content
//!     72   72  member ids, 9 x u64, unused slots 0
//!    144    4  CRC-32 of bytes 0..144
//!    148   12  zero
//!    160  ...  LZ4 frame of the content
//! ```
//!
//! `<hash>` is the first 16 bytes of the content's SHA-256 in hex, so equal
//! states get equal names. A file is written under a temporary name, synced,
//! renamed and its directory synced: a crash leaves either no snapshot or a
//! whole one. Reading verifies the header's CRC and, while decompressing,
//! the content's length and hash; a snapshot that fails either is refused.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rdb_storage::btree::ReadTxn;
use sha2::{Digest, Sha256};

use crate::raft::{NodeId, SnapshotMeta};

/// Identifies a snapshot file.
const MAGIC: [u8; 8] = *b"rdbSNAP1";
/// The format this code writes and reads.
const VERSION: u32 = 1;
/// Bytes before the compressed content.
pub const HEADER_BYTES: usize = 160;
/// Member slots in the header.
const MEMBER_SLOTS: usize = 9;
/// Where the header's CRC sits (it covers everything before).
const CRC_OFFSET: usize = 144;
/// The name a snapshot is written under before it is complete.
pub const TEMP_NAME: &str = "snapshot.tmp";
/// The name a snapshot from the leader is received under until it is whole
/// and verified (a leftover one is removed at start).
pub const INCOMING_NAME: &str = "incoming.tmp";
/// Buffer size for streaming files.
const IO_BUFFER_BYTES: usize = 1 << 20;

/// What a snapshot's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The last index and term it includes.
    pub meta: SnapshotMeta,
    /// The cluster's members.
    pub members: Vec<NodeId>,
    /// Bytes of the uncompressed state file.
    pub content_bytes: u64,
    /// SHA-256 of the uncompressed state file.
    pub hash: [u8; 32],
}

impl SnapshotHeader {
    fn encode(&self) -> Result<[u8; HEADER_BYTES], String> {
        if self.members.len() > MEMBER_SLOTS {
            return Err(format!("{} members do not fit a snapshot header", self.members.len()));
        }
        let mut out = [0u8; HEADER_BYTES];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let count = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        out[12..16].copy_from_slice(&count.to_le_bytes());
        out[16..24].copy_from_slice(&self.meta.index.to_le_bytes());
        out[24..32].copy_from_slice(&self.meta.term.to_le_bytes());
        out[32..40].copy_from_slice(&self.content_bytes.to_le_bytes());
        out[40..72].copy_from_slice(&self.hash);
        for (slot, id) in self.members.iter().enumerate() {
            out[72 + 8 * slot..80 + 8 * slot].copy_from_slice(&id.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Reads and checks a header.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<Self, String> {
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        if bytes[..8] != MAGIC {
            return Err("not a snapshot file (bad magic)".into());
        }
        if crc32fast::hash(&bytes[..CRC_OFFSET]) != u32_at(CRC_OFFSET) {
            return Err("snapshot header fails its checksum".into());
        }
        if u32_at(8) != VERSION {
            return Err(format!("snapshot format version {} is not {VERSION}", u32_at(8)));
        }
        let count = usize::try_from(u32_at(12)).unwrap_or(usize::MAX);
        if count > MEMBER_SLOTS {
            return Err(format!("snapshot header lists {count} members"));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[40..72]);
        Ok(SnapshotHeader {
            meta: SnapshotMeta { index: u64_at(16), term: u64_at(24) },
            members: (0..count).map(|slot| u64_at(72 + 8 * slot)).collect(),
            content_bytes: u64_at(32),
            hash,
        })
    }

    /// The file name this snapshot has.
    pub fn file_name(&self) -> String {
        let hex: String = self.hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("state_{hex}.lz4")
    }
}

/// Counts and hashes what passes through to `inner`.
struct Hashing<W> {
    /// Where the bytes go.
    inner: W,
    /// Their hash.
    hasher: Sha256,
    /// Their count.
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a snapshot of `txn` (whose state is applied up to `meta`) into
/// `dir`; returns its path and header. Writes are not blocked meanwhile:
/// `txn` is a reader.
pub fn write(
    dir: &Path,
    txn: &ReadTxn,
    meta: SnapshotMeta,
    members: &[NodeId],
) -> Result<(PathBuf, SnapshotHeader), String> {
    let io = |what: &str, e: std::io::Error| format!("snapshot {what} in {}: {e}", dir.display());
    fs::create_dir_all(dir).map_err(|e| io("directory", e))?;
    let temp = dir.join(TEMP_NAME);
    let mut file = File::create(&temp).map_err(|e| io("create", e))?;
    file.write_all(&[0u8; HEADER_BYTES]).map_err(|e| io("write", e))?;
    let encoder =
        lz4_flex::frame::FrameEncoder::new(BufWriter::with_capacity(IO_BUFFER_BYTES, file));
    let mut hashing = Hashing { inner: encoder, hasher: Sha256::new(), bytes: 0 };
    txn.export(&mut hashing).map_err(|e| format!("snapshot export: {e}"))?;
    let Hashing { inner: encoder, hasher, bytes } = hashing;
    let mut file = encoder
        .finish()
        .map_err(|e| format!("snapshot compression: {e}"))?
        .into_inner()
        .map_err(|e| io("flush", e.into_error()))?;
    let header = SnapshotHeader {
        meta,
        members: members.to_vec(),
        content_bytes: bytes,
        hash: hasher.finalize().into(),
    };
    file.seek(SeekFrom::Start(0)).map_err(|e| io("seek", e))?;
    file.write_all(&header.encode()?).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    let path = dir.join(header.file_name());
    fs::rename(&temp, &path).map_err(|e| io("rename", e))?;
    sync_dir(dir)?;
    Ok((path, header))
}

/// Reads a file's header (without checking its content).
pub fn read_header(path: &Path) -> Result<SnapshotHeader, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = [0u8; HEADER_BYTES];
    file.read_exact(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    SnapshotHeader::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Decompresses the snapshot at `path` into `out`, checking its length and
/// hash; returns the header. `out` holds garbage if this fails.
pub fn unpack(path: &Path, out: &mut dyn Write) -> Result<SnapshotHeader, String> {
    let header = read_header(path)?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, file);
    reader
        .seek(SeekFrom::Start(HEADER_BYTES as u64))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut decoder = lz4_flex::frame::FrameDecoder::new(reader).take(header.content_bytes + 1);
    let mut hashing = Hashing { inner: out, hasher: Sha256::new(), bytes: 0 };
    std::io::copy(&mut decoder, &mut hashing)
        .map_err(|e| format!("{}: damaged content: {e}", path.display()))?;
    let hash: [u8; 32] = hashing.hasher.finalize().into();
    if hashing.bytes != header.content_bytes || hash != header.hash {
        return Err(format!("{}: content fails its checksum", path.display()));
    }
    Ok(header)
}

/// Checks a whole snapshot file.
pub fn verify(path: &Path) -> Result<SnapshotHeader, String> {
    unpack(path, &mut std::io::sink())
}

/// The snapshots in `dir` whose headers read, newest (highest index) first;
/// a file whose header does not read is reported and left out.
pub fn list(dir: &Path) -> Vec<(PathBuf, SnapshotHeader)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(PathBuf, SnapshotHeader)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("state_") && n.ends_with(".lz4"))
        })
        .filter_map(|path| match read_header(&path) {
            Ok(header) => Some((path, header)),
            Err(why) => {
                log::error!("skipping snapshot: {why}");
                None
            }
        })
        .collect();
    found.sort_by(|a, b| b.1.meta.index.cmp(&a.1.meta.index).then_with(|| a.0.cmp(&b.0)));
    found
}

/// Removes all but the newest `keep` snapshots (and a leftover temporary).
pub fn prune(dir: &Path, keep: usize) -> Result<(), String> {
    let _ = fs::remove_file(dir.join(TEMP_NAME));
    for (path, _) in list(dir).into_iter().skip(keep) {
        fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    sync_dir(dir)
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("sync {}: {e}", dir.display()))
}
