//! The executions this worker is running, with the token that stops each and why it was
//! stopped (the reason decides what the worker records afterwards).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The owner asked: the run ends `cancelled`.
    Cancelled,
    /// The worker is shutting down: the run goes back to the queue.
    Shutdown,
    /// The claim was taken back (the reaper re-queued it): stop without writing.
    Lost,
}

struct Entry {
    attempt: i32,
    token: CancellationToken,
    reason: Option<StopReason>,
}

#[derive(Default)]
pub struct Running {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl Running {
    pub fn insert(&self, execution_id: Uuid, attempt: i32) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                execution_id,
                Entry {
                    attempt,
                    token: token.clone(),
                    reason: None,
                },
            );
        }
        token
    }

    /// Removes the entry and says why the run was stopped, if it was.
    pub fn remove(&self, execution_id: Uuid) -> Option<StopReason> {
        self.entries
            .lock()
            .ok()
            .and_then(|mut entries| entries.remove(&execution_id))
            .and_then(|entry| entry.reason)
    }

    /// Stops a run; the first reason given wins. `false` if it is not running here.
    pub fn stop(&self, execution_id: Uuid, reason: StopReason) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        match entries.get_mut(&execution_id) {
            Some(entry) => {
                entry.reason.get_or_insert(reason);
                entry.token.cancel();
                true
            }
            None => false,
        }
    }

    pub fn stop_all(&self, reason: StopReason) {
        if let Ok(mut entries) = self.entries.lock() {
            for entry in entries.values_mut() {
                entry.reason.get_or_insert(reason);
                entry.token.cancel();
            }
        }
    }

    /// (execution, attempt) of every run, for the heartbeat.
    pub fn snapshot(&self) -> Vec<(Uuid, i32)> {
        self.entries
            .lock()
            .map(|entries| entries.iter().map(|(id, e)| (*id, e.attempt)).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}
