//! An execution's life, written once. Every status change goes through a transition of
//! this table, and every end — whoever records it (the worker's writer, the reaper, a
//! cancel before the start) — goes through [`finish`] with an [`Outcome`], from which the
//! stored result or error, the thread's message and the terminal event are all derived.
//!
//! | from      | to        | by |
//! |-----------|-----------|----|
//! | `queued`  | `running` | a worker's claim ([`claim`]) |
//! | `queued`  | `cancelled` | a cancel before the start ([`finish`]) |
//! | `running` | `succeeded` / `failed` / `cancelled` | the run's end ([`finish`]), the reaper |
//! | `running` | `queued`  | a hand-back on shutdown ([`hand_back`]), the reaper's re-queue ([`reap`]) |
//!
//! Every write of a worker names the attempt it claimed, so a worker whose claim was taken
//! back cannot overwrite its successor's work.

use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable};
use serde_json::{Value, json};

use crate::crew::events::RuntimeEvent;
use crate::crew::output::CrewOutput;
use crate::crew::runtime::RunError;
use crate::error::{CoreError, CoreResult};
use crate::events;
use crate::threads::MessageRole;

mod claim;
mod finish;
mod reaper;

pub use claim::{Pulse, Started, claim, heartbeat};
pub use finish::{Finish, finish, finish_many, hand_back, lock_in_id_order};
pub use reaper::{Reaped, reap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// The legal status changes (the table above).
pub const TRANSITIONS: &[(Status, Status)] = &[
    (Status::Queued, Status::Running),
    (Status::Queued, Status::Cancelled),
    (Status::Running, Status::Succeeded),
    (Status::Running, Status::Failed),
    (Status::Running, Status::Cancelled),
    (Status::Running, Status::Queued),
];

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn can_become(self, next: Status) -> bool {
        TRANSITIONS.contains(&(self, next))
    }

    /// Terminal: no transition leads out of it.
    pub fn is_terminal(self) -> bool {
        !TRANSITIONS.iter().any(|(from, _)| *from == self)
    }

    /// The type of the event that records reaching this (terminal) status.
    pub fn terminal_event_type(self) -> Option<&'static str> {
        match self {
            Status::Succeeded => Some("execution.succeeded"),
            Status::Failed => Some("execution.failed"),
            Status::Cancelled => Some("execution.cancelled"),
            Status::Queued | Status::Running => None,
        }
    }
}

/// Whether an event of this type ends an execution (and its stream).
pub fn is_terminal_event(event_type: &str) -> bool {
    Status::ALL
        .into_iter()
        .any(|s| s.terminal_event_type() == Some(event_type))
}

/// A status column: an unknown value is an error, never a guess.
impl TryGetable for Status {
    fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        let text = String::try_get_by(res, index)?;
        Status::parse(&text).ok_or_else(|| {
            TryGetError::DbErr(DbErr::Type(format!("unknown execution status {text:?}")))
        })
    }
}

impl From<Status> for sea_orm::Value {
    fn from(status: Status) -> Self {
        sea_orm::Value::String(Some(Box::new(status.as_str().to_string())))
    }
}

/// Codes of the ends the lifecycle itself decides (the runtime's own are `RunError::code`).
pub mod end_code {
    pub const CANCELLED: &str = "cancelled";
    pub const EXECUTION_TIMEOUT: &str = "execution_timeout";
    pub const WORKER_LOST: &str = "worker_lost";
    pub const UNREADABLE_EXECUTION: &str = "unreadable_execution";
    pub const RESULT_NOT_STORED: &str = "result_not_stored";
}

/// Why a cancelled run stopped.
pub mod cancel_reason {
    pub const ON_REQUEST: &str = "cancelled on request";
    pub const BEFORE_START: &str = "cancelled before it started";
}

/// How a run ended. Everything recorded about the end is derived from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Box<CrewOutput>),
    Failed { code: String, message: String },
    Cancelled { reason: String },
}

impl Outcome {
    pub fn failed(code: &str, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn cancelled(reason: &str) -> Outcome {
        Outcome::Cancelled {
            reason: reason.into(),
        }
    }

    /// The end of a run the runtime finished (a cancelled run stopped on request).
    pub fn of_run(result: &Result<CrewOutput, RunError>) -> Outcome {
        match result {
            Ok(output) => Outcome::Succeeded(Box::new(output.clone())),
            Err(RunError::Cancelled) => Outcome::cancelled(cancel_reason::ON_REQUEST),
            Err(error) => Outcome::failed(error.code(), error.to_string()),
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Outcome::Succeeded(_) => Status::Succeeded,
            Outcome::Failed { .. } => Status::Failed,
            Outcome::Cancelled { .. } => Status::Cancelled,
        }
    }

    /// The event that ends the execution's log and stream.
    pub fn terminal_event(&self) -> RuntimeEvent {
        match self {
            Outcome::Succeeded(output) => RuntimeEvent::ExecutionSucceeded {
                output: output.as_ref().clone(),
            },
            Outcome::Failed { code, message } => RuntimeEvent::ExecutionFailed {
                code: code.clone(),
                error: message.clone(),
            },
            Outcome::Cancelled { reason } => RuntimeEvent::ExecutionCancelled {
                reason: reason.clone(),
            },
        }
    }

    /// The stored `result` (succeeded runs).
    pub fn result_json(&self) -> CoreResult<Option<Value>> {
        match self {
            Outcome::Succeeded(output) => Ok(Some(events::without_nul(
                serde_json::to_value(output.as_ref()).map_err(|e| CoreError::Internal(e.into()))?,
            ))),
            _ => Ok(None),
        }
    }

    /// The stored `error`: `{code, message}`.
    pub fn error_json(&self) -> Option<Value> {
        match self {
            Outcome::Succeeded(_) => None,
            Outcome::Failed { code, message } => Some(events::without_nul(
                json!({"code": code, "message": message}),
            )),
            Outcome::Cancelled { reason } => Some(events::without_nul(
                json!({"code": end_code::CANCELLED, "message": reason}),
            )),
        }
    }

    /// What a chat run leaves in its thread.
    pub fn thread_message(&self) -> (MessageRole, String) {
        match self {
            Outcome::Succeeded(output) => (MessageRole::Assistant, output.raw.clone()),
            Outcome::Failed { message, .. } => {
                (MessageRole::System, format!("The run failed: {message}"))
            }
            Outcome::Cancelled { .. } => (MessageRole::System, "The run was cancelled.".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_are_those_without_a_way_out_and_each_has_its_event() {
        let terminal: Vec<Status> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [Status::Succeeded, Status::Failed, Status::Cancelled]
        );
        for status in Status::ALL {
            assert_eq!(status.terminal_event_type().is_some(), status.is_terminal());
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("exploded"), None);
        assert!(!Status::Succeeded.can_become(Status::Running));
        assert!(Status::Queued.can_become(Status::Cancelled));
    }

    #[test]
    fn every_outcome_derives_a_matching_terminal_event() {
        let outcomes = [
            Outcome::failed(end_code::WORKER_LOST, "lost"),
            Outcome::cancelled(cancel_reason::BEFORE_START),
        ];
        for outcome in outcomes {
            let event = outcome.terminal_event();
            assert!(event.is_terminal());
            assert!(is_terminal_event(event.type_name()));
            assert_eq!(
                outcome.status().terminal_event_type(),
                Some(event.type_name())
            );
            assert!(outcome.error_json().is_some());
        }
        assert_eq!(
            Outcome::cancelled("x").thread_message().1,
            "The run was cancelled."
        );
        assert_eq!(
            Outcome::failed("c", "it broke").error_json(),
            Some(json!({"code": "c", "message": "it broke"}))
        );
    }
}
