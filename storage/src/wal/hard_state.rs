//! The Raft hard state file: two checksummed slots written alternately, so a
//! save torn by a crash leaves the previous state readable.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskFile};
use crate::le::{u32_at, u64_at};
use crate::{Error, Result};

/// Identifies a hard-state slot.
const HARD_STATE_MAGIC: [u8; 8] = *b"rdbHARDs";
/// The slot format this code reads and writes.
const HARD_STATE_VERSION: u32 = 1;
/// Bytes of one slot.
const SLOT_BYTES: usize = 64;
/// Offset of slot 1; a page apart from slot 0 so one torn page cannot reach both.
const SLOT_1_OFFSET: u64 = 4096;
/// The size of the whole file.
const FILE_BYTES: usize = 8192;
/// The file's name inside the WAL directory.
pub(crate) const HARD_STATE_FILE_NAME: &str = "hardstate";

/// What Raft must remember across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The node voted for in `term`; 0 for none (node ids start at 1).
    pub vote: u64,
    /// The highest log index known to be committed.
    pub commit: u64,
}

/// The open hard-state file and the slot sequence it is at.
#[derive(Debug)]
pub(crate) struct HardStateFile {
    /// Path, for error messages.
    path: PathBuf,
    /// The open file.
    file: Box<dyn DiskFile>,
    /// The newest saved state.
    state: HardState,
    /// The sequence number of the newest valid slot.
    sequence: u64,
}

impl HardStateFile {
    /// Creates a new file holding the all-zero state (FORMAT.md: create a file).
    pub(crate) fn create(disk: &dyn Disk, dir: &Path) -> Result<()> {
        let mut content = vec![0u8; FILE_BYTES];
        content[..SLOT_BYTES].copy_from_slice(&encode_slot(0, HardState::default()));
        crate::files::create_file_atomically(disk, dir, HARD_STATE_FILE_NAME, &content)
    }

    /// Opens the file and reads the newest valid slot.
    pub(crate) fn open(disk: &dyn Disk, dir: &Path) -> Result<Self> {
        let path = dir.join(HARD_STATE_FILE_NAME);
        let file = disk.open(&path, false).map_err(|e| Error::io(&path, e))?;
        let (sequence, state) = newest_slot(file.as_ref(), &path)?;
        Ok(HardStateFile { path, file, state, sequence })
    }

    /// Reads the newest valid slot of the file in `dir` without opening it
    /// for writing (for inspection beside a running node).
    pub(crate) fn read(disk: &dyn Disk, dir: &Path) -> Result<HardState> {
        let path = dir.join(HARD_STATE_FILE_NAME);
        let file = disk.open_read(&path).map_err(|e| Error::io(&path, e))?;
        Ok(newest_slot(file.as_ref(), &path)?.1)
    }

    /// The newest saved state.
    pub(crate) fn state(&self) -> HardState {
        self.state
    }

    /// Writes `state` into the older slot and syncs it.
    pub(crate) fn save(&mut self, state: HardState) -> Result<()> {
        let sequence = self.sequence + 1;
        let offset = if sequence % 2 == 0 { 0 } else { SLOT_1_OFFSET };
        let slot = encode_slot(sequence, state);
        self.file.write_all_at(&slot, offset).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.sequence = sequence;
        self.state = state;
        Ok(())
    }
}

fn encode_slot(sequence: u64, state: HardState) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..8].copy_from_slice(&HARD_STATE_MAGIC);
    slot[8..12].copy_from_slice(&HARD_STATE_VERSION.to_le_bytes());
    slot[16..24].copy_from_slice(&sequence.to_le_bytes());
    slot[24..32].copy_from_slice(&state.term.to_le_bytes());
    slot[32..40].copy_from_slice(&state.vote.to_le_bytes());
    slot[40..48].copy_from_slice(&state.commit.to_le_bytes());
    let crc = crc32fast::hash(&slot[0..60]);
    slot[60..64].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// The sequence and state in a slot, or `None` if it is not a valid slot.
fn decode_slot(slot: &[u8]) -> Option<(u64, HardState)> {
    let valid = slot[0..8] == HARD_STATE_MAGIC
        && u32_at(slot, 60) == crc32fast::hash(&slot[0..60])
        && u32_at(slot, 8) == HARD_STATE_VERSION;
    let state =
        HardState { term: u64_at(slot, 24), vote: u64_at(slot, 32), commit: u64_at(slot, 40) };
    valid.then(|| (u64_at(slot, 16), state))
}

/// The newest valid slot of an open hard-state file: its sequence number
/// and state.
fn newest_slot(file: &dyn DiskFile, path: &Path) -> Result<(u64, HardState)> {
    let mut slots = [0u8; 2 * SLOT_BYTES];
    let (slot_0, slot_1) = slots.split_at_mut(SLOT_BYTES);
    let read =
        file.read_exact_at(slot_0, 0).and_then(|()| file.read_exact_at(slot_1, SLOT_1_OFFSET));
    if let Err(e) = read {
        return Err(Error::corrupt(path, 0, format!("hard state file unreadable: {e}")));
    }
    [decode_slot(slot_0), decode_slot(slot_1)]
        .into_iter()
        .flatten()
        .max_by_key(|(seq, _)| *seq)
        .ok_or_else(|| Error::corrupt(path, 0, "both hard state slots fail their checksums"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;

    #[test]
    fn a_torn_save_leaves_the_previous_state() {
        for seed in 0..200 {
            let disk = SimDisk::new(seed);
            let dir = Path::new("/wal");
            disk.create_dir_all(dir).unwrap();
            HardStateFile::create(&disk, dir).unwrap();
            let mut file = HardStateFile::open(&disk, dir).unwrap();
            let first = HardState { term: 1, vote: 2, commit: 0 };
            file.save(first).unwrap();
            let second = HardState { term: 2, vote: 3, commit: 5 };
            // Fail the sync of the second save, then crash: the write may have
            // landed whole, torn, or not at all.
            disk.fail_at(disk.ops() + 1);
            assert!(file.save(second).is_err());
            disk.crash();
            let recovered = HardStateFile::open(&disk, dir).unwrap().state();
            assert!(recovered == first || recovered == second, "seed {seed}: {recovered:?}");
        }
    }

    #[test]
    fn every_byte_of_a_slot_is_checked() {
        let slot = encode_slot(3, HardState { term: 4, vote: 5, commit: 6 });
        assert_eq!(decode_slot(&slot), Some((3, HardState { term: 4, vote: 5, commit: 6 })));
        for at in 0..SLOT_BYTES {
            let mut damaged = slot;
            damaged[at] ^= 1;
            assert_eq!(decode_slot(&damaged), None, "flip at byte {at} went unnoticed");
        }
    }

    #[test]
    fn both_slots_damaged_is_corruption() {
        let disk = SimDisk::new(1);
        let dir = Path::new("/wal");
        disk.create_dir_all(dir).unwrap();
        HardStateFile::create(&disk, dir).unwrap();
        HardStateFile::open(&disk, dir)
            .unwrap()
            .save(HardState { term: 1, vote: 1, commit: 0 })
            .unwrap();
        let path = dir.join(HARD_STATE_FILE_NAME);
        assert!(disk.corrupt_byte(&path, 30));
        assert!(HardStateFile::open(&disk, dir).is_ok(), "one good slot is enough");
        assert!(disk.corrupt_byte(&path, SLOT_1_OFFSET + 30));
        let err = HardStateFile::open(&disk, dir).unwrap_err().to_string();
        assert!(err.contains("hardstate") && err.contains("both hard state slots"), "{err}");
    }
}
