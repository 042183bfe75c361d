//! Helpers shared by the seeded tests: which seeds to run, and how a failing
//! seed tells the reader to replay it.

/// The seeds to run: `RDB_TEST_SEED` alone if set, else `0..n` where `n` is
/// the variable `count_variable` or `default_count`.
pub fn seeds(count_variable: &str, default_count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("RDB_TEST_SEED") {
        return vec![seed.parse().expect("RDB_TEST_SEED is a number")];
    }
    let count =
        std::env::var(count_variable).map_or(default_count, |n| n.parse().expect("a number"));
    (0..count).collect()
}

/// Prints how to replay a seed if the test panics while it lives.
pub struct SeedReport {
    /// The test target (`--test` name).
    pub target: &'static str,
    /// The seed being run.
    pub seed: u64,
}

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{0} failed for seed {1}; replay with:\n  RDB_TEST_SEED={1} cargo test -p rdb-storage --test {0}",
                self.target, self.seed
            );
        }
    }
}
