//! The event log of executions (DESIGN §4): rows `execution_events(execution_id, seq,
//! type, data, created_at)` with `seq` gap-free per execution, inserted together with a
//! `pg_notify` on [`EVENTS_CHANNEL`] in the same transaction, so a listener hears of an
//! event only once it is committed.
//!
//! Appends are batched: one statement writes the events of many executions (the worker's
//! writer gathers what its crews emitted meanwhile — group commit), numbering each
//! execution's events under its row lock.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::crew::events::RuntimeEvent;
use crate::error::CoreResult;

/// Notification payload: `<execution_id>:<first seq>:<last seq>` (ids, never bodies: the
/// payload limit is 8000 bytes).
pub const EVENTS_CHANNEL: &str = "crewgraph_events";

#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct StoredEvent {
    pub execution_id: Uuid,
    pub seq: i64,
    pub event_type: String,
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn is_terminal(&self) -> bool {
        crate::executions::lifecycle::is_terminal_event(&self.event_type)
    }
}

/// Events of one execution to append, in order.
#[derive(Debug, Clone)]
pub struct EventBatch {
    pub execution_id: Uuid,
    /// Only append if the execution is still at this attempt (fences off a worker whose
    /// claim was taken back). `None`: unconditional (API and reaper writes).
    pub attempt: Option<i32>,
    pub events: Vec<RuntimeEvent>,
}

#[derive(Serialize)]
struct BatchRow<'a> {
    id: Uuid,
    attempt: Option<i32>,
    events: Vec<EventRow<'a>>,
}

#[derive(Serialize)]
struct EventRow<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: Value,
}

/// An execution whose events were written, with the seq of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub struct Appended {
    pub execution_id: Uuid,
    pub last_seq: i64,
}

/// Appends every batch (at most one per execution) in one statement and notifies
/// listeners. Executions that are gone or fenced off are skipped: they are absent from the
/// result.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    batches: &[EventBatch],
) -> CoreResult<Vec<Appended>> {
    let mut rows: Vec<BatchRow> = batches
        .iter()
        .filter(|b| !b.events.is_empty())
        .map(|b| BatchRow {
            id: b.execution_id,
            attempt: b.attempt,
            events: b
                .events
                .iter()
                .map(|e| EventRow {
                    event_type: e.type_name(),
                    data: without_nul(e.data()),
                })
                .collect(),
        })
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Lock execution rows in one order everywhere, so concurrent batches cannot deadlock.
    rows.sort_by_key(|r| r.id);
    let input = serde_json::to_value(&rows).map_err(anyhow::Error::from)?;
    let appended = Appended::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        r#"
WITH input AS (
    SELECT x.ord, (x.item->>'id')::uuid AS id, (x.item->>'attempt')::integer AS attempt,
           x.item->'events' AS events, jsonb_array_length(x.item->'events') AS n
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(item, ord)
), locked AS (
    -- A worker's write (attempt given) lands only while its claim holds: same attempt,
    -- still running. Rows are locked in id order everywhere: no deadlocks.
    SELECT i.ord FROM executions e JOIN input i ON i.id = e.id
    WHERE i.attempt IS NULL OR (e.attempt = i.attempt AND e.status = 'running')
    ORDER BY e.id FOR UPDATE OF e
), bumped AS (
    UPDATE executions e SET last_seq = e.last_seq + i.n
    FROM input i JOIN locked l ON l.ord = i.ord
    WHERE e.id = i.id
    RETURNING e.id, e.last_seq AS last, i.n, i.events
), inserted AS (
    INSERT INTO execution_events (execution_id, seq, type, data)
    SELECT b.id, b.last - b.n + ev.ord, ev.item->>'type', ev.item->'data'
    FROM bumped b, jsonb_array_elements(b.events) WITH ORDINALITY AS ev(item, ord)
)
SELECT b.id AS execution_id, b.last AS last_seq,
       pg_notify('crewgraph_events', b.id::text || ':' || (b.last - b.n + 1) || ':' || b.last) AS notified
FROM bumped b
"#,
        [input.into()],
    ))
    .all(db)
    .await?;
    // Deliveries of subscribed events, in this transaction (free without such events).
    crate::webhooks::on_events_appended(db, batches, &appended).await?;
    Ok(appended)
}

/// PostgreSQL stores no U+0000 in text or jsonb. Model output and tool results may hold
/// one (a hostile endpoint can send it on purpose); dropping it keeps one odd string from
/// failing a whole batch of events.
pub fn without_nul(mut value: Value) -> Value {
    strip_nul(&mut value);
    value
}

fn strip_nul(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('\0') => text.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (key, item) in entries {
                    map.insert(key.replace('\0', ""), item);
                }
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

/// Stored events of an execution with `seq > after`, in order, at most `limit`.
pub async fn read_after<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
    after: i64,
    limit: u32,
) -> CoreResult<Vec<StoredEvent>> {
    Ok(
        StoredEvent::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT execution_id, seq, type AS event_type, data, created_at FROM execution_events \
         WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            [execution_id.into(), after.into(), i64::from(limit).into()],
        ))
        .all(db)
        .await?,
    )
}

/// A parsed notification of [`EVENTS_CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsNotice {
    pub execution_id: Uuid,
    pub first_seq: i64,
    pub last_seq: i64,
}

impl EventsNotice {
    pub fn parse(payload: &str) -> Option<EventsNotice> {
        let mut parts = payload.split(':');
        let execution_id = Uuid::parse_str(parts.next()?).ok()?;
        let first_seq = parts.next()?.parse().ok()?;
        let last_seq = parts.next()?.parse().ok()?;
        Some(EventsNotice {
            execution_id,
            first_seq,
            last_seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_characters_are_dropped_everywhere() {
        let cleaned = without_nul(json!({"a\u{0}b": ["x\u{0}y", {"k": "\u{0}"}], "n": 1}));
        assert_eq!(cleaned, json!({"ab": ["xy", {"k": ""}], "n": 1}));
    }

    #[test]
    fn notices_parse_and_garbage_does_not() {
        let id = Uuid::now_v7();
        assert_eq!(
            EventsNotice::parse(&format!("{id}:3:7")),
            Some(EventsNotice {
                execution_id: id,
                first_seq: 3,
                last_seq: 7
            })
        );
        assert_eq!(EventsNotice::parse("nonsense"), None);
        assert_eq!(EventsNotice::parse(&format!("{id}:x:7")), None);
    }
}
