//! Creating and removing files so that a crash leaves no half-made state
//! (FORMAT.md: "create a file"), shared by the WAL and the state file.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::{Error, Result};

/// The suffix of a file that is being created.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Writes `content` to `<name>.tmp` and syncs it; returns that path.
pub(crate) fn write_temp_file(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    content: &[u8],
) -> Result<PathBuf> {
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let file = disk.open(&temp, true).map_err(|e| Error::io(&temp, e))?;
    file.set_len(0).map_err(|e| Error::io(&temp, e))?;
    file.write_all_at(content, 0).map_err(|e| Error::io(&temp, e))?;
    file.sync_data().map_err(|e| Error::io(&temp, e))?;
    Ok(temp)
}

/// Renames a synced temporary file to `name` and syncs the directory.
pub(crate) fn publish_temp_file(
    disk: &dyn Disk,
    dir: &Path,
    temp: &Path,
    name: &str,
) -> Result<()> {
    let path = dir.join(name);
    disk.rename(temp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(disk, dir)
}

/// Creates `dir/name` holding `content` so that a crash leaves either no file
/// or the whole of it (FORMAT.md: create a file).
pub(crate) fn create_file_atomically(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    content: &[u8],
) -> Result<()> {
    let temp = write_temp_file(disk, dir, name, content)?;
    publish_temp_file(disk, dir, &temp, name)
}

/// Removes a file and makes the removal durable before anything else happens.
pub(crate) fn remove_durably(disk: &dyn Disk, dir: &Path, path: &Path) -> Result<()> {
    disk.remove(path).map_err(|e| Error::io(path, e))?;
    sync_dir(disk, dir)
}

pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir).map_err(|e| Error::io(dir, e))
}
