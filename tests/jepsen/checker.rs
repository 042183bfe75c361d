//! A linearizability checker for single registers (one per key), after Wing
//! & Gong as improved by Lowe and used by Knossos and Porcupine: a
//! depth-first search for an order of the operations that respects real
//! time (an operation that returned before another was invoked comes first)
//! and the register's sequential behaviour, memoising (set of operations
//! already placed, register value) so that each configuration is explored
//! once. Operations whose outcome is unknown (a timeout) never return: they
//! may take effect at any point after their invocation, or never (placing
//! them last, where nothing observes them, is the same as never).

use std::collections::HashSet;
use std::fmt::Write as _;

/// What a client asked, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set the register.
    Put { value: String },
    /// Read it; `value` is what was returned (None: absent).
    Get { value: Option<String> },
    /// Compare-and-set that succeeded.
    CasOk { expected: Option<String>, value: String },
    /// Compare-and-set that was refused: the register held `current`.
    CasFail { expected: Option<String>, current: Option<String> },
    /// Compare-and-set whose outcome is unknown.
    CasUnknown { expected: Option<String>, value: String },
}

/// One operation on one key: when it was invoked and when it returned
/// (None: unknown outcome), in any monotonic unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Which client.
    pub client: usize,
    /// Invocation time.
    pub call: u64,
    /// Completion time; None if the outcome is unknown.
    pub ret: Option<u64>,
    /// The operation and its result.
    pub op: Op,
}

/// Applies `op` to `state`; None if the result is impossible there.
fn step(state: &Option<String>, op: &Op) -> Option<Option<String>> {
    match op {
        Op::Put { value } => Some(Some(value.clone())),
        Op::Get { value } => (value == state).then(|| state.clone()),
        Op::CasOk { expected, value } => (expected == state).then(|| Some(value.clone())),
        Op::CasFail { expected, current } => {
            (current == state && expected != state).then(|| state.clone())
        }
        Op::CasUnknown { expected, value } => {
            Some(if expected == state { Some(value.clone()) } else { state.clone() })
        }
    }
}

/// The outcome of a check.
#[derive(Debug)]
pub enum Verdict {
    /// A valid order exists.
    Linearizable,
    /// None exists; the text explains where the search got stuck.
    Violation(String),
    /// The search gave up after this many steps (inconclusive).
    TooHard(u64),
}

/// Checks one key's history from the initial state `initial`, exploring at
/// most `steps_max` search steps.
pub fn check(history: &[Event], initial: Option<String>, steps_max: u64) -> Verdict {
    let n = history.len();
    // Events in time order: (time, is_return, op index). Calls sort before
    // returns at the same instant, so equal times count as concurrent.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in history.iter().enumerate() {
        events.push((e.call, false, i));
        events.push((e.ret.unwrap_or(u64::MAX), true, i));
    }
    events.sort();
    let mut done = vec![false; n];
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut state = initial;
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut deepest = (0usize, String::new());
    let mut cursor = 0usize;
    let mut steps = 0u64;
    while stack.len() < n {
        steps += 1;
        if steps > steps_max {
            return Verdict::TooHard(steps);
        }
        // The next event not yet placed.
        while cursor < events.len() && done[events[cursor].2] {
            cursor += 1;
        }
        let Some(&(_, is_return, op)) = events.get(cursor) else { break };
        if !is_return {
            if let Some(next) = step(&state, &history[op].op) {
                done[op] = true;
                let key = (bits(&done), next.clone());
                if seen.insert(key) {
                    stack.push((op, state.clone()));
                    state = next;
                    cursor = 0;
                    continue;
                }
                done[op] = false;
            }
            cursor += 1;
            continue;
        }
        // An operation returned before it could be placed: backtrack.
        if stack.len() >= deepest.0 {
            deepest = (stack.len(), explain(history, &events, &done, &state, op));
        }
        let Some((last, previous)) = stack.pop() else {
            return Verdict::Violation(deepest.1);
        };
        done[last] = false;
        state = previous;
        cursor = events.iter().position(|&(_, r, i)| !r && i == last).map_or(0, |p| p + 1);
    }
    Verdict::Linearizable
}

fn bits(done: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64; done.len().div_ceil(64)];
    for (i, &d) in done.iter().enumerate() {
        if d {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

/// What blocked the search: the operation that had to have happened, the
/// register's value at that point, and the operations still open then.
fn explain(
    history: &[Event],
    events: &[(u64, bool, usize)],
    done: &[bool],
    state: &Option<String>,
    blocked: usize,
) -> String {
    let mut text = String::new();
    let e = &history[blocked];
    let _ = writeln!(
        text,
        "after {} operations in a valid order the register holds {state:?}; then client {} \
         returned from {:?} (invoked at {}, returned at {:?}), which no order can place there.",
        done.iter().filter(|&&d| d).count(),
        e.client,
        e.op,
        e.call,
        e.ret
    );
    let _ = writeln!(text, "operations open at that moment (the non-linearizable window):");
    let at = e.ret.unwrap_or(u64::MAX);
    for &(_, is_return, i) in events {
        let o = &history[i];
        if !is_return && !done[i] && o.call <= at {
            let _ = writeln!(text, "  client {} {:?} [{} .. {:?}]", o.client, o.op, o.call, o.ret);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: usize, call: u64, ret: u64, v: &str) -> Event {
        Event { client, call, ret: Some(ret), op: Op::Put { value: v.into() } }
    }

    fn get(client: usize, call: u64, ret: u64, v: Option<&str>) -> Event {
        Event { client, call, ret: Some(ret), op: Op::Get { value: v.map(Into::into) } }
    }

    fn verdict(history: &[Event]) -> bool {
        matches!(check(history, None, 1_000_000), Verdict::Linearizable)
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        assert!(verdict(&[put(0, 0, 1, "a"), get(1, 2, 3, Some("a"))]));
        assert!(
            !verdict(&[put(0, 0, 1, "a"), get(1, 2, 3, None)]),
            "a stale read after the write returned"
        );
        // Concurrent with the write: either value is fine.
        assert!(verdict(&[put(0, 0, 10, "a"), get(1, 1, 2, None), get(2, 3, 4, Some("a"))]));
        // But not new-then-old (§ reads may not go back).
        assert!(!verdict(&[put(0, 0, 10, "a"), get(1, 1, 2, Some("a")), get(2, 3, 4, None)]));
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_happen() {
        let unknown = Event { client: 0, call: 0, ret: None, op: Op::Put { value: "a".into() } };
        assert!(verdict(&[unknown.clone(), get(1, 5, 6, None)]));
        assert!(verdict(&[unknown.clone(), get(1, 5, 6, Some("a"))]));
        assert!(
            !verdict(&[unknown, get(1, 5, 6, Some("a")), get(1, 7, 8, None)]),
            "once seen it stays"
        );
    }

    #[test]
    fn cas_successes_and_refusals_constrain_the_order() {
        let cas_ok = Event {
            client: 0,
            call: 3,
            ret: Some(4),
            op: Op::CasOk { expected: Some("a".into()), value: "b".into() },
        };
        let cas_fail = Event {
            client: 1,
            call: 5,
            ret: Some(6),
            op: Op::CasFail { expected: Some("a".into()), current: Some("b".into()) },
        };
        assert!(verdict(&[put(2, 0, 1, "a"), cas_ok.clone(), cas_fail.clone()]));
        let wrong = Event {
            op: Op::CasFail { expected: Some("a".into()), current: Some("a".into()) },
            ..cas_fail
        };
        assert!(
            !verdict(&[put(2, 0, 1, "a"), cas_ok, wrong]),
            "a refusal while the expected value was there"
        );
    }

    #[test]
    fn a_violation_is_explained() {
        let Verdict::Violation(text) = check(&[put(0, 0, 1, "a"), get(1, 2, 3, None)], None, 1000)
        else {
            panic!("not detected");
        };
        assert!(text.contains("client 1") && text.contains("Get"), "{text}");
    }
}
