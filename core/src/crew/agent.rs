//! One agent executing one task: CrewAI's `Agent.execute_task` (retries, time limit,
//! events) around the `CrewAgentExecutor` loop — ReAct text, or native function calling
//! when the agent asks for it (crewai-reference.md §1, §4).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::crew::events::RuntimeEvent;
use crate::crew::llm::{ChatMessage, LlmError, LlmRequest, LlmResponse, Role, ToolDefinition};
use crate::crew::parser::{Parsed, format_answer};
use crate::crew::prompts::{FORCE_FINAL_ANSWER, OBSERVATION_STOP, Persona, initial_messages};
use crate::crew::runtime::{AgentRuntime, MAX_LLM_CALLS_PER_EXECUTION, Run};
use crate::crew::spec::ToolCalling;
use crate::crew::tool_usage::{ExecTool, ToolSession, tool_names, tools_description};

pub const EMPTY_LLM_RESPONSE: &str = "Invalid response from LLM call - None or empty.";

/// What an agent is asked to do.
pub(crate) struct AgentJob<'j> {
    /// The graph task this work belongs to (a delegated task keeps its parent's id).
    pub task_id: &'j str,
    /// The (interpolated) description, for the time-out text.
    pub description: &'j str,
    /// The task prompt, context included.
    pub prompt: String,
    pub tools: Vec<ExecTool>,
    pub used_tools: &'j AtomicU32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AgentError {
    /// Provider errors are never retried (CrewAI re-raises litellm errors).
    Llm(LlmError),
    Timeout(String),
    Cancelled,
    /// Anything else: retried up to `max_retry_limit` times.
    Failed(String),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Llm(error) => write!(f, "{error}"),
            AgentError::Timeout(message) | AgentError::Failed(message) => f.write_str(message),
            AgentError::Cancelled => f.write_str("the run was cancelled"),
        }
    }
}

/// The agent's own tools from the repository (validated to exist before the run).
pub(crate) fn agent_tools(run: &Run<'_>, agent: &AgentRuntime) -> Vec<ExecTool> {
    agent
        .spec
        .tools
        .iter()
        .filter_map(|name| run.tools.get(name))
        .map(ExecTool::registry)
        .collect()
}

/// `Agent.execute_task`: emits `agent.started`/`agent.completed`, applies the time
/// limit, and re-runs on non-LLM failures while the agent's retry budget lasts.
pub(crate) fn execute_task<'r>(
    run: &'r Run<'r>,
    agent: &'r AgentRuntime,
    job: &'r AgentJob<'r>,
) -> BoxFuture<'r, Result<String, AgentError>> {
    Box::pin(async move {
        loop {
            if run.cancel.is_cancelled() {
                return Err(AgentError::Cancelled);
            }
            run.emit(RuntimeEvent::AgentStarted {
                task_id: job.task_id.to_string(),
                agent_role: agent.role.clone(),
                tools: job.tools.iter().map(|tool| tool.name.clone()).collect(),
                task_prompt: job.prompt.clone(),
            });
            let attempt = match agent.spec.max_execution_time {
                Some(seconds) => {
                    match tokio::time::timeout(
                        Duration::from_secs(seconds),
                        invoke(run, agent, job),
                    )
                    .await
                    {
                        Ok(Err(AgentError::Failed(message))) => Err(AgentError::Failed(format!(
                            "Task execution failed: {message}"
                        ))),
                        Ok(result) => result,
                        Err(_) => Err(AgentError::Timeout(format!(
                            "Task '{}' execution timed out after {seconds} seconds. Consider increasing max_execution_time or optimizing the task.",
                            job.description
                        ))),
                    }
                }
                None => invoke(run, agent, job).await,
            };
            match attempt {
                Ok(output) => {
                    run.emit(RuntimeEvent::AgentCompleted {
                        task_id: job.task_id.to_string(),
                        agent_role: agent.role.clone(),
                        output: output.clone(),
                    });
                    return Ok(output);
                }
                Err(AgentError::Failed(message)) => {
                    let times = agent.times_executed.fetch_add(1, Ordering::SeqCst) + 1;
                    if times > agent.spec.max_retry_limit {
                        return Err(AgentError::Failed(message));
                    }
                    tracing::warn!(agent = %agent.role, attempt = times, error = %message, "agent execution failed, retrying");
                }
                Err(other) => return Err(other),
            }
        }
    })
}

/// `CrewAgentExecutor.invoke`.
async fn invoke(
    run: &Run<'_>,
    agent: &AgentRuntime,
    job: &AgentJob<'_>,
) -> Result<String, AgentError> {
    let persona = Persona {
        role: &agent.role,
        goal: &agent.goal,
        backstory: &agent.backstory,
        use_system_prompt: agent.spec.use_system_prompt,
    };
    let mut session = ToolSession {
        run,
        agent,
        task_id: job.task_id,
        tools: &job.tools,
        used_tools: job.used_tools,
        last_used: None,
    };
    // The hard cap: `max_iter` ordinary calls at most, then one forced final answer.
    let max_iter = agent.spec.max_iter.min(MAX_LLM_CALLS_PER_EXECUTION - 1);
    match agent.spec.tool_calling {
        ToolCalling::Native if !job.tools.is_empty() => {
            native_loop(run, agent, job, &persona, &mut session, max_iter).await
        }
        _ => react_loop(run, agent, job, &persona, &mut session, max_iter).await,
    }
}

async fn react_loop(
    run: &Run<'_>,
    agent: &AgentRuntime,
    job: &AgentJob<'_>,
    persona: &Persona<'_>,
    session: &mut ToolSession<'_, '_>,
    max_iter: u32,
) -> Result<String, AgentError> {
    let descriptions = tools_description(&job.tools);
    let names = tool_names(&job.tools);
    let tools = (!job.tools.is_empty()).then_some((descriptions.as_str(), names.as_str()));
    let mut messages = initial_messages(persona, &job.prompt, tools);
    let mut last_text: Option<String> = None;
    let mut iterations = 0;
    loop {
        if iterations >= max_iter {
            // CrewAI's `handle_max_iterations_exceeded`; its answer is returned as is.
            let forced = match &last_text {
                Some(text) => format!("{text}\n{FORCE_FINAL_ANSWER}"),
                None => FORCE_FINAL_ANSWER.to_string(),
            };
            messages.push(ChatMessage::assistant(forced.trim_end()));
            let reply = call_llm(run, agent, job.task_id, &messages, Vec::new()).await?;
            return final_text(&reply.content);
        }
        let reply = call_llm(run, agent, job.task_id, &messages, Vec::new()).await?;
        if reply.content.is_empty() {
            return Err(AgentError::Failed(EMPTY_LLM_RESPONSE.into()));
        }
        match format_answer(&reply.content) {
            Parsed::Finish { output, .. } => return Ok(output),
            Parsed::Action {
                tool,
                tool_input,
                text,
                ..
            } => {
                let observation = session
                    .use_tool(&tool, &tool_input)
                    .await
                    .map_err(|_| AgentError::Cancelled)?;
                let text = format!("{text}\nObservation: {observation}");
                // `handle_agent_action_core` appends the raw result, then the loop appends
                // the action text with its observation.
                messages.push(ChatMessage::assistant(observation));
                messages.push(ChatMessage::assistant(text.trim_end()));
                last_text = Some(text);
            }
        }
        iterations += 1;
    }
}

async fn native_loop(
    run: &Run<'_>,
    agent: &AgentRuntime,
    job: &AgentJob<'_>,
    persona: &Persona<'_>,
    session: &mut ToolSession<'_, '_>,
    max_iter: u32,
) -> Result<String, AgentError> {
    let definitions: Vec<ToolDefinition> = job.tools.iter().map(ExecTool::definition).collect();
    let mut messages = initial_messages(persona, &job.prompt, None);
    let mut iterations = 0;
    loop {
        if iterations >= max_iter {
            // A trailing assistant message would be a prefill for some providers: the
            // forced final answer is asked as the user, with no tools offered.
            messages.push(ChatMessage::user(FORCE_FINAL_ANSWER));
            let reply = call_llm(run, agent, job.task_id, &messages, Vec::new()).await?;
            return final_text(&reply.content);
        }
        let reply = call_llm(run, agent, job.task_id, &messages, definitions.clone()).await?;
        if reply.tool_calls.is_empty() {
            return final_text(&reply.content);
        }
        let mut assistant = ChatMessage::assistant(reply.content.clone());
        assistant.tool_calls = reply.tool_calls.clone();
        messages.push(assistant);
        for call in &reply.tool_calls {
            let observation = session
                .use_tool(&call.name, &call.arguments)
                .await
                .map_err(|_| AgentError::Cancelled)?;
            messages.push(ChatMessage {
                role: Role::Tool,
                content: observation,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
            });
        }
        iterations += 1;
    }
}

/// A reply that ends the loop: the Final Answer when there is one, else the whole text.
fn final_text(content: &str) -> Result<String, AgentError> {
    if content.is_empty() {
        return Err(AgentError::Failed(EMPTY_LLM_RESPONSE.into()));
    }
    Ok(match format_answer(content) {
        Parsed::Finish { output, .. } => output,
        Parsed::Action { .. } => content.to_string(),
    })
}

/// One model call with its events; stops at once when the run is cancelled.
async fn call_llm(
    run: &Run<'_>,
    agent: &AgentRuntime,
    task_id: &str,
    messages: &[ChatMessage],
    tools: Vec<ToolDefinition>,
) -> Result<LlmResponse, AgentError> {
    if let Some(rpm) = &agent.rpm {
        tokio::select! {
            biased;
            _ = run.cancel.cancelled() => return Err(AgentError::Cancelled),
            _ = rpm.acquire() => {}
        }
    }
    tokio::select! {
        biased;
        _ = run.cancel.cancelled() => return Err(AgentError::Cancelled),
        () = run.sink_ready() => {}
    }
    let call_id = uuid::Uuid::new_v4().to_string();
    let model = agent.client.model().to_string();
    run.emit(RuntimeEvent::LlmStarted {
        call_id: call_id.clone(),
        task_id: task_id.to_string(),
        agent_role: agent.role.clone(),
        model: model.clone(),
        messages: serde_json::to_value(messages).unwrap_or_default(),
    });
    let request = LlmRequest {
        messages: messages.to_vec(),
        stop: vec![OBSERVATION_STOP.to_string()],
        tools,
    };
    let mut on_delta = |chunk: &str| {
        run.emit(RuntimeEvent::LlmDelta {
            call_id: call_id.clone(),
            agent_role: agent.role.clone(),
            chunk: chunk.to_string(),
        });
    };
    let result = tokio::select! {
        biased;
        _ = run.cancel.cancelled() => return Err(AgentError::Cancelled),
        result = agent.client.complete(&request, &mut on_delta) => result,
    };
    match result {
        Ok(response) => {
            run.add_usage(&response.usage);
            run.emit(RuntimeEvent::LlmCompleted {
                call_id,
                agent_role: agent.role.clone(),
                model,
                response: response.content.clone(),
                usage: response.usage,
            });
            Ok(response)
        }
        Err(error) => {
            run.emit(RuntimeEvent::LlmFailed {
                call_id,
                agent_role: agent.role.clone(),
                model,
                error: error.to_string(),
            });
            Err(AgentError::Llm(error))
        }
    }
}
