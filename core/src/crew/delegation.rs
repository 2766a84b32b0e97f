//! CrewAI's delegation tools (`tools/agent_tools/`): "Delegate work to coworker" and "Ask
//! question to coworker". The coworker runs a task of its own (its own tools, no
//! delegation) and its answer becomes the observation.

use std::sync::atomic::AtomicU32;

use serde_json::{Value, json};

use crate::crew::agent::{AgentJob, agent_tools, execute_task};
use crate::crew::events::RuntimeEvent;
use crate::crew::prompts::{MANAGER_REQUEST, task_prompt, with_context};
use crate::crew::runtime::{AgentRuntime, Run};
use crate::crew::tool_usage::{Cancelled, ExecTool, ToolKind};

pub const DELEGATE_WORK: &str = "Delegate work to coworker";
pub const ASK_QUESTION: &str = "Ask question to coworker";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DelegationKind {
    Delegate,
    Ask,
}

/// Both tools, listing the agents at `coworkers` (indexes into the run's agents).
pub(crate) fn delegation_tools(agents: &[AgentRuntime], coworkers: Vec<usize>) -> Vec<ExecTool> {
    let names = coworkers
        .iter()
        .filter_map(|&index| agents.get(index))
        .map(|agent| agent.role.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let delegate = ExecTool::new(
        DELEGATE_WORK.into(),
        format!(
            "Delegate a specific task to one of the following coworkers: {names}\nThe input to this tool should be the coworker, the task you want them to do, and ALL necessary context to execute the task, they know nothing about the task, so share absolutely everything you know, don't reference things but instead explain them."
        ),
        json!({
            "type": "object",
            "properties": {
                "task": {"type": "string", "description": "The task to delegate"},
                "context": {"type": "string", "description": "The context for the task"},
                "coworker": {"type": "string", "description": "The role/name of the coworker to delegate to"}
            },
            "required": ["task", "context", "coworker"]
        }),
        ToolKind::Delegation(DelegationKind::Delegate, coworkers.clone()),
    );
    let ask = ExecTool::new(
        ASK_QUESTION.into(),
        format!(
            "Ask a specific question to one of the following coworkers: {names}\nThe input to this tool should be the coworker, the question you have for them, and ALL necessary context to ask the question properly, they know nothing about the question, so share absolutely everything you know, don't reference things but instead explain them."
        ),
        json!({
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "The question to ask"},
                "context": {"type": "string", "description": "The context for the question"},
                "coworker": {"type": "string", "description": "The role/name of the coworker to ask"}
            },
            "required": ["question", "context", "coworker"]
        }),
        ToolKind::Delegation(DelegationKind::Ask, coworkers),
    );
    vec![delegate, ask]
}

/// `sanitize_agent_name`: whitespace collapsed, `"` removed, casefolded.
pub fn sanitize_agent_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('"', "")
        .to_lowercase()
}

/// `_get_coworker`: a list-looking value means its first element.
fn coworker_name(value: &str) -> &str {
    if value.starts_with('[') && value.ends_with(']') && value.len() >= 2 {
        value[1..value.len() - 1]
            .split(',')
            .next()
            .unwrap_or_default()
    } else {
        value
    }
}

pub(crate) async fn delegate(
    run: &Run<'_>,
    from: &AgentRuntime,
    task_id: &str,
    kind: DelegationKind,
    tool_name: &str,
    coworkers: &[usize],
    args: &Value,
) -> Result<String, Cancelled> {
    let text_arg = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or_default();
    let work = match kind {
        DelegationKind::Delegate => text_arg("task"),
        DelegationKind::Ask => text_arg("question"),
    };
    let context = text_arg("context");
    let wanted = sanitize_agent_name(coworker_name(text_arg("coworker")));
    let found = coworkers
        .iter()
        .filter_map(|&index| run.agents.get(index))
        .find(|agent| sanitize_agent_name(&agent.role) == wanted);
    let Some(coworker) = found else {
        let options = coworkers
            .iter()
            .filter_map(|&index| run.agents.get(index))
            .map(|agent| format!("- {}", sanitize_agent_name(&agent.role)))
            .collect::<Vec<_>>()
            .join("\n");
        return Ok(format!(
            "\nError executing tool. coworker mentioned not found, it must be one of the following options:\n{options}\n"
        ));
    };
    run.emit(RuntimeEvent::AgentDelegated {
        task_id: task_id.to_string(),
        from_role: from.role.clone(),
        to_role: coworker.role.clone(),
        tool_name: tool_name.to_string(),
        task: work.to_string(),
    });
    let used_tools = AtomicU32::new(0);
    let job = AgentJob {
        task_id,
        description: work,
        prompt: with_context(&task_prompt(work, MANAGER_REQUEST, false), context),
        tools: agent_tools(run, coworker),
        used_tools: &used_tools,
    };
    match execute_task(run, coworker, &job).await {
        Ok(answer) => Ok(answer),
        Err(crate::crew::agent::AgentError::Cancelled) => Err(Cancelled),
        Err(error) => Ok(format!(
            "Error executing task with agent '{}'. Error: {error}",
            sanitize_agent_name(&coworker.role)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_crewai() {
        assert_eq!(
            sanitize_agent_name("  Senior   \"Writer\"\n"),
            "senior writer"
        );
        assert_eq!(coworker_name("[Researcher, Writer]"), "Researcher");
        assert_eq!(coworker_name("Writer"), "Writer");
    }
}
