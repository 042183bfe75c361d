//! The node's recent changes and its watchers (`watch`, docs/API.md).
//!
//! The apply thread records every change it applies as an [`Event`] (the
//! revision is the entry's index) in a bounded history, then hands each to
//! the watchers whose filter it matches. A watcher starting from an older
//! revision is first given the history from there (under the same lock as
//! new events are recorded, so it sees each change exactly once and in
//! order); a revision older than the history keeps is refused with the
//! oldest one available (etcd's "compacted").
//!
//! Caveats: the history is this node's, in memory: a restart, or a
//! snapshot installed from the leader, starts it afresh (watchers then get
//! an error event and resume from the oldest revision kept, or re-read).
//! A watcher whose buffer fills (a reader slower than the writes) is cut
//! with an error event rather than let the node hold unbounded memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::kv::{Command, Outcome, Revisions};

/// Events a watcher may have waiting before it is cut. A revision's events
/// are delivered whole (a range delete, a txn), so a watcher is cut only
/// between revisions, and may hold one revision's events beyond this.
pub const WATCH_BUFFER_EVENTS: usize = 1_024;
/// Watchers one node serves at once.
pub const WATCHERS_MAX: usize = 1_000;
/// Bytes of events (as [`Event::bytes`] counts them) a watcher may have
/// waiting when a new revision begins, or it is cut: with large values,
/// [`WATCH_BUFFER_EVENTS`] alone would let one stalled reader hold a GiB.
pub const WATCH_BUFFER_BYTES: usize = 16 << 20;

/// What a watcher has been sent and not yet taken.
#[derive(Debug, Default)]
pub struct Backlog {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

impl Backlog {
    /// Counts `event` as taken by the watcher.
    pub fn take(&self, event: &Event) {
        self.events.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(event.bytes(), Ordering::AcqRel);
    }

    fn add(&self, event: &Event) {
        self.events.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(event.bytes(), Ordering::AcqRel);
    }

    fn full(&self) -> bool {
        self.events.load(Ordering::Acquire) >= WATCH_BUFFER_EVENTS
            || self.bytes.load(Ordering::Acquire) >= WATCH_BUFFER_BYTES
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The entry that made it.
    pub revision: u64,
    /// "put", "delete" or "drop" (a whole collection).
    pub kind: &'static str,
    /// The collection.
    pub collection: String,
    /// The key ("" for a drop).
    pub key: String,
    /// The new value (put), the removed one (delete), or "".
    pub value: String,
    /// The item's revisions after a put, before a delete.
    pub revisions: Revisions,
    /// The event's stream line, made once for every watcher (see
    /// [`Event::line`]).
    pub line: std::sync::OnceLock<Vec<u8>>,
}

impl Event {
    /// The event as a watcher receives it.
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "collection": self.collection, "key": self.key,
               "value": self.value, "revision": self.revision,
               "create_revision": self.revisions.create_revision,
               "mod_revision": self.revisions.mod_revision,
               "version": self.revisions.version})
    }

    /// The event as a line of a streaming watch (JSON and a newline), made
    /// once however many watchers are sent it.
    pub fn line(&self) -> &[u8] {
        self.line.get_or_init(|| {
            let mut bytes = self.to_json().to_string().into_bytes();
            bytes.push(b'\n');
            bytes
        })
    }

    /// About the memory it holds: its fields and, once a watcher was sent
    /// it, its line (their size again plus the field names; more for
    /// text JSON must escape).
    pub fn bytes(&self) -> usize {
        224 + 2 * (self.collection.len() + self.key.len() + self.value.len())
    }
}

/// The changes `command`, applied at `revision` with `outcome`, made.
pub fn events_of(command: &Command, outcome: &Outcome, revision: u64) -> Vec<Event> {
    let event = |kind, collection: &str, key: &str, value: &str, revisions| Event {
        revision,
        kind,
        collection: collection.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        revisions,
        line: std::sync::OnceLock::new(),
    };
    match (command, outcome) {
        (Command::Txn(text), Outcome::Txn { succeeded, results }) => {
            let Ok(spec) = crate::kv::parse_txn(text) else { return Vec::new() };
            let ops = if *succeeded { &spec.success } else { &spec.failure };
            let writes = ops.iter().zip(results).filter_map(|(op, outcome)| match op {
                crate::kv::Request::Write(command) => Some(events_of(command, outcome, revision)),
                _ => None,
            });
            writes.flatten().collect()
        }
        (_, Outcome::Item { collection, key, value, revisions }) => {
            let kind = match command {
                Command::DeleteKey { .. } | Command::DeleteValue { .. } => "delete",
                Command::SetClusterVersion { .. } => return Vec::new(),
                // A value-addressed put of a value already held changes
                // nothing.
                Command::PutValue { key: drawn, .. } if drawn != key => return Vec::new(),
                _ => "put",
            };
            vec![event(kind, collection, key, value, *revisions)]
        }
        (_, Outcome::Deleted { collection, keys, .. }) => keys
            .iter()
            .map(|(key, value, revisions)| event("delete", collection, key, value, *revisions))
            .collect(),
        (_, Outcome::LeaseRevoked { removed, .. }) => removed
            .iter()
            .map(|(collection, key, value, revisions)| {
                event("delete", collection, key, value, *revisions)
            })
            .collect(),
        (_, Outcome::Dropped { collection }) => {
            vec![event("drop", collection, "", "", Revisions::default())]
        }
        _ => Vec::new(),
    }
}

/// Which changes a watcher wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The collection.
    pub collection: String,
    /// One key, or (None) every key starting with `prefix`.
    pub key: Option<String>,
    /// The prefix (empty: the whole collection).
    pub prefix: String,
}

impl Filter {
    fn matches(&self, event: &Event) -> bool {
        event.collection == self.collection
            && (event.kind == "drop"
                || match &self.key {
                    Some(key) => event.key == *key,
                    None => event.key.starts_with(&self.prefix),
                })
    }
}

/// Why a watcher's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Its buffer filled.
    Overflow,
    /// The history restarted (a snapshot was installed).
    Reset,
}

/// A registered watcher, as the history holds it.
struct Registered {
    filter: Filter,
    /// Events before this revision were replayed or not asked for.
    from: u64,
    sender: async_std::channel::Sender<Arc<Event>>,
    /// Events sent and not yet taken by the watcher.
    pending: Arc<Backlog>,
    /// The revision of the last event sent (a cut never splits one).
    last_sent: u64,
    cut: Arc<Mutex<Option<Cut>>>,
}

/// What a new watcher gets: the history it asked for, and the live feed.
#[derive(Debug)]
pub struct Subscription {
    /// Events from `from_revision` up to now, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// Later events; closed when the watcher is cut.
    pub live: async_std::channel::Receiver<Arc<Event>>,
    /// Why it was cut, once it is.
    pub cut: Arc<Mutex<Option<Cut>>>,
    /// Events sent and not yet taken: whoever takes one from `live`
    /// counts it with [`Backlog::take`].
    pub pending: Arc<Backlog>,
    /// The revision the replay reaches (the node's applied index).
    pub revision: u64,
}

/// Refusals of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchRefused {
    /// `from_revision` is older than the history: the oldest kept.
    Compacted { oldest: u64 },
    /// Too many watchers on this node.
    TooMany,
}

/// The recent changes and the watchers.
#[derive(Debug)]
pub struct History {
    inner: Mutex<Inner>,
}

struct Inner {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    events_max: usize,
    bytes_max: usize,
    /// Every change after this revision is in `events` (or is later).
    complete_after: u64,
    /// The newest revision applied.
    applied: u64,
    watchers: Vec<Registered>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("events", &self.events.len())
            .field("watchers", &self.watchers.len())
            .finish_non_exhaustive()
    }
}

impl History {
    /// An empty history of at most `events_max` events and `bytes_max`
    /// bytes, complete after `applied` (the state's applied index).
    pub fn new(events_max: usize, bytes_max: usize, applied: u64) -> Self {
        let inner = Inner {
            events: VecDeque::new(),
            bytes: 0,
            events_max,
            bytes_max,
            complete_after: applied,
            applied,
            watchers: Vec::new(),
        };
        History { inner: Mutex::new(inner) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the changes of entries applied up to `applied` and hands
    /// them to the watchers.
    pub fn record(&self, events: Vec<Event>, applied: u64) {
        let mut inner = self.lock();
        for event in events {
            let event = Arc::new(event);
            inner.bytes += event.bytes();
            inner.events.push_back(event.clone());
            inner.watchers.retain_mut(|watcher| deliver(watcher, &event));
        }
        inner.applied = inner.applied.max(applied);
        while inner.events.len() > inner.events_max || inner.bytes > inner.bytes_max {
            let Some(old) = inner.events.pop_front() else { break };
            inner.bytes -= old.bytes();
            inner.complete_after = old.revision;
        }
    }

    /// Starts afresh after the state was replaced (a snapshot installed):
    /// every watcher is cut.
    pub fn reset(&self, applied: u64) {
        let mut inner = self.lock();
        for watcher in inner.watchers.drain(..) {
            *watcher.cut.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Cut::Reset);
        }
        inner.events.clear();
        inner.bytes = 0;
        inner.complete_after = applied;
        inner.applied = applied;
    }

    /// The applied index the history is complete up to.
    pub fn applied(&self) -> u64 {
        self.lock().applied
    }

    /// Registers a watcher for `filter` from `from_revision` (None: from
    /// now on).
    pub fn subscribe(
        &self,
        filter: Filter,
        from_revision: Option<u64>,
    ) -> Result<Subscription, WatchRefused> {
        let mut inner = self.lock();
        inner.watchers.retain(|watcher| !watcher.sender.is_closed());
        if inner.watchers.len() >= WATCHERS_MAX {
            return Err(WatchRefused::TooMany);
        }
        let replay = match from_revision {
            Some(from) if from <= inner.complete_after => {
                return Err(WatchRefused::Compacted { oldest: inner.complete_after + 1 })
            }
            Some(from) => inner
                .events
                .iter()
                .filter(|event| event.revision >= from && filter.matches(event))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        // Unbounded, but `pending` bounds it: see `deliver`.
        let (sender, live) = async_std::channel::unbounded();
        let cut = Arc::new(Mutex::new(None));
        let pending = Arc::new(Backlog::default());
        let from = from_revision.unwrap_or(0);
        let watcher = Registered {
            filter,
            from,
            sender,
            pending: pending.clone(),
            last_sent: 0,
            cut: cut.clone(),
        };
        inner.watchers.push(watcher);
        Ok(Subscription { replay, live, cut, pending, revision: inner.applied })
    }

    /// Watchers registered and still there (one whose client went away
    /// leaves once its stream notices, at its next event or progress line).
    pub fn watchers(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|watcher| !watcher.sender.is_closed());
        inner.watchers.len()
    }
}

/// Hands `event` to `watcher` if it wants it; false when the watcher is
/// gone or cut: it has [`WATCH_BUFFER_EVENTS`] or [`WATCH_BUFFER_BYTES`]
/// waiting when a new revision begins (the rest of a revision always
/// follows its first event).
fn deliver(watcher: &mut Registered, event: &Arc<Event>) -> bool {
    if event.revision < watcher.from || !watcher.filter.matches(event) {
        return !watcher.sender.is_closed();
    }
    let new_revision = event.revision != watcher.last_sent;
    if new_revision && watcher.pending.full() {
        *watcher.cut.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Cut::Overflow);
        return false;
    }
    if watcher.sender.try_send(event.clone()).is_err() {
        return false;
    }
    watcher.pending.add(event);
    watcher.last_sent = event.revision;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: u64, key: &str) -> Event {
        Event {
            revision,
            kind: "put",
            collection: "c".into(),
            key: key.into(),
            value: "v".into(),
            revisions: Revisions::default(),
            line: std::sync::OnceLock::new(),
        }
    }

    fn filter(prefix: &str) -> Filter {
        Filter { collection: "c".into(), key: None, prefix: prefix.into() }
    }

    #[test]
    fn a_watcher_gets_the_history_then_live_events_once_each_in_order() {
        let history = History::new(100, 1 << 20, 0);
        history.record(vec![put(1, "a"), put(2, "b")], 2);
        let watch = history.subscribe(filter(""), Some(2)).expect("subscribed");
        assert_eq!(watch.replay.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![2]);
        history.record(vec![put(3, "a"), put(4, "x")], 4);
        let live: Vec<u64> =
            std::iter::from_fn(|| watch.live.try_recv().ok()).map(|e| e.revision).collect();
        assert_eq!(live, vec![3, 4]);
        let keyed = Filter { collection: "c".into(), key: Some("a".into()), prefix: String::new() };
        let only_a = history.subscribe(keyed, Some(1)).expect("subscribed");
        assert_eq!(only_a.replay.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn an_old_revision_is_refused_with_the_oldest_kept() {
        let history = History::new(2, 1 << 20, 10);
        assert_eq!(
            history.subscribe(filter(""), Some(10)).unwrap_err(),
            WatchRefused::Compacted { oldest: 11 }
        );
        history.record(vec![put(11, "a"), put(12, "b"), put(13, "c")], 13);
        assert_eq!(
            history.subscribe(filter(""), Some(11)).unwrap_err(),
            WatchRefused::Compacted { oldest: 12 }
        );
        assert_eq!(history.subscribe(filter(""), Some(12)).expect("kept").replay.len(), 2);
    }

    #[test]
    fn a_full_buffer_cuts_the_watcher_and_a_reset_cuts_them_all() {
        let history = History::new(10, 1 << 20, 0);
        let slow = history.subscribe(filter(""), None).expect("subscribed");
        // One revision of many events (a range delete) is delivered whole.
        let big: Vec<Event> =
            (0..WATCH_BUFFER_EVENTS + 10).map(|n| put(1, &format!("k{n}"))).collect();
        history.record(big, 1);
        assert_eq!(*slow.cut.lock().expect("lock"), None);
        assert_eq!(slow.live.len(), WATCH_BUFFER_EVENTS + 10);
        // The next revision finds it too far behind: cut between revisions.
        history.record(vec![put(2, "k")], 2);
        assert_eq!(*slow.cut.lock().expect("lock"), Some(Cut::Overflow));
        assert_eq!(slow.live.len(), WATCH_BUFFER_EVENTS + 10, "what was sent is still delivered");
        let other = history.subscribe(filter(""), None).expect("subscribed");
        // Large values: the bytes waiting cut a watcher long before the
        // event count would.
        let mut event = put(3, "large");
        event.value = "v".repeat(1 << 20);
        let per_event = event.bytes();
        let revisions = WATCH_BUFFER_BYTES.div_ceil(per_event);
        for revision in 3..3 + revisions as u64 {
            history.record(vec![Event { revision, ..event.clone() }], revision);
        }
        assert_eq!(*other.cut.lock().expect("lock"), None, "{revisions} revisions waiting");
        history.record(vec![Event { revision: 100, ..event.clone() }], 100);
        assert_eq!(*other.cut.lock().expect("lock"), Some(Cut::Overflow));
        assert_eq!(other.live.len(), revisions);
        // Taking events makes room again.
        let next = history.subscribe(filter(""), None).expect("subscribed");
        for revision in 101..101 + revisions as u64 {
            history.record(vec![Event { revision, ..event.clone() }], revision);
            let taken = next.live.try_recv().expect("sent");
            next.pending.take(&taken);
        }
        assert_eq!(*next.cut.lock().expect("lock"), None, "a reader that keeps up is never cut");
        history.reset(5_000);
        assert_eq!(*next.cut.lock().expect("lock"), Some(Cut::Reset));
        assert_eq!(history.watchers(), 0);
    }
}
