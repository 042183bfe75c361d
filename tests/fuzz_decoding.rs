//! Fuzzing the two decoders that take bytes from outside: Cap'n Proto peer
//! messages and POST /command bodies. cargo-fuzz needs a nightly toolchain,
//! which these machines do not have, so this is seeded random fuzzing under
//! the ordinary test runner: arbitrary bytes, and valid inputs with random
//! mutations (flips, cuts, insertions). Nothing may panic; a refused input
//! is fine. `RDB_FUZZ_ITERATIONS` (default 20,000 per target) runs longer;
//! `RDB_TEST_SEED` replays a seed.

mod common;

use rdb::kv::Request;
use rdb::raft::{Body, Entry, EntryKind, Membership, Message, Position};
use rdb::rpc::raft_capnp::peer;

fn iterations() -> usize {
    std::env::var("RDB_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn rng() -> fastrand::Rng {
    let seed = common::seed::replay().unwrap_or(0xf022);
    fastrand::Rng::with_seed(seed)
}

fn mutate(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..8) {
        if bytes.is_empty() {
            bytes.push(rng.u8(..));
            continue;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(0..4) {
            0 => bytes[at] ^= 1 << rng.u8(0..8),
            1 => bytes[at] = rng.u8(..),
            2 => bytes.truncate(at),
            _ => bytes.insert(at, rng.u8(..)),
        }
    }
}

/// A `deliver` request carrying a few valid messages, serialized.
fn valid_deliver(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut builder = capnp::message::Builder::new_default();
    let params = builder.init_root::<peer::deliver_params::Builder>();
    let bodies = [
        Body::Vote { pre: true, last_index: 7, last_term: 2, transfer: false },
        Body::Append {
            prev_index: 3,
            prev_term: 1,
            entries: vec![
                Entry { term: 2, index: 4, kind: EntryKind::Normal, data: vec![1, 2, 3] },
                Entry {
                    term: 2,
                    index: 5,
                    kind: EntryKind::Config,
                    data: Membership::voters_only(&[1, 2, 3]).encode(),
                },
            ],
            commit: 3,
        },
        Body::Heartbeat { commit: 9, round: 4 },
        Body::Snapshot {
            meta: Position { index: 10, term: 2 },
            membership: Membership::voters_only(&[1, 2, 3]),
        },
        Body::ReadIndexResponse { ctx: 5, index: 9 },
    ];
    let count = rng.usize(1..=bodies.len());
    let mut list = params.init_messages(u32::try_from(count).expect("small"));
    for (at, body) in bodies.iter().take(count).enumerate() {
        let message = Message { from: 1, to: 2, term: 3, body: body.clone() };
        rdb::rpc::encode(&message, list.reborrow().get(u32::try_from(at).expect("small")))
            .expect("encodes");
    }
    let mut bytes = Vec::new();
    capnp::serialize::write_message(&mut bytes, &builder).expect("serializes");
    bytes
}

/// Decodes as the peer server does; errors are fine, panics are not.
fn decode_deliver(bytes: &[u8]) -> usize {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(1 << 20));
    let Ok(reader) = capnp::serialize::read_message(&mut &bytes[..], options) else { return 0 };
    let Ok(params) = reader.get_root::<peer::deliver_params::Reader>() else { return 0 };
    let Ok(messages) = params.get_messages() else { return 0 };
    messages.iter().filter_map(|m| rdb::rpc::decode(m).ok()).count()
}

#[test]
fn capnp_peer_messages_never_panic_the_decoder() {
    let mut rng = rng();
    let mut decoded = 0;
    for _ in 0..iterations() {
        let bytes: Vec<u8> = if rng.bool() {
            (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
        } else {
            let mut bytes = valid_deliver(&mut rng);
            mutate(&mut rng, &mut bytes);
            bytes
        };
        decoded += decode_deliver(&bytes);
    }
    assert!(
        decoded > 0,
        "no mutated input decoded at all: the mutations are too coarse to test anything"
    );
    assert!(decode_deliver(&valid_deliver(&mut rng)) > 0);
}

#[test]
fn command_bodies_never_panic_the_parser() {
    let mut rng = rng();
    let valid = [
        r#"{"action":"put","payload":{"collection":"c","value":"v"}}"#,
        r#"{"action":"put","payload":{"collection":"c","key":"k","value":"v"}}"#,
        r#"{"action":"cas","payload":{"collection":"c","key":"k","expected":null,"value":"v"}}"#,
        r#"{"action":"range","payload":{"collection":"c","start":"a","end":"z","prefix":"b","limit":5}}"#,
        r#"{"action":"get","payload":{"collection":"c","key":"k","consistency":"serializable"}}"#,
        r#"{"action":"drop collection","payload":{"collection":"c"}}"#,
        r#"{"action":"list collections"}"#,
    ];
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..iterations() {
        let bytes: Vec<u8> = if rng.u8(0..4) == 0 {
            (0..rng.usize(0..128)).map(|_| rng.u8(..)).collect()
        } else {
            let mut bytes = valid[rng.usize(..valid.len())].as_bytes().to_vec();
            mutate(&mut rng, &mut bytes);
            bytes
        };
        match Request::parse(&bytes, &rdb::kv::Limits::default()) {
            Ok(_) => accepted += 1,
            Err(reply) => {
                assert!(
                    (400..500).contains(&reply.status),
                    "{} for {:?}",
                    reply.status,
                    String::from_utf8_lossy(&bytes)
                );
                refused += 1;
            }
        }
    }
    assert!(accepted > 0 && refused > 0, "accepted {accepted}, refused {refused}");
}
