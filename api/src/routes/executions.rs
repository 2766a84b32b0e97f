//! Executions: kickoff (`POST /api/v1/graphs/{id}/executions`), list, get, the stored
//! event log, the live event stream (SSE), stream tokens and cancel.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crewgraph_core::executions::{self, Execution, ListFilter, Status};
use crewgraph_core::fields;
use crewgraph_core::mlflow;
use crewgraph_core::pagination::{List, PageRequest};
use futures::Stream;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ApiTags;
use super::execution_metrics::{RunMetricsBody, UsageBody, usage_and_metrics};
use super::graph_bodies::example_time;
use super::mlflow_export::MlflowExportBody;
use crate::auth::{Auth, StreamAuth};
use crate::error::ApiError;
use crate::event_hub::{EventBody, follow};
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct ExecutionsApi;

/// SSE keep-alive comment interval (DESIGN §4).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum StatusBody {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<Status> for StatusBody {
    fn from(s: Status) -> Self {
        match s {
            Status::Queued => StatusBody::Queued,
            Status::Running => StatusBody::Running,
            Status::Succeeded => StatusBody::Succeeded,
            Status::Failed => StatusBody::Failed,
            Status::Cancelled => StatusBody::Cancelled,
        }
    }
}

impl From<StatusBody> for Status {
    fn from(s: StatusBody) -> Self {
        match s {
            StatusBody::Queued => Status::Queued,
            StatusBody::Running => Status::Running,
            StatusBody::Succeeded => Status::Succeeded,
            StatusBody::Failed => Status::Failed,
            StatusBody::Cancelled => Status::Cancelled,
        }
    }
}

/// A run of a graph.
#[derive(Object)]
#[oai(rename = "Execution", example)]
pub struct ExecutionBody {
    pub id: Uuid,
    pub graph_id: Option<Uuid>,
    /// The graph version that ran (a snapshot is kept with the execution).
    pub graph_version: Option<i32>,
    /// Set for chat runs.
    pub thread_id: Option<Uuid>,
    pub status: StatusBody,
    pub inputs: Value,
    /// When succeeded: `raw` (the final answer), `tasks_output` (every task's output) and
    /// `token_usage`.
    pub result: Option<Value>,
    /// When failed or cancelled: `{code, message}`.
    pub error: Option<Value>,
    /// Token usage totals: for every ended run (cancelled and failed ones too), what its
    /// LLM calls used; null while it runs.
    #[oai(nullable)]
    pub usage: Option<UsageBody>,
    /// The run's figures, recorded with its end (null until then); per task and per model
    /// at `GET /api/v1/executions/{id}/metrics`.
    #[oai(nullable)]
    pub metrics: Option<RunMetricsBody>,
    /// Claims by workers so far (more than 1 after a lost worker's run was recovered).
    pub attempt: i32,
    /// The seq of the last stored event.
    pub last_event_seq: i64,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The live event stream (SSE).
    pub events_url: String,
    /// Its MLflow run and export state (only on `GET /api/v1/executions/{id}`); null when
    /// MLflow export was off when it ended, or it has not ended.
    pub mlflow: Option<MlflowExportBody>,
}

impl From<Execution> for ExecutionBody {
    fn from(e: Execution) -> Self {
        let status = e.status.into();
        let (usage, metrics) = usage_and_metrics(&e);
        ExecutionBody {
            events_url: format!("/api/v1/executions/{}/events", e.id),
            id: e.id,
            graph_id: e.graph_id,
            graph_version: e.graph_version,
            thread_id: e.thread_id,
            status,
            inputs: e.inputs,
            result: e.result,
            error: e.error,
            usage,
            metrics,
            attempt: e.attempt,
            last_event_seq: e.last_seq,
            cancel_requested: e.cancel_requested_at.is_some(),
            created_at: e.created_at,
            started_at: e.started_at,
            finished_at: e.finished_at,
            mlflow: None,
        }
    }
}

impl Example for ExecutionBody {
    fn example() -> Self {
        let id = Uuid::from_u128(0x0193_5f80_0000_7b3c_9d2e_4f60_1a2b_3c4d);
        ExecutionBody {
            id,
            graph_id: Some(Uuid::from_u128(0x0193_5f7e_9d2e_7b3c_9d2e_4f60_1a2b_3c4d)),
            graph_version: Some(3),
            thread_id: None,
            status: StatusBody::Succeeded,
            inputs: json!({"name": "Ada"}),
            result: Some(json!({
                "raw": "Hello, Ada! Welcome!",
                "tasks_output": [{"task_id": "greet", "description": "Greet Ada using the hello_world tool.",
                                  "name": "greet", "expected_output": "A warm greeting for Ada.",
                                  "summary": "Greet Ada using the hello_world tool....", "raw": "Hello, Ada! Welcome!",
                                  "agent": "Friendly Greeter"}],
                "token_usage": {"total_tokens": 412, "prompt_tokens": 380, "cached_prompt_tokens": 0,
                                "completion_tokens": 32, "successful_requests": 2}
            })),
            error: None,
            usage: Some(UsageBody {
                total_tokens: 412,
                prompt_tokens: 380,
                cached_prompt_tokens: 0,
                completion_tokens: 32,
                successful_requests: 2,
            }),
            metrics: Some(RunMetricsBody::example()),
            attempt: 1,
            last_event_seq: 14,
            cancel_requested: false,
            created_at: example_time(),
            started_at: Some(example_time()),
            finished_at: Some(example_time()),
            events_url: format!("/api/v1/executions/{id}/events"),
            mlflow: Some(MlflowExportBody::example()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct KickoffRequest {
    /// Values for the graph's `{placeholders}` (see `plan.inputs` of its validation).
    #[oai(default)]
    pub inputs: BTreeMap<String, Value>,
    /// Webhooks of yours to tell about this run, beyond the graph's own (at most 10;
    /// any you do not have is 422 `unknown_webhooks` and nothing is started).
    #[oai(default)]
    pub webhook_ids: Vec<Uuid>,
}

impl Example for KickoffRequest {
    fn example() -> Self {
        KickoffRequest {
            inputs: [("name".to_string(), json!("Ada"))].into(),
            webhook_ids: Vec::new(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ExecutionPage {
    /// Newest first.
    pub items: Vec<ExecutionBody>,
    pub next_cursor: Option<String>,
}

impl Example for ExecutionPage {
    fn example() -> Self {
        ExecutionPage {
            items: vec![ExecutionBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct EventLogPage {
    pub items: Vec<EventBody>,
    /// Pass as `after` for the next page; absent when there are no more events yet.
    pub next_after: Option<i64>,
}

impl Example for EventLogPage {
    fn example() -> Self {
        EventLogPage {
            items: vec![EventBody::example()],
            next_after: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct StreamTokenBody {
    /// Pass as `?token=` to the events URL (valid for this execution only).
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The events URL with the token, ready for `new EventSource(...)`.
    pub events_url: String,
}

impl Example for StreamTokenBody {
    fn example() -> Self {
        let id = ExecutionBody::example().id;
        StreamTokenBody {
            token: "eyJhbGciOiJIUzI1NiJ9...".into(),
            expires_at: example_time(),
            events_url: format!("/api/v1/executions/{id}/events?token=eyJhbGciOiJIUzI1NiJ9..."),
        }
    }
}

#[derive(ApiResponse)]
pub enum KickoffResponse {
    /// Queued; follow `events_url`.
    #[oai(status = 202)]
    Accepted(Json<ExecutionBody>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum ExecutionResponse {
    #[oai(status = 200)]
    Ok(Json<ExecutionBody>),
}

#[derive(ApiResponse)]
pub enum ExecutionPageResponse {
    #[oai(status = 200)]
    Ok(Json<ExecutionPage>),
}

#[derive(ApiResponse)]
pub enum EventLogResponse {
    #[oai(status = 200)]
    Ok(Json<EventLogPage>),
}

#[derive(ApiResponse)]
pub enum StreamTokenResponse {
    #[oai(status = 201)]
    Created(Json<StreamTokenBody>),
}

type EventItems = std::pin::Pin<Box<dyn Stream<Item = EventBody> + Send>>;

#[derive(ApiResponse)]
pub enum EventStreamResponse {
    /// `text/event-stream`: each event has `id: <seq>`, `event: <type>` and a JSON `data:`
    /// envelope; stored events after `Last-Event-ID` (or `?after=`) first, then live; a
    /// keep-alive comment every 15 s; closed after the terminal event.
    #[oai(status = 200)]
    Ok(
        EventStream<EventItems>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "X-Accel-Buffering")] String,
    ),
    /// The execution has ended and the client has every event (it resumed after the
    /// terminal one): nothing more will come. A browser's EventSource stops reconnecting
    /// on 204.
    #[oai(status = 204)]
    Ended,
}

fn to_sse_event(item: EventBody) -> poem::web::sse::Event {
    use poem_openapi::types::ToJSON as _;
    let id = item.seq.to_string();
    let event_type = item.event_type.clone();
    // The same JSON as the log endpoint's items; live events come rendered once.
    let data = match &item.rendered {
        Some(json) => json.to_string(),
        None => item.to_json_string(),
    };
    poem::web::sse::Event::message(data)
        .id(id)
        .event_type(event_type)
}

#[OpenApi(tag = "ApiTags::Executions")]
impl ExecutionsApi {
    /// Run a graph. Validates it, snapshots it, queues the run and wakes a worker, in one
    /// transaction; answers 202 with the execution and its `events_url`. An invalid graph
    /// is 422 `graph_invalid`, missing inputs 422 `missing_inputs` (with `details.missing`),
    /// too many queued or running executions 429 `too_many_active_executions`. The graph's
    /// webhooks and those named in `webhook_ids` hear of this run (fixed at kickoff).
    #[oai(
        path = "/api/v1/graphs/:id/executions",
        method = "post",
        operation_id = "kickoff"
    )]
    async fn kickoff(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<KickoffRequest>,
    ) -> Result<KickoffResponse, ApiError> {
        let body = body.0;
        let execution = executions::kickoff(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            state.config.executions.max_active_per_user,
            id.0,
            body.inputs.into_iter().collect(),
            &body.webhook_ids,
        )
        .await?;
        let location = format!("/api/v1/executions/{}", execution.id);
        Ok(KickoffResponse::Accepted(Json(execution.into()), location))
    }

    /// Your executions, newest first.
    #[oai(
        path = "/api/v1/executions",
        method = "get",
        operation_id = "list_executions"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        graph_id: Query<Option<Uuid>>,
        status: Query<Option<StatusBody>>,
        /// Created at or after this time (RFC 3339).
        created_after: Query<Option<DateTime<Utc>>>,
        /// Created before this time (RFC 3339).
        created_before: Query<Option<DateTime<Utc>>>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ExecutionPageResponse, ApiError> {
        let page = PageRequest::parse(List::Executions, limit.0, cursor.0.as_deref())?;
        let filter = ListFilter {
            graph_id: graph_id.0,
            status: status.0.map(Into::into),
            created_after: fields::storable_time(created_after.0, "created_after")?,
            created_before: fields::storable_time(created_before.0, "created_before")?,
        };
        let result = executions::list(&state.db, &auth.0, filter, page).await?;
        Ok(ExecutionPageResponse::Ok(Json(ExecutionPage {
            items: result.items.into_iter().map(Into::into).collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// One execution: status, inputs, result (every task's output), usage, error, timings,
    /// and its MLflow run (`mlflow`) when exports are on.
    #[oai(
        path = "/api/v1/executions/:id",
        method = "get",
        operation_id = "get_execution"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<ExecutionResponse, ApiError> {
        let execution = executions::get(&state.db, &auth.0, id.0).await?;
        let export = mlflow::export_state(&state.db, &auth.0, id.0).await?;
        let mut body = ExecutionBody::from(execution);
        body.mlflow = export.map(Into::into);
        Ok(ExecutionResponse::Ok(Json(body)))
    }

    /// The stored event log as JSON, for clients that do not stream: events with
    /// `seq > after`, oldest first.
    #[oai(
        path = "/api/v1/executions/:id/log",
        method = "get",
        operation_id = "get_execution_log"
    )]
    async fn log(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        /// Events after this seq (default 0: from the start).
        after: Query<Option<i64>>,
        /// Page size, 1 to 1000 (default 500).
        limit: Query<Option<u32>>,
    ) -> Result<EventLogResponse, ApiError> {
        let limit = limit.0.unwrap_or(500);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::from(crewgraph_core::error::CoreError::invalid(
                "invalid_limit",
                "limit",
                "limit must be from 1 to 1000",
            )));
        }
        let rows =
            executions::events_after(&state.db, &auth.0, id.0, after.0.unwrap_or(0).max(0), limit)
                .await?;
        let next_after = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        Ok(EventLogResponse::Ok(Json(EventLogPage {
            items: rows.iter().map(EventBody::from).collect(),
            next_after,
        })))
    }

    /// The execution's events as server-sent events: stored ones after `Last-Event-ID`
    /// (or `?after=`), then live ones as they happen, with no gap and no duplicate; a
    /// keep-alive comment every 15 s; the stream ends after the terminal event, and a
    /// client resuming after it gets 204 (EventSource then stops). Browsers'
    /// EventSource cannot send headers: get a stream token (`POST .../stream-token`) and
    /// pass it as `?token=`.
    #[oai(
        path = "/api/v1/executions/:id/events",
        method = "get",
        operation_id = "stream_execution_events"
    )]
    async fn events(
        &self,
        state: Data<&AppState>,
        auth: StreamAuth,
        id: Path<Uuid>,
        #[oai(name = "Last-Event-ID")] last_event_id: Header<Option<String>>,
        /// Replay events after this seq (`Last-Event-ID` wins when both are sent).
        after: Query<Option<i64>>,
        /// A stream token for this execution (instead of an `Authorization` header).
        #[oai(name = "token")]
        _token: Query<Option<String>>,
    ) -> Result<EventStreamResponse, ApiError> {
        let execution = executions::get_owned(&state.db, auth.0, id.0).await?;
        let from_header = match last_event_id.0.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => Some(value.parse::<i64>().map_err(|_| ApiError::BadRequest {
                code: "invalid_last_event_id",
                message: "Last-Event-ID must be the seq of an event".into(),
            })?),
        };
        let after = from_header.or(after.0).unwrap_or(0).max(0);
        if execution.status.is_terminal() && after >= execution.last_seq {
            return Ok(EventStreamResponse::Ended);
        }
        let items: EventItems =
            Box::pin(follow(state.events.clone(), state.db.clone(), id.0, after));
        Ok(EventStreamResponse::Ok(
            EventStream::new(items)
                .keep_alive(KEEP_ALIVE)
                .to_event(to_sse_event),
            "no-cache".into(),
            "no".into(),
        ))
    }

    /// A short-lived token (5 minutes) that lets a browser's EventSource open this
    /// execution's event stream (`?token=`), and nothing else.
    #[oai(
        path = "/api/v1/executions/:id/stream-token",
        method = "post",
        operation_id = "create_stream_token"
    )]
    async fn stream_token(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<StreamTokenResponse, ApiError> {
        let execution = executions::get(&state.db, &auth.0, id.0).await?;
        let (token, expires_at) = state.stream_tokens.issue(auth.0.user_id, execution.id)?;
        Ok(StreamTokenResponse::Created(Json(StreamTokenBody {
            events_url: format!("/api/v1/executions/{}/events?token={token}", execution.id),
            token,
            expires_at,
        })))
    }

    /// Cancel an execution: a queued one is cancelled at once; a running one stops within
    /// a second and ends with `execution.cancelled` (poll or stream to see it). A finished
    /// execution is 409 `execution_finished`.
    #[oai(
        path = "/api/v1/executions/:id/cancel",
        method = "post",
        operation_id = "cancel_execution"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<ExecutionResponse, ApiError> {
        let execution = executions::cancel(&state.db, &auth.0, id.0).await?;
        Ok(ExecutionResponse::Ok(Json(execution.into())))
    }
}
