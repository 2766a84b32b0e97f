//! Threads and messages: `/api/v1/workspaces/{workspace_id}/threads` and
//! `/api/v1/threads/{id}[/messages]`.

use chrono::{DateTime, Utc};
use crewgraph_core::executions;
use crewgraph_core::pagination::{List, PageRequest};
use crewgraph_core::threads::{self, Message, MessageRole, Thread, ThreadChanges};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::graph_bodies::example_time;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct ThreadsApi;

fn example_thread_id() -> Uuid {
    Uuid::from_u128(0x0193_5f7f_0000_7b3c_9d2e_4f60_1a2b_3c4d)
}

#[derive(Object)]
#[oai(rename = "Thread", example)]
pub struct ThreadBody {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// The graph a user message runs (chat runs); absent for a plain thread.
    pub graph_id: Option<Uuid>,
    pub title: String,
    pub created_at: DateTime<Utc>,
    /// Changes with every new message.
    pub updated_at: DateTime<Utc>,
}

impl From<Thread> for ThreadBody {
    fn from(t: Thread) -> Self {
        ThreadBody {
            id: t.id,
            workspace_id: t.workspace_id,
            graph_id: t.graph_id,
            title: t.title,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

impl Example for ThreadBody {
    fn example() -> Self {
        ThreadBody {
            id: example_thread_id(),
            workspace_id: Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            graph_id: Some(Uuid::from_u128(0x0193_5f7e_9d2e_7b3c_9d2e_4f60_1a2b_3c4d)),
            title: "Ask the research crew".into(),
            created_at: example_time(),
            updated_at: example_time(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ThreadPage {
    /// Most recently active first.
    pub items: Vec<ThreadBody>,
    pub next_cursor: Option<String>,
}

impl Example for ThreadPage {
    fn example() -> Self {
        ThreadPage {
            items: vec![ThreadBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct CreateThreadRequest {
    #[oai(validator(max_length = 200))]
    pub title: String,
    /// Bind the thread to one of your graphs (chat runs).
    pub graph_id: Option<Uuid>,
}

impl Example for CreateThreadRequest {
    fn example() -> Self {
        CreateThreadRequest {
            title: "Ask the research crew".into(),
            graph_id: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateThreadRequest {
    #[oai(validator(max_length = 200))]
    pub title: Option<String>,
    /// `null` unbinds the thread from its graph; leaving it out keeps it.
    #[oai(nullable)]
    pub graph_id: MaybeUndefined<Uuid>,
}

impl Example for UpdateThreadRequest {
    fn example() -> Self {
        UpdateThreadRequest {
            title: Some("Research questions".into()),
            graph_id: MaybeUndefined::Undefined,
        }
    }
}

#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
pub enum MessageRoleBody {
    User,
    Assistant,
    System,
}

#[derive(Object)]
#[oai(rename = "Message", example)]
pub struct MessageBody {
    pub id: Uuid,
    pub thread_id: Uuid,
    pub role: MessageRoleBody,
    pub content: String,
    /// The execution this message started (user) or came from (assistant).
    pub execution_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<Message> for MessageBody {
    fn from(m: Message) -> Self {
        MessageBody {
            id: m.id,
            thread_id: m.thread_id,
            role: match m.role.as_str() {
                "assistant" => MessageRoleBody::Assistant,
                "system" => MessageRoleBody::System,
                _ => MessageRoleBody::User,
            },
            content: m.content,
            execution_id: m.execution_id,
            created_at: m.created_at,
        }
    }
}

impl Example for MessageBody {
    fn example() -> Self {
        MessageBody {
            id: Uuid::from_u128(0x0193_5f7f_1111_7b3c_9d2e_4f60_1a2b_3c4d),
            thread_id: example_thread_id(),
            role: MessageRoleBody::User,
            content: "What changed in battery chemistry this year?".into(),
            execution_id: None,
            created_at: example_time(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct MessagePage {
    /// Oldest first.
    pub items: Vec<MessageBody>,
    pub next_cursor: Option<String>,
}

impl Example for MessagePage {
    fn example() -> Self {
        MessagePage {
            items: vec![MessageBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct CreateMessageRequest {
    /// Default `user`.
    pub role: Option<MessageRoleBody>,
    #[oai(validator(max_length = 100000))]
    pub content: String,
}

impl Example for CreateMessageRequest {
    fn example() -> Self {
        CreateMessageRequest {
            role: None,
            content: "What changed in battery chemistry this year?".into(),
        }
    }
}

#[derive(ApiResponse)]
pub enum ThreadResponse {
    #[oai(status = 200)]
    Ok(Json<ThreadBody>),
}

#[derive(ApiResponse)]
pub enum ThreadCreated {
    #[oai(status = 201)]
    Created(Json<ThreadBody>),
}

#[derive(ApiResponse)]
pub enum ThreadPageResponse {
    #[oai(status = 200)]
    Ok(Json<ThreadPage>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum MessageCreated {
    #[oai(status = 201)]
    Created(Json<MessageBody>),
}

#[derive(ApiResponse)]
pub enum MessageResponse {
    #[oai(status = 200)]
    Ok(Json<MessageBody>),
}

#[derive(ApiResponse)]
pub enum MessagePageResponse {
    #[oai(status = 200)]
    Ok(Json<MessagePage>),
}

#[OpenApi(tag = "ApiTags::Threads")]
impl ThreadsApi {
    /// Start a thread in one of your workspaces, optionally bound to a graph.
    #[oai(
        path = "/api/v1/workspaces/:workspace_id/threads",
        method = "post",
        operation_id = "create_thread"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        workspace_id: Path<Uuid>,
        body: JsonBody<CreateThreadRequest>,
    ) -> Result<ThreadCreated, ApiError> {
        let body = body.0;
        let thread = threads::create(
            &state.db,
            &auth.0,
            workspace_id.0,
            &body.title,
            body.graph_id,
        )
        .await?;
        Ok(ThreadCreated::Created(Json(thread.into())))
    }

    /// A workspace's threads, most recently active first.
    #[oai(
        path = "/api/v1/workspaces/:workspace_id/threads",
        method = "get",
        operation_id = "list_threads"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        workspace_id: Path<Uuid>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ThreadPageResponse, ApiError> {
        let page = PageRequest::parse(List::Threads, limit.0, cursor.0.as_deref())?;
        let result = threads::list(&state.db, &auth.0, workspace_id.0, page).await?;
        Ok(ThreadPageResponse::Ok(Json(ThreadPage {
            items: result.items.into_iter().map(Into::into).collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// One thread.
    #[oai(
        path = "/api/v1/threads/:id",
        method = "get",
        operation_id = "get_thread"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<ThreadResponse, ApiError> {
        let thread = threads::get(&state.db, &auth.0, id.0).await?;
        Ok(ThreadResponse::Ok(Json(thread.into())))
    }

    /// Rename a thread, or bind it to (or unbind it from) a graph.
    #[oai(
        path = "/api/v1/threads/:id",
        method = "patch",
        operation_id = "update_thread"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateThreadRequest>,
    ) -> Result<ThreadResponse, ApiError> {
        let body = body.0;
        let graph_id = super::patch_field(body.graph_id);
        let thread = threads::update(
            &state.db,
            &auth.0,
            id.0,
            ThreadChanges {
                title: body.title,
                graph_id,
            },
        )
        .await?;
        Ok(ThreadResponse::Ok(Json(thread.into())))
    }

    /// Delete a thread and its messages.
    #[oai(
        path = "/api/v1/threads/:id",
        method = "delete",
        operation_id = "delete_thread"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        threads::delete(&state.db, &auth.0, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Add a message to a thread. A `user` message in a thread bound to a graph starts a
    /// chat run: an execution of the graph with inputs `message` (this text), `history`
    /// (the thread's recent messages as "role: content" lines) and `crew_chat_messages`
    /// (the same as CrewAI's JSON); the message comes back with its `execution_id`, and
    /// the crew's answer arrives as an assistant message linked to it (a failure as a
    /// system message). If the run cannot start (invalid graph, missing inputs, too many
    /// active executions) nothing is stored.
    #[oai(
        path = "/api/v1/threads/:id/messages",
        method = "post",
        operation_id = "create_message"
    )]
    async fn create_message(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<CreateMessageRequest>,
    ) -> Result<MessageCreated, ApiError> {
        let body = body.0;
        let role = match body.role {
            None | Some(MessageRoleBody::User) => MessageRole::User,
            Some(MessageRoleBody::Assistant) => MessageRole::Assistant,
            Some(MessageRoleBody::System) => MessageRole::System,
        };
        let thread = threads::get(&state.db, &auth.0, id.0).await?;
        let message = if role == MessageRole::User && thread.graph_id.is_some() {
            // A chat run: the message and the execution it starts are stored together.
            let (message, _execution) = executions::kickoff_chat(
                &state.db,
                &auth.0,
                &state.tools,
                &state.llm_hosts,
                state.config.executions.max_active_per_user,
                id.0,
                &body.content,
            )
            .await?;
            message
        } else {
            threads::add_message(&state.db, &auth.0, id.0, role, &body.content).await?
        };
        Ok(MessageCreated::Created(Json(message.into())))
    }

    /// A thread's messages, oldest first.
    #[oai(
        path = "/api/v1/threads/:id/messages",
        method = "get",
        operation_id = "list_messages"
    )]
    async fn list_messages(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<MessagePageResponse, ApiError> {
        let page = PageRequest::parse(List::Messages, limit.0, cursor.0.as_deref())?;
        let result = threads::list_messages(&state.db, &auth.0, id.0, page).await?;
        Ok(MessagePageResponse::Ok(Json(MessagePage {
            items: result.items.into_iter().map(Into::into).collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// One message.
    #[oai(
        path = "/api/v1/threads/:id/messages/:message_id",
        method = "get",
        operation_id = "get_message"
    )]
    async fn get_message(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        message_id: Path<Uuid>,
    ) -> Result<MessageResponse, ApiError> {
        let message = threads::get_message(&state.db, &auth.0, id.0, message_id.0).await?;
        Ok(MessageResponse::Ok(Json(message.into())))
    }

    /// Delete a message.
    #[oai(
        path = "/api/v1/threads/:id/messages/:message_id",
        method = "delete",
        operation_id = "delete_message"
    )]
    async fn delete_message(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        message_id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        threads::delete_message(&state.db, &auth.0, id.0, message_id.0).await?;
        Ok(Deleted::NoContent)
    }
}
