//! The executions this worker is running — one attempt each — with the token that stops
//! each and why it was stopped (the reason decides what the worker records afterwards).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a cancel for a run that has not registered yet is remembered (a NOTIFY can
/// arrive between the claim and the registration).
const EARLY_CANCEL_MEMORY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The owner asked: the run ends `cancelled`.
    Cancelled,
    /// The worker is shutting down: the run goes back to the queue.
    Shutdown,
    /// The claim was taken back (the reaper re-queued it, or this worker cannot reach the
    /// database): stop without writing.
    Lost,
}

struct Entry {
    attempt: i32,
    token: CancellationToken,
    reason: Option<StopReason>,
    /// Its end is being recorded: the database may already show it finished.
    ending: bool,
}

#[derive(Default)]
struct State {
    entries: HashMap<Uuid, Entry>,
    early_cancels: HashMap<Uuid, Instant>,
}

#[derive(Default)]
pub struct Running {
    state: Mutex<State>,
}

impl Running {
    /// Registers a run. An older attempt of the same execution still here is stopped as
    /// lost; a cancel that arrived before registration applies at once.
    pub fn insert(&self, execution_id: Uuid, attempt: i32) -> CancellationToken {
        let token = CancellationToken::new();
        let Ok(mut state) = self.state.lock() else {
            return token;
        };
        let mut entry = Entry {
            attempt,
            token: token.clone(),
            reason: None,
            ending: false,
        };
        if state.early_cancels.remove(&execution_id).is_some() {
            entry.reason = Some(StopReason::Cancelled);
            entry.token.cancel();
        }
        if let Some(old) = state.entries.insert(execution_id, entry)
            && old.attempt != attempt
        {
            old.token.cancel();
        }
        token
    }

    /// Why this attempt was stopped, if it was.
    pub fn reason(&self, execution_id: Uuid, attempt: i32) -> Option<StopReason> {
        self.state.lock().ok().and_then(|state| {
            state
                .entries
                .get(&execution_id)
                .filter(|e| e.attempt == attempt)
                .and_then(|e| e.reason)
                .or_else(|| {
                    // Replaced by a newer attempt: this one was lost.
                    state
                        .entries
                        .get(&execution_id)
                        .filter(|e| e.attempt != attempt)
                        .map(|_| StopReason::Lost)
                })
        })
    }

    /// Forgets this attempt (not a newer one).
    pub fn remove(&self, execution_id: Uuid, attempt: i32) {
        if let Ok(mut state) = self.state.lock()
            && state
                .entries
                .get(&execution_id)
                .is_some_and(|e| e.attempt == attempt)
        {
            state.entries.remove(&execution_id);
        }
    }

    /// Stops the run of an execution, whatever its attempt; the first reason given wins.
    /// A cancel for a run not registered yet is remembered for a while.
    pub fn stop(&self, execution_id: Uuid, reason: StopReason) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match state.entries.get_mut(&execution_id) {
            Some(entry) => {
                entry.reason.get_or_insert(reason);
                entry.token.cancel();
                true
            }
            None => {
                if reason == StopReason::Cancelled {
                    let now = Instant::now();
                    state
                        .early_cancels
                        .retain(|_, at| now.duration_since(*at) < EARLY_CANCEL_MEMORY);
                    state.early_cancels.insert(execution_id, now);
                }
                false
            }
        }
    }

    /// Stops one attempt only (a fenced-off write names the attempt it was for).
    pub fn stop_attempt(&self, execution_id: Uuid, attempt: i32, reason: StopReason) {
        if let Ok(mut state) = self.state.lock()
            && let Some(entry) = state.entries.get_mut(&execution_id)
            && entry.attempt == attempt
        {
            entry.reason.get_or_insert(reason);
            entry.token.cancel();
        }
    }

    /// The run's end is on its way to the database.
    pub fn mark_ending(&self, execution_id: Uuid, attempt: i32) {
        if let Ok(mut state) = self.state.lock()
            && let Some(entry) = state.entries.get_mut(&execution_id)
            && entry.attempt == attempt
        {
            entry.ending = true;
        }
    }

    /// The heartbeat found this attempt no longer held: stops it as lost — unless it has
    /// ended meanwhile (it is gone, or its end is being recorded), which is no loss.
    /// `true` if a run was stopped.
    pub fn lose_if_still_running(&self, execution_id: Uuid, attempt: i32) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match state.entries.get_mut(&execution_id) {
            Some(entry) if entry.attempt == attempt && !entry.ending => {
                entry.reason.get_or_insert(StopReason::Lost);
                entry.token.cancel();
                true
            }
            _ => false,
        }
    }

    pub fn stop_all(&self, reason: StopReason) {
        if let Ok(mut state) = self.state.lock() {
            for entry in state.entries.values_mut() {
                entry.reason.get_or_insert(reason);
                entry.token.cancel();
            }
        }
    }

    /// (execution, attempt) of every run, for the heartbeat.
    pub fn snapshot(&self) -> Vec<(Uuid, i32)> {
        self.state
            .lock()
            .map(|state| {
                state
                    .entries
                    .iter()
                    .map(|(id, e)| (*id, e.attempt))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_before_registration_applies_on_insert() {
        let running = Running::default();
        let id = Uuid::now_v7();
        assert!(!running.stop(id, StopReason::Cancelled));
        let token = running.insert(id, 1);
        assert!(token.is_cancelled());
        assert_eq!(running.reason(id, 1), Some(StopReason::Cancelled));
    }

    #[test]
    fn a_newer_attempt_replaces_and_stops_the_older_one() {
        let running = Running::default();
        let id = Uuid::now_v7();
        let old = running.insert(id, 1);
        let new = running.insert(id, 2);
        assert!(old.is_cancelled());
        assert!(!new.is_cancelled());
        assert_eq!(running.reason(id, 1), Some(StopReason::Lost));
        running.remove(id, 1);
        assert_eq!(
            running.snapshot(),
            vec![(id, 2)],
            "removing the old attempt keeps the new"
        );
        running.stop_attempt(id, 1, StopReason::Lost);
        assert!(!new.is_cancelled());
    }

    #[test]
    fn a_run_that_is_ending_or_gone_is_not_lost() {
        let running = Running::default();
        let id = Uuid::now_v7();
        let token = running.insert(id, 1);
        running.mark_ending(id, 1);
        assert!(!running.lose_if_still_running(id, 1));
        assert!(!token.is_cancelled());
        running.remove(id, 1);
        assert!(!running.lose_if_still_running(id, 1));
        let token = running.insert(id, 2);
        assert!(running.lose_if_still_running(id, 2));
        assert!(token.is_cancelled());
        assert_eq!(running.reason(id, 2), Some(StopReason::Lost));
    }
}
