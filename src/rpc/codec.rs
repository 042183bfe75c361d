//! Raft messages to and from Cap'n Proto. Decoding checks everything a
//! peer could get wrong (unknown variants, out-of-range lengths) and returns
//! an error instead of a message; the connection that sent it is then closed.

use capnp::Error;

use super::raft_capnp::{entry, message};
use crate::raft::{Body, Entry, EntryKind, Membership, Message};

/// Writes `message` into `builder`.
pub fn encode(message: &Message, mut builder: message::Builder<'_>) -> Result<(), Error> {
    builder.set_from(message.from);
    builder.set_to(message.to);
    builder.set_term(message.term);
    let body = builder.init_body();
    match &message.body {
        Body::Vote { pre, last_index, last_term, transfer } => {
            let mut vote = body.init_request_vote();
            vote.set_pre_vote(*pre);
            vote.set_last_index(*last_index);
            vote.set_last_term(*last_term);
            vote.set_transfer(*transfer);
        }
        Body::VoteResponse { pre, granted } => {
            let mut answer = body.init_vote_response();
            answer.set_pre_vote(*pre);
            answer.set_granted(*granted);
        }
        Body::Append { prev_index, prev_term, entries, commit } => {
            let mut append = body.init_append_entries();
            append.set_prev_index(*prev_index);
            append.set_prev_term(*prev_term);
            append.set_commit(*commit);
            let count = u32::try_from(entries.len())
                .map_err(|_| Error::failed("too many entries in one append".into()))?;
            let mut list = append.init_entries(count);
            for (at, entry) in (0..count).zip(entries) {
                encode_entry(entry, list.reborrow().get(at));
            }
        }
        Body::AppendResponse { reject, index, hint_index, hint_term } => {
            let mut answer = body.init_append_response();
            answer.set_reject(*reject);
            answer.set_index(*index);
            answer.set_hint_index(*hint_index);
            answer.set_hint_term(*hint_term);
        }
        Body::Heartbeat { commit, round } => {
            let mut heartbeat = body.init_heartbeat();
            heartbeat.set_commit(*commit);
            heartbeat.set_round(*round);
        }
        Body::HeartbeatResponse { round } => body.init_heartbeat_response().set_round(*round),
        Body::Snapshot { meta, membership } => {
            let mut offer = body.init_snapshot();
            offer.set_index(meta.index);
            offer.set_term(meta.term);
            offer.set_membership(&membership.encode());
        }
        Body::TimeoutNow => {
            let mut body = body;
            body.set_timeout_now(());
        }
        Body::ReadIndex { ctx } => body.init_read_index().set_ctx(*ctx),
        Body::ReadIndexResponse { ctx, index } => {
            let mut answer = body.init_read_index_response();
            answer.set_ctx(*ctx);
            answer.set_index(*index);
        }
    }
    Ok(())
}

fn encode_entry(entry: &Entry, mut builder: entry::Builder<'_>) {
    builder.set_term(entry.term);
    builder.set_index(entry.index);
    builder.set_noop(entry.kind == EntryKind::Noop);
    builder.set_config(entry.kind == EntryKind::Config);
    builder.set_data(&entry.data);
}

/// Reads a message.
pub fn decode(reader: message::Reader<'_>) -> Result<Message, Error> {
    use message::body::Which;
    let body = match reader.get_body().which().map_err(|e| Error::failed(e.to_string()))? {
        Which::RequestVote(vote) => {
            let vote = vote?;
            Body::Vote {
                pre: vote.get_pre_vote(),
                last_index: vote.get_last_index(),
                last_term: vote.get_last_term(),
                transfer: vote.get_transfer(),
            }
        }
        Which::VoteResponse(answer) => {
            let answer = answer?;
            Body::VoteResponse { pre: answer.get_pre_vote(), granted: answer.get_granted() }
        }
        Which::AppendEntries(append) => {
            let append = append?;
            let entries =
                append.get_entries()?.iter().map(decode_entry).collect::<Result<_, _>>()?;
            Body::Append {
                prev_index: append.get_prev_index(),
                prev_term: append.get_prev_term(),
                entries,
                commit: append.get_commit(),
            }
        }
        Which::AppendResponse(answer) => {
            let answer = answer?;
            Body::AppendResponse {
                reject: answer.get_reject(),
                index: answer.get_index(),
                hint_index: answer.get_hint_index(),
                hint_term: answer.get_hint_term(),
            }
        }
        Which::Heartbeat(heartbeat) => {
            let heartbeat = heartbeat?;
            Body::Heartbeat { commit: heartbeat.get_commit(), round: heartbeat.get_round() }
        }
        Which::HeartbeatResponse(answer) => Body::HeartbeatResponse { round: answer?.get_round() },
        Which::Snapshot(offer) => {
            let offer = offer?;
            let meta = crate::raft::Position { index: offer.get_index(), term: offer.get_term() };
            let membership = Membership::decode(offer.get_membership()?)
                .map_err(|e| Error::failed(e.to_string()))?;
            Body::Snapshot { meta, membership }
        }
        Which::TimeoutNow(()) => Body::TimeoutNow,
        Which::ReadIndex(read) => Body::ReadIndex { ctx: read?.get_ctx() },
        Which::ReadIndexResponse(answer) => {
            let answer = answer?;
            Body::ReadIndexResponse { ctx: answer.get_ctx(), index: answer.get_index() }
        }
    };
    Ok(Message { from: reader.get_from(), to: reader.get_to(), term: reader.get_term(), body })
}

fn decode_entry(reader: entry::Reader<'_>) -> Result<Entry, Error> {
    let kind = match (reader.get_noop(), reader.get_config()) {
        (false, false) => EntryKind::Normal,
        (true, false) => EntryKind::Noop,
        (false, true) => EntryKind::Config,
        (true, true) => return Err(Error::failed("an entry both no-op and config".into())),
    };
    Ok(Entry {
        term: reader.get_term(),
        index: reader.get_index(),
        kind,
        data: reader.get_data()?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Position;

    fn round_trip(message: &Message) -> Message {
        let mut builder = capnp::message::Builder::new_default();
        encode(message, builder.init_root()).expect("encodes");
        let mut bytes = Vec::new();
        capnp::serialize::write_message(&mut bytes, &builder).expect("serializes");
        let reader = capnp::serialize::read_message(&mut bytes.as_slice(), Default::default())
            .expect("deserializes");
        decode(reader.get_root().expect("a root")).expect("decodes")
    }

    #[test]
    fn every_body_survives_a_round_trip() {
        let entry = |index, kind, data: &[u8]| Entry { term: 3, index, kind, data: data.to_vec() };
        let bodies = vec![
            Body::Vote { pre: true, last_index: 9, last_term: 2, transfer: true },
            Body::VoteResponse { pre: false, granted: true },
            Body::Append {
                prev_index: 4,
                prev_term: 2,
                entries: vec![
                    entry(5, EntryKind::Noop, b""),
                    entry(6, EntryKind::Normal, b"x"),
                    entry(7, EntryKind::Config, &Membership::voters_only(&[1, 2]).encode()),
                ],
                commit: 4,
            },
            Body::AppendResponse { reject: true, index: 7, hint_index: 5, hint_term: 1 },
            Body::Heartbeat { commit: 11, round: 12 },
            Body::HeartbeatResponse { round: 12 },
            Body::Snapshot {
                meta: Position { index: 100, term: 4 },
                membership: Membership::voters_only(&[1, 2, 3]),
            },
            Body::TimeoutNow,
            Body::ReadIndex { ctx: 77 },
            Body::ReadIndexResponse { ctx: 77, index: 12 },
        ];
        for body in bodies {
            let message = Message { from: 1, to: 2, term: 3, body };
            assert_eq!(round_trip(&message), message);
        }
    }
}
