# The peer protocol of rdb: Raft messages between cluster members, and
# client commands a follower forwards to the leader.
#
# Every member runs one `Peer` capability. The member with the lower id dials
# the one with the higher id, and both ends then hold the other's `Peer` on
# that one connection (capnp-rpc is symmetric), so each pair of members shares
# one connection. The higher id dials too when no connection has come for a
# few seconds (a joining node with a low id knows no one to dial). Raft messages are one-way: `deliver` returns as soon
# as the receiver has queued them, and answers travel back as messages of
# their own, as in the Raft paper's asynchronous model.
@0xdb0da394cca89a4b;

struct Entry {
  term @0 :UInt64;
  index @1 :UInt64;
  # A no-op carries no data; a leader appends one when it is elected (§5.4.2).
  noop @2 :Bool;
  data @3 :Data;
  # A membership (rdb's encoding in `data`), in force on each node once it is
  # in its log (thesis §4.1).
  config @4 :Bool;
}

# Candidate asks for a vote (§5.2). With `preVote` it only asks whether the
# vote would be granted (thesis §9.6); with `transfer` it was told to stand by
# the leader (TimeoutNow), so voters do not keep to that leader's lease.
struct RequestVote {
  preVote @0 :Bool;
  lastIndex @1 :UInt64;
  lastTerm @2 :UInt64;
  transfer @3 :Bool;
}

struct VoteResponse {
  preVote @0 :Bool;
  granted @1 :Bool;
}

# A batch of entries following prevIndex (§5.3).
struct AppendEntries {
  prevIndex @0 :UInt64;
  prevTerm @1 :UInt64;
  entries @2 :List(Entry);
  commit @3 :UInt64;
}

struct AppendResponse {
  reject @0 :Bool;
  index @1 :UInt64;
  hintIndex @2 :UInt64;
  hintTerm @3 :UInt64;
}

struct Heartbeat {
  commit @0 :UInt64;
  round @1 :UInt64;
}

struct HeartbeatResponse {
  round @0 :UInt64;
}

# Tells a follower that the leader's snapshot ending at (index, term) follows
# as InstallSnapshot chunks.
struct SnapshotOffer {
  index @0 :UInt64;
  term @1 :UInt64;
  # The membership as of `index` (rdb's encoding).
  membership @2 :Data;
}

struct ReadIndex {
  ctx @0 :UInt64;
}

struct ReadIndexResponse {
  ctx @0 :UInt64;
  index @1 :UInt64;
}

struct Message {
  from @0 :UInt64;
  to @1 :UInt64;
  term @2 :UInt64;
  body :union {
    requestVote @3 :RequestVote;
    voteResponse @4 :VoteResponse;
    appendEntries @5 :AppendEntries;
    appendResponse @6 :AppendResponse;
    heartbeat @7 :Heartbeat;
    heartbeatResponse @8 :HeartbeatResponse;
    snapshot @9 :SnapshotOffer;
    timeoutNow @10 :Void;
    readIndex @11 :ReadIndex;
    readIndexResponse @12 :ReadIndexResponse;
  }
}

# One chunk of a snapshot file; chunks of one transfer arrive in order of
# `offset`, and `done` marks the last.
struct SnapshotChunk {
  from @0 :UInt64;
  term @1 :UInt64;
  index @2 :UInt64;
  snapshotTerm @3 :UInt64;
  offset @4 :UInt64;
  bytes @5 :Data;
  done @6 :Bool;
}

interface Peer {
  # Introduces the dialing member; the answer names the receiver. A
  # connection whose ids do not match the configured members is closed.
  hello @0 (from :UInt64, cluster :Text) -> (id :UInt64);

  # Raft messages, in order; one-way in meaning.
  deliver @1 (messages :List(Message)) -> ();

  # A client command (the JSON body of POST /command, when `target` is empty)
  # or an admin request (`target` "METHOD /admin/...", its JSON body) that a
  # follower forwards to the leader; the answer is the leader's HTTP status
  # and body.
  forward @2 (request :Data, target :Text) -> (status :UInt16, body :Data);

  # A chunk of a snapshot (used once snapshots are shipped, see the snapshot
  # issue); `accepted` false asks the sender to restart the transfer.
  installSnapshot @3 (chunk :SnapshotChunk) -> (accepted :Bool);
}
