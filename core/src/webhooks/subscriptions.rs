//! Which webhooks hear of an execution (fixed at kickoff), and the deliveries its events
//! create — in the transaction that appends them.

use std::collections::HashMap;
use std::time::Duration;

use fang::AsyncRunnable;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use super::delivery::WebhookDelivery;
use super::is_subscribable;
use crate::auth::Principal;
use crate::error::{CoreError, CoreResult};
use crate::events::{Appended, EventBatch};
use crate::jobs;

/// Webhooks one kickoff may name beyond its graph's.
pub const MAX_KICKOFF_WEBHOOKS: usize = 10;

fn id_list(ids: impl IntoIterator<Item = Uuid>) -> String {
    ids.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Records which webhooks report on a new execution: the graph's enabled webhooks and
/// the enabled ones among `named` (the kickoff's `webhook_ids`). Every named id must be a
/// webhook of the caller's, else nothing is stored (the caller's transaction fails).
pub async fn attach_to_execution<C: ConnectionTrait>(
    txn: &C,
    principal: &Principal,
    execution_id: Uuid,
    graph_id: Uuid,
    named: &[Uuid],
) -> CoreResult<()> {
    if named.len() > MAX_KICKOFF_WEBHOOKS {
        return Err(CoreError::invalid(
            "too_many_webhooks",
            "webhook_ids",
            format!("a kickoff may name at most {MAX_KICKOFF_WEBHOOKS} webhooks"),
        ));
    }
    let named_list = id_list(named.iter().copied());
    if !named.is_empty() {
        let known: Vec<Uuid> = txn
            .query_all(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "SELECT id FROM webhooks WHERE user_id = $1 \
                   AND id = ANY(string_to_array($2, ',')::uuid[])",
                [principal.user_id.into(), named_list.clone().into()],
            ))
            .await?
            .into_iter()
            .map(|row| row.try_get::<Uuid>("", "id"))
            .collect::<Result<_, _>>()?;
        let unknown: Vec<Uuid> = named
            .iter()
            .filter(|id| !known.contains(id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            return Err(CoreError::Problems {
                code: "unknown_webhooks",
                message: "webhook_ids names webhooks you do not have".into(),
                details: json!({ "field": "webhook_ids", "unknown": unknown }),
            });
        }
    }
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO execution_webhooks (execution_id, webhook_id, events) \
         SELECT $1, w.id, w.events FROM webhooks w \
         WHERE w.user_id = $2 AND w.enabled \
           AND (w.graph_id = $3 OR w.id = ANY(string_to_array($4, ',')::uuid[])) \
         ON CONFLICT DO NOTHING",
        [
            execution_id.into(),
            principal.user_id.into(),
            graph_id.into(),
            named_list.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One appended event a webhook may want.
struct Reported<'a> {
    execution_id: Uuid,
    event_type: &'a str,
    seq: i64,
}

/// The subscribable events among those just appended, with their seqs.
fn reported<'a>(batches: &'a [EventBatch], appended: &[Appended]) -> Vec<Reported<'a>> {
    let by_id: HashMap<Uuid, &EventBatch> = batches.iter().map(|b| (b.execution_id, b)).collect();
    let mut reported = Vec::new();
    for written in appended {
        let Some(batch) = by_id.get(&written.execution_id) else {
            continue;
        };
        let first_seq = written.last_seq - batch.events.len() as i64 + 1;
        for (offset, event) in batch.events.iter().enumerate() {
            if is_subscribable(event.type_name()) {
                reported.push(Reported {
                    execution_id: written.execution_id,
                    event_type: event.type_name(),
                    seq: first_seq + offset as i64,
                });
            }
        }
    }
    reported
}

#[derive(FromQueryResult)]
struct Subscription {
    execution_id: Uuid,
    webhook_id: Uuid,
    user_id: Uuid,
    events: String,
}

/// Creates the deliveries of the events just appended (`events::append` calls this in its
/// transaction) and queues their jobs. A batch without a subscribable event costs nothing;
/// otherwise one indexed probe, and more only for executions that have webhooks.
pub async fn on_events_appended<C: ConnectionTrait>(
    db: &C,
    batches: &[EventBatch],
    appended: &[Appended],
) -> CoreResult<()> {
    let any = batches
        .iter()
        .any(|b| b.events.iter().any(|e| is_subscribable(e.type_name())));
    if !any {
        return Ok(());
    }
    let reported = reported(batches, appended);
    if reported.is_empty() {
        return Ok(());
    }
    let executions = id_list(reported.iter().map(|r| r.execution_id));
    let subscriptions = Subscription::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT s.execution_id, s.webhook_id, w.user_id, array_to_string(s.events, ',') AS events \
         FROM execution_webhooks s JOIN webhooks w ON w.id = s.webhook_id AND w.enabled \
         WHERE s.execution_id = ANY(string_to_array($1, ',')::uuid[])",
        [executions.into()],
    ))
    .all(db)
    .await?;
    if subscriptions.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<Value> = Vec::new();
    for subscription in &subscriptions {
        let wanted: Vec<&str> = subscription.events.split(',').collect();
        for event in reported
            .iter()
            .filter(|r| r.execution_id == subscription.execution_id)
            .filter(|r| wanted.contains(&r.event_type))
        {
            rows.push(json!({
                "id": Uuid::now_v7(),
                "webhook_id": subscription.webhook_id,
                "execution_id": event.execution_id,
                "user_id": subscription.user_id,
                "event_type": event.event_type,
                "event_seq": event.seq,
            }));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let created: Vec<Uuid> = db
        .query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO webhook_deliveries (id, webhook_id, execution_id, user_id, event_type, event_seq) \
             SELECT (x->>'id')::uuid, (x->>'webhook_id')::uuid, (x->>'execution_id')::uuid, \
                    (x->>'user_id')::uuid, x->>'event_type', (x->>'event_seq')::bigint \
             FROM jsonb_array_elements($1::jsonb) AS x \
             ON CONFLICT DO NOTHING RETURNING id",
            [Value::Array(rows).into()],
        ))
        .await?
        .into_iter()
        .map(|row| row.try_get::<Uuid>("", "id"))
        .collect::<Result<_, _>>()?;
    let jobs: Vec<WebhookDelivery> = created.into_iter().map(WebhookDelivery::first).collect();
    let queued: Vec<(&dyn AsyncRunnable, Duration)> = jobs
        .iter()
        .map(|job| (job as &dyn AsyncRunnable, Duration::ZERO))
        .collect();
    jobs::enqueue_many(db, &queued).await
}
