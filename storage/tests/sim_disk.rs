//! The simulated disk keeps the durability model that FORMAT.md assumes: what
//! was synced survives a crash, what was not may vanish, tear or read as
//! zeros, and names need a directory sync.

use std::collections::BTreeSet;
use std::path::Path;

use rdb_storage::disk::{Disk, SimDisk};

const SEEDS: u64 = 300;

fn file_after_crash(disk: &SimDisk, path: &Path) -> Option<Vec<u8>> {
    disk.crash();
    disk.contents(path)
}

#[test]
fn synced_bytes_survive_and_unsynced_ones_are_lost_torn_or_zeroed() {
    let path = Path::new("/d/f");
    let mut outcomes = BTreeSet::new();
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let file = disk.open(path, true).unwrap();
        file.write_all_at(b"synced", 0).unwrap();
        file.sync_data().unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        file.append(b"-later").unwrap();
        let after = file_after_crash(&disk, path).expect("the name was synced");
        assert!(after.starts_with(b"synced"), "seed {seed}: {after:?}");
        let tail = &after[6..];
        let torn_prefix = b"-later".starts_with(tail);
        let zeroed = tail == [0; 6];
        assert!(torn_prefix || zeroed, "seed {seed}: unexpected tail {tail:?}");
        outcomes.insert(if zeroed { "zeros".to_string() } else { format!("{} bytes", tail.len()) });
    }
    assert!(
        outcomes.contains("0 bytes") && outcomes.contains("6 bytes") && outcomes.contains("zeros")
    );
    assert!(outcomes.len() > 4, "torn prefixes of several lengths happen: {outcomes:?}");
}

#[test]
fn a_name_is_durable_only_after_a_directory_sync() {
    let mut survived = [0, 0];
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let file = disk.open(Path::new("/d/new"), true).unwrap();
        file.write_all_at(b"x", 0).unwrap();
        file.sync_data().unwrap();
        survived[usize::from(file_after_crash(&disk, Path::new("/d/new")).is_some())] += 1;

        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.open(Path::new("/d/new"), true).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        assert!(file_after_crash(&disk, Path::new("/d/new")).is_some(), "seed {seed}");
    }
    assert!(
        survived[0] > 0 && survived[1] > 0,
        "an unsynced name may or may not survive: {survived:?}"
    );
}

#[test]
fn rename_is_atomic_across_a_crash() {
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new("/d")).unwrap();
        for (name, content) in [("/d/a", b"old"), ("/d/a.tmp", b"new")] {
            let file = disk.open(Path::new(name), true).unwrap();
            file.write_all_at(content, 0).unwrap();
            file.sync_data().unwrap();
        }
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.rename(Path::new("/d/a.tmp"), Path::new("/d/a")).unwrap();
        disk.crash();
        let a = disk.contents(Path::new("/d/a")).unwrap();
        let tmp = disk.contents(Path::new("/d/a.tmp"));
        let old_state = a == b"old" && tmp.as_deref() == Some(&b"new"[..]);
        let new_state = a == b"new" && tmp.is_none();
        assert!(old_state || new_state, "seed {seed}: a={a:?} tmp={tmp:?}");
    }
}

#[test]
fn the_chosen_operation_fails_without_effect_and_old_handles_die_at_a_crash() {
    let disk = SimDisk::new(1);
    disk.create_dir_all(Path::new("/d")).unwrap();
    let file = disk.open(Path::new("/d/f"), true).unwrap();
    disk.fail_at(disk.ops() + 1);
    file.write_all_at(b"one", 0).unwrap();
    assert!(file.write_all_at(b"two", 3).is_err(), "operation ops()+1 fails");
    file.write_all_at(b"three", 3).unwrap();
    assert_eq!(disk.contents(Path::new("/d/f")).unwrap(), b"onethree");
    disk.crash();
    assert!(file.len().is_err(), "a handle from before the crash is dead");
}
