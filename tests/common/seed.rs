//! The one variable that replays a failing seed in every randomized test,
//! here and in the storage crate's (`storage/tests/common`): a failure
//! prints `RDB_TEST_SEED=<seed>` and the command to run.

/// The variable's name.
pub const REPLAY: &str = "RDB_TEST_SEED";

/// The seed to replay, if the variable is set. Panics if it is not a number.
pub fn replay() -> Option<u64> {
    std::env::var(REPLAY)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{REPLAY} must be a number, not {v:?}")))
}
