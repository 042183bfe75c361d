//! Opening a WAL directory: FORMAT.md's recovery steps, in order.

use std::path::Path;

use super::format::{decode_segment_header, parse_segment_name, SEGMENT_HEADER_BYTES};
use super::hard_state::{HardStateFile, HARD_STATE_FILE_NAME};
use super::segment::{LoadContext, Role, Segment};
use super::TermRun;
use crate::disk::Disk;
use crate::files::TEMP_SUFFIX;
use crate::{Error, Result};

/// Everything recovery found, ready to be appended to.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The segments in index order; the last is the open one.
    pub(crate) segments: Vec<Segment>,
    /// Term runs over the whole log.
    pub(crate) terms: Vec<TermRun>,
    /// The hard-state file.
    pub(crate) hard_state: HardStateFile,
    /// Bytes cut from the open segment as a torn tail.
    pub(crate) torn_bytes: u64,
}

/// Recovers the WAL in `dir`, initialising it when it is new.
pub(crate) fn recover(disk: &dyn Disk, dir: &Path) -> Result<Recovered> {
    disk.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let names = disk.list(dir).map_err(|e| Error::io(dir, e))?;
    let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    firsts.sort_unstable();
    if firsts.is_empty() {
        let temps = temp_names(&names);
        let first = match promotable_reset(disk, dir, &temps)? {
            Some((first, temp)) => {
                promote(disk, dir, temp)?;
                first
            }
            None => initialise(disk, dir, &names)?,
        };
        firsts.push(first);
    }
    let names = disk.list(dir).map_err(|e| Error::io(dir, e))?;
    remove_temps(disk, dir, &temp_names(&names))?;
    let hard_state = HardStateFile::open(disk, dir)?;
    let recovered = load_segments(disk, dir, &firsts, hard_state)?;
    check_commit(&recovered)?;
    Ok(recovered)
}

fn temp_names(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).filter(|n| n.ends_with(TEMP_SUFFIX)).collect()
}

/// The newest `<n>.wal.tmp` with a valid header: a reset that got as far as
/// removing every old segment (FORMAT.md recovery step 2).
fn promotable_reset<'a>(
    disk: &dyn Disk,
    dir: &Path,
    temps: &[&'a str],
) -> Result<Option<(u64, &'a str)>> {
    let mut candidates: Vec<(u64, &str)> = temps
        .iter()
        .filter_map(|t| Some((parse_segment_name(t.strip_suffix(TEMP_SUFFIX)?)?, *t)))
        .collect();
    candidates.sort_unstable();
    for (first, temp) in candidates.into_iter().rev() {
        let path = dir.join(temp);
        let file = disk.open(&path, false).map_err(|e| Error::io(&path, e))?;
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        if file.read_exact_at(&mut header, 0).is_ok() && decode_segment_header(&header) == Ok(first)
        {
            return Ok(Some((first, temp)));
        }
    }
    Ok(None)
}

fn promote(disk: &dyn Disk, dir: &Path, temp: &str) -> Result<()> {
    let name = temp.strip_suffix(TEMP_SUFFIX).expect("a temp name");
    crate::files::publish_temp_file(disk, dir, &dir.join(temp), name)
}

/// Creates the files of a new log (FORMAT.md: initialise). A `hardstate` left
/// by an initialisation that crashed is kept.
fn initialise(disk: &dyn Disk, dir: &Path, names: &[String]) -> Result<u64> {
    if !names.iter().any(|n| n == HARD_STATE_FILE_NAME) {
        HardStateFile::create(disk, dir)?;
    }
    Segment::create(disk, dir, 1)?;
    Ok(1)
}

fn remove_temps(disk: &dyn Disk, dir: &Path, temps: &[&str]) -> Result<()> {
    for temp in temps {
        let path = dir.join(temp);
        disk.remove(&path).map_err(|e| Error::io(&path, e))?;
    }
    if !temps.is_empty() {
        crate::files::sync_dir(disk, dir)?;
    }
    Ok(())
}

/// Loads every segment: the sealed ones strictly, the last one with its torn
/// tail cut off (FORMAT.md recovery steps 4 and 5).
fn load_segments(
    disk: &dyn Disk,
    dir: &Path,
    firsts: &[u64],
    hard_state: HardStateFile,
) -> Result<Recovered> {
    let mut context =
        LoadContext { expected_first: None, last_term: 0, terms: Vec::new(), torn_bytes: 0 };
    let mut segments = Vec::with_capacity(firsts.len());
    for (position, first) in firsts.iter().enumerate() {
        let role = if position + 1 == firsts.len() { Role::Open } else { Role::Sealed };
        segments.push(Segment::load(disk, dir, *first, role, &mut context)?);
    }
    Ok(Recovered { segments, terms: context.terms, hard_state, torn_bytes: context.torn_bytes })
}

/// A commit index beyond the log means synced entries are gone (FORMAT.md
/// recovery step 6).
fn check_commit(recovered: &Recovered) -> Result<()> {
    let open = recovered.segments.last().expect("at least one segment");
    let last_index = open.next_index() - 1;
    let commit = recovered.hard_state.state().commit;
    if commit > last_index {
        let reason = format!(
            "the hard state's commit index {commit} is beyond the last log index {last_index}: \
             synced entries are missing"
        );
        return Err(Error::corrupt(open.path(), open.bytes(), reason));
    }
    Ok(())
}
