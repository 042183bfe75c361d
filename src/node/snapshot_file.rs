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

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rdb_storage::btree::ReadTxn;
use sha2::{Digest, Sha256};

use crate::raft::{Membership, SnapshotMeta};

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
    /// The header and membership block, as written at the file's start.
    fn encode(&self) -> Result<Vec<u8>, String> {
        let membership = self.membership.encode();
        if membership.len() > MEMBERSHIP_BYTES_MAX {
            return Err(format!("a membership of {} bytes", membership.len()));
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

    /// Reads and checks a header and membership block from `file`.
    fn read(file: &mut impl Read) -> Result<Self, String> {
        let mut bytes = [0u8; HEADER_BYTES];
        file.read_exact(&mut bytes).map_err(|e| format!("snapshot header: {e}"))?;
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        if bytes[..8] != MAGIC {
            return Err("not a snapshot file (bad magic)".into());
        }
        let version = u32_at(8);
        let block = match version {
            VERSION => usize::try_from(u32_at(12)).unwrap_or(usize::MAX),
            VERSION_1 => 0,
            other => return Err(format!("snapshot format version {other} is not {VERSION}")),
        };
        if block > MEMBERSHIP_BYTES_MAX {
            return Err(format!("snapshot header claims a membership of {block} bytes"));
        }
        let mut membership = vec![0u8; block];
        file.read_exact(&mut membership).map_err(|e| format!("snapshot membership: {e}"))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[..CRC_OFFSET]);
        crc.update(&membership);
        if crc.finalize() != u32_at(CRC_OFFSET) {
            return Err("snapshot header fails its checksum".into());
        }
        let membership = match version {
            VERSION_1 => {
                let count = usize::try_from(u32_at(12)).unwrap_or(usize::MAX);
                if count > MEMBER_SLOTS_V1 {
                    return Err(format!("snapshot header lists {count} members"));
                }
                let ids: Vec<u64> = (0..count).map(|slot| u64_at(72 + 8 * slot)).collect();
                Membership::voters_only(&ids)
            }
            _ => Membership::decode(&membership)?,
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[40..72]);
        Ok(SnapshotHeader {
            meta: SnapshotMeta { index: u64_at(16), term: u64_at(24) },
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
    membership: &Membership,
) -> Result<(PathBuf, SnapshotHeader), String> {
    let io = |what: &str, e: std::io::Error| format!("snapshot {what} in {}: {e}", dir.display());
    fs::create_dir_all(dir).map_err(|e| io("directory", e))?;
    let temp = dir.join(TEMP_NAME);
    let mut file = File::create(&temp).map_err(|e| io("create", e))?;
    let mut header = SnapshotHeader {
        meta,
        membership: membership.clone(),
        content_bytes: 0,
        hash: [0; 32],
        version: VERSION,
    };
    // The real header, the same length, is written once the content is.
    file.write_all(&header.encode()?).map_err(|e| io("write", e))?;
    // Block checksums (xxHash-32 per block, checked while decompressing):
    // the content's SHA-256 cannot see damage that decompresses to the same
    // bytes (a match offset moved within a run of zeros), and a damaged
    // file should be refused whatever the damage.
    let frame = lz4_flex::frame::FrameInfo::new().block_checksums(true);
    let encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
        frame,
        BufWriter::with_capacity(IO_BUFFER_BYTES, file),
    );
    let mut hashing = Hashing { inner: encoder, hasher: Sha256::new(), bytes: 0 };
    txn.export(&mut hashing).map_err(|e| format!("snapshot export: {e}"))?;
    let Hashing { inner: encoder, hasher, bytes } = hashing;
    let mut file = encoder
        .finish()
        .map_err(|e| format!("snapshot compression: {e}"))?
        .into_inner()
        .map_err(|e| io("flush", e.into_error()))?;
    header.content_bytes = bytes;
    header.hash = hasher.finalize().into();
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
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SnapshotHeader::read(&mut BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Decompresses the snapshot at `path` into `out`, checking its length and
/// hash; returns the header. `out` holds garbage if this fails.
pub fn unpack(path: &Path, out: &mut dyn Write) -> Result<SnapshotHeader, String> {
    let header = read_header(path)?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, file);
    reader
        .seek(SeekFrom::Start(header.content_offset()))
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
