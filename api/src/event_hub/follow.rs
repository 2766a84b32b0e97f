//! Following one execution: stored events after the client's position, then live ones
//! from the hub, with no gap and no duplicate (DESIGN §4); and the JSON envelope every
//! event is sent in.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crewgraph_core::events::{self, StoredEvent};
use crewgraph_core::executions;
use futures::Stream;
use poem_openapi::Object;
use poem_openapi::types::Example;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{EventHub, HubMessage};

/// A live stream re-reads the database when it heard nothing for this long.
const IDLE_RECHECK: Duration = Duration::from_secs(15);
/// Rows per database read while a stream catches up.
const CATCH_UP_ROWS: u32 = 500;

/// One event: what the SSE stream sends as `data:` (with `id: <seq>` and `event: <type>`).
#[derive(Object, Clone)]
#[oai(rename = "ExecutionEvent", example)]
pub struct EventBody {
    pub execution_id: Uuid,
    /// Gap-free per execution, from 1.
    pub seq: i64,
    /// `execution.queued`, `execution.started`, `task.started`, ... (docs/executions.md).
    #[oai(rename = "type")]
    pub event_type: String,
    pub ts: DateTime<Utc>,
    pub data: Value,
    /// This event's JSON, when it was rendered once for many clients.
    #[oai(skip)]
    pub rendered: Option<Arc<str>>,
}

impl From<&StoredEvent> for EventBody {
    fn from(e: &StoredEvent) -> Self {
        EventBody {
            execution_id: e.execution_id,
            seq: e.seq,
            event_type: e.event_type.clone(),
            ts: e.created_at,
            data: e.data.clone(),
            rendered: None,
        }
    }
}

/// The JSON envelope of an event, as the log endpoint and the stream send it.
pub fn render_event(event: &StoredEvent) -> Arc<str> {
    use poem_openapi::types::ToJSON as _;
    Arc::from(EventBody::from(event).to_json_string())
}

impl Example for EventBody {
    fn example() -> Self {
        EventBody {
            execution_id: Uuid::from_u128(0x0193_5f80_0000_7b3c_9d2e_4f60_1a2b_3c4d),
            seq: 3,
            event_type: "task.started".into(),
            ts: DateTime::from_timestamp(1_795_600_800, 0).unwrap_or_default(),
            data: json!({"task_id": "greet", "name": "greet", "description": "Greet Ada using the hello_world tool.",
                         "agent_role": "Friendly Greeter", "context": ""}),
            rendered: None,
        }
    }
}

/// Stored events after `after`, then live ones, with no gap and no duplicate, until the
/// terminal event.
pub fn follow(
    hub: Arc<EventHub>,
    db: DatabaseConnection,
    execution_id: Uuid,
    after: i64,
) -> impl Stream<Item = EventBody> + Send + 'static {
    async_stream::stream! {
        // Subscribe before reading the database, so nothing committed in between is lost.
        let mut subscription = hub.subscribe(execution_id);
        let mut last = after;
        'catch_up: loop {
            loop {
                match events::read_after(&db, execution_id, last, CATCH_UP_ROWS).await {
                    Ok(rows) if rows.is_empty() => {
                        // Nothing new: the stream ends if nothing more can come (the client
                        // resumed after the terminal event, or the execution is gone).
                        match executions::stream_position(&db, execution_id).await {
                            Ok(None) => return,
                            Ok(Some((status, last_seq))) if status.is_terminal() && last >= last_seq => return,
                            _ => break,
                        }
                    }
                    Ok(rows) => {
                        let complete = rows.len() < CATCH_UP_ROWS as usize;
                        for row in rows {
                            last = row.seq;
                            let terminal = row.is_terminal();
                            yield EventBody::from(&row);
                            if terminal {
                                return;
                            }
                        }
                        if complete {
                            break;
                        }
                    }
                    Err(error) => {
                        // The database is away (restarting?): keep the client, try again.
                        tracing::warn!(%error, "event stream cannot read events; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            loop {
                let message = tokio::select! {
                    message = subscription.receiver.recv() => Some(message),
                    () = tokio::time::sleep(IDLE_RECHECK) => None,
                };
                match message {
                    Some(Ok(HubMessage::Event(event))) => {
                        if event.event.seq <= last {
                            continue;
                        }
                        if event.event.seq != last + 1 {
                            continue 'catch_up;
                        }
                        last = event.event.seq;
                        let terminal = event.event.is_terminal();
                        // Rendered once for all clients: no per-client copy of `data`.
                        yield EventBody {
                            execution_id: event.event.execution_id,
                            seq: event.event.seq,
                            event_type: event.event.event_type.clone(),
                            ts: event.event.created_at,
                            data: Value::Null,
                            rendered: Some(event.json.clone()),
                        };
                        if terminal {
                            return;
                        }
                    }
                    Some(Ok(HubMessage::Resync))
                    | Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_)))
                    | None => continue 'catch_up,
                    Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                }
            }
        }
    }
}
