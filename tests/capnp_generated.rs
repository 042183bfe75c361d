//! The Rust code generated from `schema/raft.capnp` is committed
//! (`src/rpc/raft_capnp.rs`), so that a machine with only the Rust toolchain
//! builds rdb. This test regenerates it with the `capnp` tool and fails on any
//! difference, so the schema and the code cannot drift apart.
//!
//! - `RDB_CAPNP_WRITE=1` rewrites the committed file instead of comparing.
//! - Without the `capnp` tool the test cannot compare; it then fails only
//!   when `RDB_REQUIRE_CAPNP=1` (CI sets it after installing Debian's
//!   capnproto), and otherwise says on stderr that it skipped.

use std::path::Path;
use std::process::Command;

const GENERATED: &str = "src/rpc/raft_capnp.rs";

fn capnp_available() -> bool {
    Command::new("capnp").arg("--version").output().is_ok_and(|out| out.status.success())
}

#[test]
fn committed_capnp_code_matches_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !capnp_available() {
        assert!(
            std::env::var_os("RDB_REQUIRE_CAPNP").is_none(),
            "RDB_REQUIRE_CAPNP is set but the capnp tool is not on PATH"
        );
        eprintln!("skipped: the capnp tool is not installed (apt-get install capnproto)");
        return;
    }
    let out = tempfile::tempdir().expect("a temporary directory");
    capnpc::CompilerCommand::new()
        .src_prefix(root.join("schema"))
        .file(root.join("schema/raft.capnp"))
        .default_parent_module(vec!["rpc".into()])
        .output_path(out.path())
        .run()
        .expect("capnp compile succeeds");
    let fresh = std::fs::read_to_string(out.path().join("raft_capnp.rs")).expect("generated file");
    let committed_path = root.join(GENERATED);
    if std::env::var_os("RDB_CAPNP_WRITE").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write the generated code");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{GENERATED} differs from what schema/raft.capnp generates; \
         run `RDB_CAPNP_WRITE=1 cargo test --test capnp_generated` and commit the result"
    );
}
