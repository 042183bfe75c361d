//! Every block of ports a test starts servers on, in one table, so that
//! tests running in parallel (cargo runs a binary's tests on many threads,
//! and CI may run binaries side by side) never share a port. A block is
//! [`BLOCK_PORTS`] ports from its base: HTTP at base+1.., peers at base+51..
//! (as `TestCluster` lays them out), extras (haproxy's front, a rogue
//! listener) at base+60..99. Jepsen's rigs take two blocks (their proxies
//! sit at base+101..). [`base`] checks the table each time it is asked, so
//! an overlapping entry fails every test that uses the table.

/// Ports in one block.
pub const BLOCK_PORTS: u16 = 100;

/// (test, base, blocks). Keep in port order.
const BLOCKS: &[(&str, u16, u16)] = &[
    ("cluster_api", 21_000, 1),
    ("cluster_faults::a_killed_leader_is_replaced", 21_100, 1),
    ("cluster_faults::five_nodes", 21_200, 1),
    ("cluster_faults::concurrent_clients", 21_300, 1),
    ("cluster_garbage", 21_400, 1),
    ("cluster_faults::a_whole_cluster_killed", 21_500, 1),
    ("cluster_snapshots::catches_up_by_snapshot", 21_600, 1),
    ("cluster_snapshots::killed_while_receiving", 21_700, 1),
    ("cluster_snapshots::the_wal_stays_bounded", 21_800, 1),
    ("cluster_tls::serves_https", 21_900, 1),
    ("cluster_tls::sigterm_under_load", 22_000, 1),
    ("cluster_tls::systemd_hears_ready", 22_100, 1),
    ("cluster_snapshots::rebuilt_from_one_backup", 22_200, 1),
    ("dev_cluster::serves_the_printed_commands", 22_300, 1),
    ("dev_cluster::tls", 22_400, 1),
    ("cluster_tls::sighup_rotates_certificates", 22_500, 1),
    ("cluster_tls::joins_only_as_the_member_it_names", 22_600, 1),
    ("cluster_garbage::redialled_with_backoff", 22_700, 1),
    ("jepsen::kills", 23_000, 2),
    ("jepsen::pauses", 23_200, 2),
    ("jepsen::partitions", 23_400, 2),
    ("jepsen::one_way_and_bridges", 23_600, 2),
    ("jepsen::snapshot_crashes", 23_800, 2),
    ("jepsen::everything_at_once", 24_000, 2),
    ("jepsen::membership_changes", 24_200, 2),
    ("http_front_door", 24_400, 1),
    ("haproxy", 24_500, 1),
    ("dev_cluster::haproxy", 24_600, 1),
    ("dev_cluster::without_haproxy", 24_700, 1),
    ("cluster_membership::a_dead_member_is_replaced", 24_800, 1),
    ("cluster_membership::grow_to_five", 24_900, 1),
    ("cluster_membership::bad_admin_requests", 25_000, 1),
    ("cluster_membership::a_stopping_leader_hands_over", 25_100, 1),
    ("cluster_membership::the_cli_over_tls", 25_200, 1),
    ("cluster_membership::a_learner_catches_up", 25_300, 1),
    ("bench_cli::random_put_then_existing_get", 25_400, 1),
    ("bench_cli::https_with_a_client_certificate", 25_500, 1),
    ("cluster_tls::the_shipped_config_file", 25_600, 1),
    ("cluster_tls::clients_need_a_certificate", 25_700, 1),
    ("api_scripts", 25_800, 1),
    ("cli_kv", 25_900, 1),
    ("probes", 26_000, 1),
    ("operator::status", 26_100, 1),
    ("operator::metrics", 26_200, 1),
    ("operator::space_guard", 26_300, 1),
    ("operator::logs", 26_400, 1),
    ("operator::snapshot", 26_500, 1),
    ("operator::inspect", 26_600, 1),
    ("dashboard", 26_700, 1),
    ("operator::cluster_version", 26_800, 1),
    ("watch::stream", 26_900, 1),
    ("watch::limits", 27_000, 1),
    ("leases::expiry", 27_100, 1),
    ("leases::revoke", 27_200, 1),
    ("watch::snapshot_install", 27_300, 1),
    ("leases::lock_recipe", 27_400, 1),
    ("cluster_faults::wiped_follower", 27_500, 1),
    ("cluster_api::reads_its_own_writes", 27_600, 1),
];

/// The first port of `test`'s block. Panics if `test` is not in the table
/// or two blocks overlap.
pub fn base(test: &str) -> u16 {
    for pair in BLOCKS.windows(2) {
        let ((a, a_base, a_blocks), (b, b_base, _)) = (pair[0], pair[1]);
        assert!(
            a_base + a_blocks * BLOCK_PORTS <= b_base,
            "tests/common/ports.rs: the blocks of {a} and {b} overlap (keep the table in port order)"
        );
    }
    let mut names: Vec<&str> = BLOCKS.iter().map(|(name, _, _)| *name).collect();
    names.sort_unstable();
    assert!(names.windows(2).all(|w| w[0] != w[1]), "a test is listed twice");
    BLOCKS
        .iter()
        .find(|(name, _, _)| *name == test)
        .map(|(_, base, _)| *base)
        .unwrap_or_else(|| panic!("add {test:?} to the table in tests/common/ports.rs"))
}
