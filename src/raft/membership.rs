//! Who is in the cluster: voters and learners, each with the address its
//! peers dial and the URL its clients use, and the single-server changes
//! that move from one membership to the next (thesis §4.1).
//!
//! A membership travels in the log as the data of an `EntryKind::Config`
//! entry (the whole membership, not a delta, so a node that sees only the
//! newest entry knows everyone) and in snapshots. Raft reads only the ids
//! and roles; the addresses are opaque strings the node interprets.
//!
//! Encoding (little-endian): version byte 1, member count u16, then per
//! member: id u64, role u8 (0 voter, 1 learner), peer address (u16 length,
//! UTF-8), client URL (u16 length, UTF-8); members in id order.

use std::fmt;

use super::types::NodeId;

/// Members (voters and learners) in a cluster, at most.
pub const MEMBERS_MAX: usize = 16;
/// Voters in a cluster, at most.
pub const VOTERS_MAX: usize = 9;
/// Bytes of a peer address or client URL, at most.
pub const ADDRESS_BYTES_MAX: usize = 255;
/// The encoding's version byte.
const FORMAT_VERSION: u8 = 1;

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberRole {
    /// Votes and counts toward every quorum.
    Voter,
    /// Receives the log and snapshots; never votes, campaigns or counts.
    Learner,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id (never 0).
    pub id: NodeId,
    /// Voter or learner.
    pub role: MemberRole,
    /// The address its peers dial (`host:port`), opaque to Raft.
    pub peer: String,
    /// The URL its clients use (may be empty), opaque to Raft.
    pub client_url: String,
}

/// A change of one server (thesis §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adds a member (a learner, or a voter directly).
    Add(Member),
    /// Makes a learner a voter.
    Promote(NodeId),
    /// Removes a member.
    Remove(NodeId),
}

/// Why a change cannot be made; each says what the operator does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// No member has this id (404).
    UnknownMember(NodeId),
    /// The id is already a member (409).
    AlreadyMember(NodeId),
    /// Another member has this peer address (409).
    AddressInUse(String),
    /// The change would leave no voter (409).
    LastVoter(NodeId),
    /// Only a learner can be promoted (409).
    NotLearner(NodeId),
    /// The learner is this many entries behind the leader (409: wait).
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// Entries it lacks.
        behind: u64,
    },
    /// A change is not committed yet; one at a time (409: wait).
    ChangeInProgress,
    /// A limit would be passed, or a field is malformed (400).
    Invalid(String),
    /// Encoded bytes do not decode as a membership: a damaged file, entry
    /// or message (never from a client's request).
    Malformed(String),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::UnknownMember(id) => write!(f, "no member has id {id}"),
            MembershipError::AlreadyMember(id) => write!(f, "{id} is already a member"),
            MembershipError::AddressInUse(addr) => {
                write!(f, "peer address {addr} is already a member's")
            }
            MembershipError::LastVoter(id) => {
                write!(f, "removing {id} would leave the cluster without a voter")
            }
            MembershipError::NotLearner(id) => write!(f, "{id} is not a learner"),
            MembershipError::LearnerBehind { id, behind } => {
                write!(f, "learner {id} is {behind} entries behind the leader; retry once it has caught up")
            }
            MembershipError::ChangeInProgress => {
                write!(f, "another membership change is not committed yet; retry after it")
            }
            MembershipError::Invalid(why) => write!(f, "{why}"),
            MembershipError::Malformed(why) => write!(f, "membership: {why}"),
        }
    }
}

impl std::error::Error for MembershipError {}

/// The cluster's members, in id order, ids unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Sorted by id.
    members: Vec<Member>,
}

impl Membership {
    /// A membership of `members`, checked.
    pub fn new(mut members: Vec<Member>) -> Result<Self, MembershipError> {
        members.sort_by_key(|member| member.id);
        let membership = Membership { members };
        membership.check()?;
        Ok(membership)
    }

    /// Voters `ids` with no addresses (tests and the simulator).
    pub fn voters_only(ids: &[NodeId]) -> Self {
        let members = ids
            .iter()
            .map(|&id| Member {
                id,
                role: MemberRole::Voter,
                peer: String::new(),
                client_url: String::new(),
            })
            .collect();
        Membership::new(members).unwrap_or_default()
    }

    /// Checks the limits and that ids are unique and not 0.
    fn check(&self) -> Result<(), MembershipError> {
        let invalid = |why: String| Err(MembershipError::Invalid(why));
        if self.members.len() > MEMBERS_MAX {
            return invalid(format!("{} members; at most {MEMBERS_MAX}", self.members.len()));
        }
        if self.voters().count() > VOTERS_MAX {
            return invalid(format!("{} voters; at most {VOTERS_MAX}", self.voters().count()));
        }
        for pair in self.members.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(MembershipError::AlreadyMember(pair[0].id));
            }
        }
        for member in &self.members {
            if member.id == 0 {
                return invalid("member id 0 is reserved".into());
            }
            if member.peer.len() > ADDRESS_BYTES_MAX || member.client_url.len() > ADDRESS_BYTES_MAX
            {
                return invalid(format!(
                    "member {}: an address over {ADDRESS_BYTES_MAX} bytes",
                    member.id
                ));
            }
        }
        Ok(())
    }

    /// Every member, in id order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with `id`.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.binary_search_by_key(&id, |m| m.id).ok().map(|at| &self.members[at])
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|m| m.role == MemberRole::Voter)
    }

    /// The voters' ids, in order.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|m| m.role == MemberRole::Voter).map(|m| m.id)
    }

    /// Every member's id, in order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().map(|m| m.id)
    }

    /// How many voters there are.
    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// The membership after `change`; the error says why it cannot be made.
    pub fn apply(&self, change: &MembershipChange) -> Result<Membership, MembershipError> {
        let mut members = self.members.clone();
        match change {
            MembershipChange::Add(member) => {
                if self.contains(member.id) {
                    return Err(MembershipError::AlreadyMember(member.id));
                }
                let taken = |m: &Member| !m.peer.is_empty() && m.peer == member.peer;
                if self.members.iter().any(taken) {
                    return Err(MembershipError::AddressInUse(member.peer.clone()));
                }
                members.push(member.clone());
            }
            MembershipChange::Promote(id) => {
                let member = members
                    .iter_mut()
                    .find(|m| m.id == *id)
                    .ok_or(MembershipError::UnknownMember(*id))?;
                if member.role != MemberRole::Learner {
                    return Err(MembershipError::NotLearner(*id));
                }
                member.role = MemberRole::Voter;
            }
            MembershipChange::Remove(id) => {
                if !self.contains(*id) {
                    return Err(MembershipError::UnknownMember(*id));
                }
                if self.is_voter(*id) && self.voter_count() == 1 {
                    return Err(MembershipError::LastVoter(*id));
                }
                members.retain(|m| m.id != *id);
            }
        }
        Membership::new(members)
    }

    /// The log-entry encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        let count = u16::try_from(self.members.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for member in &self.members {
            out.extend_from_slice(&member.id.to_le_bytes());
            out.push(match member.role {
                MemberRole::Voter => 0,
                MemberRole::Learner => 1,
            });
            for text in [&member.peer, &member.client_url] {
                let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// Reads [`Membership::encode`]'s layout; damaged or out-of-limit input
    /// is [`MembershipError::Malformed`], never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, MembershipError> {
        let malformed = |why: &str| MembershipError::Malformed(why.to_string());
        let mut reader = Reader(bytes);
        if reader.take(1)? != [FORMAT_VERSION] {
            return Err(malformed("unknown format version"));
        }
        let count = usize::from(reader.u16()?);
        if count > MEMBERS_MAX {
            return Err(MembershipError::Malformed(format!("{count} members")));
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let id = u64::from_le_bytes(reader.take(8)?.try_into().map_err(|_| malformed("id"))?);
            let role = match reader.take(1)? {
                [0] => MemberRole::Voter,
                [1] => MemberRole::Learner,
                _ => return Err(malformed("unknown role")),
            };
            let peer = reader.text()?;
            let client_url = reader.text()?;
            members.push(Member { id, role, peer, client_url });
        }
        if !reader.0.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        let membership = Membership { members };
        if membership.members.windows(2).any(|pair| pair[0].id >= pair[1].id) {
            return Err(malformed("ids not in order"));
        }
        membership.check().map_err(|e| MembershipError::Malformed(e.to_string()))?;
        Ok(membership)
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .members
            .iter()
            .map(|m| match m.role {
                MemberRole::Voter => m.id.to_string(),
                MemberRole::Learner => format!("{}(learner)", m.id),
            })
            .collect();
        write!(f, "[{}]", parts.join(" "))
    }
}

/// Reads the encoding.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MembershipError> {
        if self.0.len() < n {
            return Err(MembershipError::Malformed("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, MembershipError> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn text(&mut self) -> Result<String, MembershipError> {
        let len = usize::from(self.u16()?);
        if len > ADDRESS_BYTES_MAX {
            return Err(MembershipError::Malformed("address too long".into()));
        }
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| MembershipError::Malformed("not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, role: MemberRole) -> Member {
        Member {
            id,
            role,
            peer: format!("10.0.0.{id}:9081"),
            client_url: format!("https://10.0.0.{id}:8081"),
        }
    }

    #[test]
    fn encoding_round_trips_and_damage_is_refused() {
        let membership =
            Membership::new(vec![member(3, MemberRole::Learner), member(1, MemberRole::Voter)])
                .unwrap();
        let bytes = membership.encode();
        assert_eq!(Membership::decode(&bytes).unwrap(), membership);
        for cut in 0..bytes.len() {
            assert!(Membership::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Membership::decode(&extra).is_err());
        let mut bad_role = bytes;
        bad_role[11] = 7;
        assert!(Membership::decode(&bad_role).is_err());
    }

    #[test]
    fn changes_check_what_they_must() {
        let one = Membership::new(vec![member(1, MemberRole::Voter)]).unwrap();
        let two = one.apply(&MembershipChange::Add(member(2, MemberRole::Learner))).unwrap();
        assert!(two.contains(2) && !two.is_voter(2));
        assert_eq!(
            two.apply(&MembershipChange::Add(member(2, MemberRole::Voter))),
            Err(MembershipError::AlreadyMember(2))
        );
        let same_addr = Member { id: 5, ..member(2, MemberRole::Voter) };
        assert!(matches!(
            two.apply(&MembershipChange::Add(same_addr)),
            Err(MembershipError::AddressInUse(_))
        ));
        assert_eq!(one.apply(&MembershipChange::Remove(1)), Err(MembershipError::LastVoter(1)));
        assert_eq!(two.apply(&MembershipChange::Promote(1)), Err(MembershipError::NotLearner(1)));
        assert_eq!(
            two.apply(&MembershipChange::Promote(9)),
            Err(MembershipError::UnknownMember(9))
        );
        let promoted = two.apply(&MembershipChange::Promote(2)).unwrap();
        assert_eq!(promoted.voters().collect::<Vec<_>>(), vec![1, 2]);
        let removed = promoted.apply(&MembershipChange::Remove(1)).unwrap();
        assert_eq!(removed.ids().collect::<Vec<_>>(), vec![2]);
        let zero = Member { id: 0, ..member(4, MemberRole::Voter) };
        assert!(matches!(
            one.apply(&MembershipChange::Add(zero)),
            Err(MembershipError::Invalid(_))
        ));
    }
}
