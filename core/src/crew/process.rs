//! The sequential and hierarchical processes: CrewAI's `_execute_tasks` loop
//! (crewai-reference.md §3, §5). Async tasks run concurrently (on this task, no spawn)
//! and are awaited before the next synchronous task.

use std::sync::atomic::AtomicU32;

use futures::future::try_join_all;
use serde_json::{Map, Value};

use crate::crew::agent::{AgentError, AgentJob, agent_tools, execute_task};
use crate::crew::delegation::delegation_tools;
use crate::crew::events::RuntimeEvent;
use crate::crew::interpolate;
use crate::crew::output::TaskOutput;
use crate::crew::prompts::{task_prompt, with_context};
use crate::crew::runtime::{AgentRuntime, Run, RunError};
use crate::crew::spec::{CrewSpec, Process, TaskContext, TaskSpec};
use crate::crew::tool_usage::{ExecTool, merge_tools};

/// The divider between context outputs.
pub const CONTEXT_DIVIDER: &str = "\n\n----------\n\n";

/// A task with its inputs filled.
pub(crate) struct PreparedTask<'s> {
    pub index: usize,
    pub spec: &'s TaskSpec,
    pub description: String,
    pub expected_output: String,
    /// `task.used_tools`, shared by the task's retries.
    pub used_tools: AtomicU32,
}

/// Interpolates every task (description, then expected output), in order.
pub(crate) fn interpolate_tasks<'s>(
    spec: &'s CrewSpec,
    inputs: &Map<String, Value>,
) -> Result<Vec<PreparedTask<'s>>, String> {
    spec.tasks
        .iter()
        .enumerate()
        .map(|(index, task)| {
            Ok(PreparedTask {
                index,
                spec: task,
                description: interpolate::task_description(&task.description, inputs)?,
                expected_output: interpolate::task_expected_output(&task.expected_output, inputs)?,
                used_tools: AtomicU32::new(0),
            })
        })
        .collect()
}

/// Runs every task; returns the outputs in the order they were collected.
pub(crate) async fn execute_tasks(
    run: &Run<'_>,
    spec: &CrewSpec,
    tasks: &[PreparedTask<'_>],
) -> Result<Vec<TaskOutput>, RunError> {
    let mut task_outputs: Vec<TaskOutput> = Vec::new();
    // Raw output per task index, for explicit contexts.
    let mut by_index: Vec<Option<String>> = vec![None; tasks.len()];
    let mut pending = Vec::new();
    for task in tasks {
        let agent = agent_for(run, spec, task)?;
        let tools = prepare_tools(run, spec, task, agent);
        if task.spec.async_execution {
            // CrewAI quirk kept: an async task's default context is empty.
            let context = context_for(task, &[], &by_index);
            pending.push(execute_one(run, task, agent, tools, context));
        } else {
            if !pending.is_empty() {
                // Quirk fixed: CrewAI replaces the output list with the async outputs here;
                // we append them, so earlier outputs stay in contexts and `tasks_output`.
                for output in try_join_all(pending.drain(..)).await? {
                    record(&mut task_outputs, &mut by_index, output);
                }
            }
            let context = context_for(task, &task_outputs, &by_index);
            let output = execute_one(run, task, agent, tools, context).await?;
            record(&mut task_outputs, &mut by_index, output);
        }
    }
    for output in try_join_all(pending).await? {
        record(&mut task_outputs, &mut by_index, output);
    }
    Ok(task_outputs)
}

fn record(
    task_outputs: &mut Vec<TaskOutput>,
    by_index: &mut [Option<String>],
    output: (usize, TaskOutput),
) {
    let (index, output) = output;
    if let Some(slot) = by_index.get_mut(index) {
        *slot = Some(output.raw.clone());
    }
    task_outputs.push(output);
}

fn agent_for<'r>(
    run: &'r Run<'_>,
    spec: &CrewSpec,
    task: &PreparedTask<'_>,
) -> Result<&'r AgentRuntime, RunError> {
    let agent = match spec.process {
        Process::Hierarchical => run.manager.as_ref(),
        Process::Sequential => task.spec.agent.and_then(|index| run.agents.get(index)),
    };
    agent.ok_or_else(|| {
        RunError::InvalidCrew(format!(
            "No agent available for task: {}. Ensure that either the task has an assigned agent or a manager agent is provided.",
            task.description
        ))
    })
}

/// `task.tools or agent.tools`, plus delegation tools merged by name.
fn prepare_tools(
    run: &Run<'_>,
    spec: &CrewSpec,
    task: &PreparedTask<'_>,
    agent: &AgentRuntime,
) -> Vec<ExecTool> {
    let task_tools: Vec<ExecTool> = task
        .spec
        .tools
        .iter()
        .filter_map(|name| run.tools.get(name))
        .map(ExecTool::registry)
        .collect();
    match spec.process {
        Process::Hierarchical => {
            // The manager was built with delegation tools for every agent; a task with an
            // agent replaces them with tools that delegate to that agent only.
            let everyone: Vec<usize> = (0..run.agents.len()).collect();
            let base = if task_tools.is_empty() {
                delegation_tools(&run.agents, everyone.clone())
            } else {
                task_tools
            };
            let coworkers = match task.spec.agent {
                Some(index) => vec![index],
                None => everyone,
            };
            merge_tools(base, delegation_tools(&run.agents, coworkers))
        }
        Process::Sequential => {
            let base = if task_tools.is_empty() {
                agent_tools(run, agent)
            } else {
                task_tools
            };
            let own = task.spec.agent;
            let others: Vec<usize> = (0..run.agents.len())
                .filter(|index| Some(*index) != own)
                .collect();
            if agent.spec.allow_delegation && run.agents.len() > 1 && !others.is_empty() {
                merge_tools(base, delegation_tools(&run.agents, others))
            } else {
                base
            }
        }
    }
}

/// `_get_context`: the default context joins `outputs`; an explicit one joins the listed
/// tasks' outputs that exist.
fn context_for(
    task: &PreparedTask<'_>,
    outputs: &[TaskOutput],
    by_index: &[Option<String>],
) -> String {
    match &task.spec.context {
        TaskContext::Default => outputs
            .iter()
            .map(|output| output.raw.as_str())
            .collect::<Vec<_>>()
            .join(CONTEXT_DIVIDER),
        TaskContext::Tasks(indexes) => indexes
            .iter()
            .filter_map(|&index| by_index.get(index).and_then(Option::as_deref))
            .collect::<Vec<_>>()
            .join(CONTEXT_DIVIDER),
    }
}

/// `Task._execute_core`: `task.started`, the agent's work, `task.completed` (or
/// `task.failed`).
async fn execute_one(
    run: &Run<'_>,
    task: &PreparedTask<'_>,
    agent: &AgentRuntime,
    tools: Vec<ExecTool>,
    context: String,
) -> Result<(usize, TaskOutput), RunError> {
    run.emit(RuntimeEvent::TaskStarted {
        task_id: task.spec.id.clone(),
        name: task.spec.name.clone(),
        description: task.description.clone(),
        agent_role: agent.role.clone(),
        context: context.clone(),
    });
    let prompt = with_context(
        &task_prompt(&task.description, &task.expected_output, task.spec.markdown),
        &context,
    );
    let job = AgentJob {
        task_id: &task.spec.id,
        description: &task.description,
        prompt,
        tools,
        used_tools: &task.used_tools,
    };
    match execute_task(run, agent, &job).await {
        Ok(raw) => {
            let output = TaskOutput {
                task_id: task.spec.id.clone(),
                description: task.description.clone(),
                name: task.spec.name.clone(),
                expected_output: Some(task.expected_output.clone()),
                summary: Some(summary(&task.description)),
                raw,
                agent: agent.role.clone(),
            };
            run.emit(RuntimeEvent::TaskCompleted {
                task_id: task.spec.id.clone(),
                output: output.clone(),
            });
            Ok((task.index, output))
        }
        Err(AgentError::Cancelled) => Err(RunError::Cancelled),
        Err(error) => {
            run.emit(RuntimeEvent::TaskFailed {
                task_id: task.spec.id.clone(),
                error: error.to_string(),
            });
            Err(match error {
                AgentError::Llm(error) => RunError::Llm(error),
                AgentError::Timeout(message) => RunError::Timeout(message),
                AgentError::Failed(message) => RunError::TaskFailed(message),
                AgentError::Cancelled => RunError::Cancelled,
            })
        }
    }
}

/// The first 10 space-separated words of the description, then "...".
pub fn summary(description: &str) -> String {
    let excerpt = description
        .split(' ')
        .take(10)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{excerpt}...")
}
