//! [`SimDisk`]: an in-memory disk that crashes on command.
//!
//! Each file keeps two images: `current`, what reads see now, and `durable`,
//! what survived the last `sync_data`. The writes between them are kept in
//! order. Directories likewise keep the visible name table and the durable one,
//! with the creates, renames and removes since the last `sync_dir` in order.
//!
//! [`SimDisk::crash`] models a power cut. For every file a seeded generator
//! decides each unsynced write on its own, since the page cache writes back
//! in no particular order: lost, landed, torn (a prefix of its bytes), or
//! zeros of its length, which is what a file system that extended the size
//! before the data reached the medium leaves behind. For directories it keeps
//! a prefix of the unsynced name changes. Files whose names did not survive are gone. Handles opened before
//! the crash fail from then on, as a process that died would have no handles.
//!
//! [`SimDisk::fail_at`] makes one chosen operation (counted by
//! [`SimDisk::ops`]) fail with an IO error and have no effect, so that tests can
//! walk an error through every step of a protocol.
//!
//! Directories themselves are created durably and are never removed: the
//! storage layer creates its directories once, at initialisation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Disk, DiskFile, Mapping};

/// Identifies a file's contents independently of its names.
type InodeId = u64;

/// A simulated disk; clones share the same files.
#[derive(Debug, Clone)]
pub struct SimDisk {
    /// Everything, behind one lock: tests are not about disk concurrency.
    state: Arc<Mutex<SimState>>,
}

/// One write not yet made durable by `sync_data`.
#[derive(Clone)]
enum PendingWrite {
    /// Bytes written at an offset.
    Write {
        /// Where the bytes go.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The length set by `set_len`.
    SetLen(u64),
}

/// The contents of one file.
#[derive(Default)]
struct Inode {
    /// What reads see now.
    current: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Writes since the last sync, oldest first; applied to `durable` they
    /// give `current`.
    pending: Vec<PendingWrite>,
}

impl fmt::Debug for Inode {
    // Sizes only: a failing test should not print whole files.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inode")
            .field("current_bytes", &self.current.len())
            .field("durable_bytes", &self.durable.len())
            .field("pending_writes", &self.pending.len())
            .finish()
    }
}

/// A set of name changes that happen atomically (a rename is two).
#[derive(Debug)]
struct DirOp {
    /// The directory whose `sync_dir` makes the change durable.
    dir: PathBuf,
    /// Each path and the inode it now names, or `None` for removed.
    changes: Vec<(PathBuf, Option<InodeId>)>,
}

/// The shared state of a [`SimDisk`].
#[derive(Debug)]
struct SimState {
    /// Chooses what survives a crash.
    rng: fastrand::Rng,
    /// The directories that exist.
    dirs: BTreeSet<PathBuf>,
    /// The name table reads see now.
    names: BTreeMap<PathBuf, InodeId>,
    /// The name table that survives a crash.
    durable_names: BTreeMap<PathBuf, InodeId>,
    /// Name changes since their directory was last synced, oldest first.
    pending_dir_ops: Vec<DirOp>,
    /// File contents by inode.
    inodes: HashMap<InodeId, Inode>,
    /// The next inode number to hand out.
    next_inode: InodeId,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    /// Operations performed so far (failed ones included).
    ops: u64,
    /// The operation number that fails, if any.
    fail_at: Option<u64>,
    /// Writeback hints received (they change nothing else).
    writeback_hints: u64,
}

/// An open file of a [`SimDisk`].
#[derive(Debug)]
struct SimFile {
    /// The disk it belongs to.
    state: Arc<Mutex<SimState>>,
    /// Its contents.
    inode: InodeId,
    /// The crash generation it was opened in.
    generation: u64,
}

impl SimDisk {
    /// An empty disk whose crashes are chosen by `seed`.
    pub fn new(seed: u64) -> Self {
        let state = SimState {
            rng: fastrand::Rng::with_seed(seed),
            dirs: BTreeSet::from([PathBuf::from("/")]),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            pending_dir_ops: Vec::new(),
            inodes: HashMap::new(),
            next_inode: 1,
            generation: 0,
            ops: 0,
            fail_at: None,
            writeback_hints: 0,
        };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// Simulates a power cut: unsynced data is lost, torn or zero-filled,
    /// unsynced name changes are partly lost, and every open handle dies.
    pub fn crash(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.fail_at = None;
        state.crash_names();
        let live: BTreeSet<InodeId> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        let SimState { rng, inodes, .. } = &mut *state;
        for inode in inodes.values_mut() {
            inode.crash(rng);
        }
    }

    /// The number of operations performed so far; the next one is number
    /// `ops()`.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// How many writeback hints ([`DiskFile::start_writeback`]) succeeded.
    pub fn writeback_hints(&self) -> u64 {
        self.lock().writeback_hints
    }

    /// Makes operation number `op` fail with an IO error and no effect.
    pub fn fail_at(&self, op: u64) {
        self.lock().fail_at = Some(op);
    }

    /// The current contents of the file at `path`, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.names.get(path)?;
        Some(state.inodes[id].current.clone())
    }

    /// Flips the bits of the byte at `offset` in `path`, durably, as media
    /// corruption would. Returns false if there is no such byte.
    pub fn corrupt_byte(&self, path: &Path, offset: u64) -> bool {
        let mut state = self.lock();
        let Some(id) = state.names.get(path).copied() else { return false };
        let inode = state.inodes.get_mut(&id).expect("named inode exists");
        let Ok(at) = usize::try_from(offset) else { return false };
        if at >= inode.current.len() || at >= inode.durable.len() {
            return false;
        }
        inode.current[at] ^= 0xff;
        inode.durable[at] ^= 0xff;
        true
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }
}

/// Locks the state; a panic in another test thread does not matter here.
fn lock(state: &Mutex<SimState>) -> MutexGuard<'_, SimState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    /// Counts an operation and fails it if it is the chosen one.
    fn begin_op(&mut self) -> io::Result<()> {
        let op = self.ops;
        self.ops += 1;
        if self.fail_at == Some(op) {
            return Err(io::Error::other(format!("simulated IO error at operation {op}")));
        }
        Ok(())
    }

    /// Keeps a random prefix of the unsynced name changes.
    fn crash_names(&mut self) {
        let kept = self.rng.usize(..=self.pending_dir_ops.len());
        let ops = std::mem::take(&mut self.pending_dir_ops);
        for op in ops.into_iter().take(kept) {
            apply_changes(&mut self.durable_names, &op.changes);
        }
        self.names = self.durable_names.clone();
    }

    /// Records an atomic set of name changes in `dir`.
    fn change_names(&mut self, dir: &Path, changes: Vec<(PathBuf, Option<InodeId>)>) {
        apply_changes(&mut self.names, &changes);
        self.pending_dir_ops.push(DirOp { dir: dir.to_path_buf(), changes });
    }

    /// The inode behind a live handle.
    fn inode(&mut self, id: InodeId, generation: u64) -> io::Result<&mut Inode> {
        if generation != self.generation {
            return Err(io::Error::other("stale handle: the simulated disk crashed since open"));
        }
        self.inodes.get_mut(&id).ok_or_else(|| io::Error::other("file vanished"))
    }
}

/// Applies name changes to a name table.
fn apply_changes(names: &mut BTreeMap<PathBuf, InodeId>, changes: &[(PathBuf, Option<InodeId>)]) {
    for (path, target) in changes {
        match target {
            Some(id) => names.insert(path.clone(), *id),
            None => names.remove(path),
        };
    }
}

/// The directory of `path`, which must have one.
fn parent(path: &Path) -> io::Result<PathBuf> {
    path.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

fn offset_to_usize(offset: u64) -> io::Result<usize> {
    usize::try_from(offset).map_err(|_| io::Error::other("offset beyond the simulated disk"))
}

impl Inode {
    /// Replaces both images with what a crash leaves: each unsynced write
    /// independently lost, landed, torn or zero-filled (the page cache
    /// writes back in no particular order), applied in their original order.
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        let mut image = std::mem::take(&mut self.durable);
        for write in std::mem::take(&mut self.pending) {
            if let Some(landed) = what_lands(rng, write) {
                apply_write(&mut image, &landed);
            }
        }
        self.current = image.clone();
        self.durable = image;
    }
}

/// What of one unsynced write a crash leaves: nothing, all of it, a prefix,
/// or zeros of its length.
fn what_lands(rng: &mut fastrand::Rng, write: PendingWrite) -> Option<PendingWrite> {
    let PendingWrite::Write { offset, data } = write else {
        return rng.bool().then_some(write);
    };
    match rng.u8(..4) {
        0 => None,
        1 => Some(PendingWrite::Write { offset, data }),
        2 => Some(PendingWrite::Write { offset, data: data[..rng.usize(..=data.len())].to_vec() }),
        _ => Some(PendingWrite::Write { offset, data: vec![0; data.len()] }),
    }
}

fn apply_write(image: &mut Vec<u8>, write: &PendingWrite) {
    match write {
        PendingWrite::Write { offset, data } => {
            let start = usize::try_from(*offset).expect("offset checked when written");
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        PendingWrite::SetLen(len) => {
            image.resize(usize::try_from(*len).expect("length checked when set"), 0);
        }
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.lock();
        state.begin_op()?;
        let dir = parent(path)?;
        if !state.dirs.contains(&dir) {
            return Err(not_found(&dir));
        }
        let id = match state.names.get(path) {
            Some(id) => *id,
            None if create => {
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.change_names(&dir, vec![(path.to_path_buf(), Some(id))]);
                id
            }
            None => return Err(not_found(path)),
        };
        let generation = state.generation;
        Ok(Box::new(SimFile { state: Arc::clone(&self.state), inode: id, generation }))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_op()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.lock();
        state.begin_op()?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let names = state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_op()?;
        let id = *state.names.get(from).ok_or_else(|| not_found(from))?;
        let dir = parent(to)?;
        state.change_names(&dir, vec![(from.to_path_buf(), None), (to.to_path_buf(), Some(id))]);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_op()?;
        if !state.names.contains_key(path) {
            return Err(not_found(path));
        }
        let dir = parent(path)?;
        state.change_names(&dir, vec![(path.to_path_buf(), None)]);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_op()?;
        let (synced, kept): (Vec<DirOp>, Vec<DirOp>) =
            std::mem::take(&mut state.pending_dir_ops).into_iter().partition(|op| op.dir == dir);
        for op in synced {
            apply_changes(&mut state.durable_names, &op.changes);
        }
        state.pending_dir_ops = kept;
        Ok(())
    }
}

impl SimFile {
    /// Runs `f` on this file's inode as one counted operation.
    fn with_inode<T>(&self, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut state = lock(&self.state);
        state.begin_op()?;
        f(state.inode(self.inode, self.generation)?)
    }
}

impl Inode {
    fn write(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        offset_to_usize(offset + data.len() as u64)?;
        let write = PendingWrite::Write { offset, data: data.to_vec() };
        apply_write(&mut self.current, &write);
        self.pending.push(write);
        Ok(())
    }
}

impl DiskFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with_inode(|inode| {
            let start = offset_to_usize(offset)?;
            let bytes = inode.current.get(start..).and_then(|tail| tail.get(..buf.len()));
            let bytes = bytes.ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file")
            })?;
            buf.copy_from_slice(bytes);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_inode(|inode| inode.write(buf, offset))
    }

    fn append(&self, buf: &[u8]) -> io::Result<u64> {
        self.with_inode(|inode| {
            let offset = inode.current.len() as u64;
            inode.write(buf, offset)?;
            Ok(offset)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_inode(|inode| {
            inode.durable = inode.current.clone();
            inode.pending.clear();
            Ok(())
        })
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        // An operation (so that tests can make it fail) with no effect: data
        // written back early is no more durable in the model than any other
        // unsynced write, which a crash may keep or lose.
        offset_to_usize(offset.saturating_add(len))?;
        let mut state = lock(&self.state);
        state.begin_op()?;
        state.inode(self.inode, self.generation)?;
        state.writeback_hints += 1;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.with_inode(|inode| Ok(inode.current.len() as u64))
    }

    fn map(&self, len: u64) -> io::Result<Mapping> {
        self.with_inode(|inode| {
            let bytes = inode.current.get(..offset_to_usize(len)?);
            let bytes =
                bytes.ok_or_else(|| io::Error::other("mapping past the end of the file"))?;
            Ok(Mapping::copied(bytes.to_vec()))
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_inode(|inode| {
            offset_to_usize(len)?;
            let write = PendingWrite::SetLen(len);
            apply_write(&mut inode.current, &write);
            inode.pending.push(write);
            Ok(())
        })
    }
}
