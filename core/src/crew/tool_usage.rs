//! Running a tool an agent asked for, as CrewAI 0.121.1's `ToolUsage` does
//! (crewai-reference.md §6): selection (case-insensitive, then difflib ratio > 0.85),
//! input parsing, repeated-usage refusal, the shared cache, retries, the format reminder
//! every third use, and the exact observation texts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value};

use crate::crew::delegation::{self, DelegationKind};
use crate::crew::events::RuntimeEvent;
use crate::crew::lenient_json::parse_lenient;
use crate::crew::llm::ToolDefinition;
use crate::crew::prompts::{FORMAT, TOOLS, tool_description};
use crate::crew::runtime::{AgentRuntime, Run};
use crate::crew::similarity::ratio;
use crate::crew::tools::{Tool, ToolError, invoke_tool};

pub const TOOL_ARGUMENTS_ERROR: &str =
    "Error: the Action Input is not a valid key, value dictionary.";
pub const TASK_REPEATED_USAGE: &str = "I tried reusing the same input, I must stop using this action input. I'll try something else instead.\n\n";
/// Re-runs after a failed tool call before giving up (CrewAI's `_max_parsing_attempts`).
const MAX_TOOL_RETRIES: u32 = 3;
/// A format reminder follows every this many tool uses in a task.
const REMEMBER_FORMAT_AFTER_USAGES: u32 = 3;

#[derive(Clone)]
pub(crate) enum ToolKind {
    Registry(Arc<dyn Tool>),
    /// Delegation to the run's agents with these indexes.
    Delegation(DelegationKind, Vec<usize>),
}

/// A tool as one agent execution sees it.
#[derive(Clone)]
pub(crate) struct ExecTool {
    pub name: String,
    /// The tool's own description (native function calling offers this one).
    pub description: String,
    /// CrewAI's rewritten `Tool Name: ...` description (the ReAct prompt shows this).
    pub rendered: String,
    pub schema: Value,
    pub kind: ToolKind,
}

impl ExecTool {
    pub fn new(name: String, description: String, schema: Value, kind: ToolKind) -> Self {
        let rendered = tool_description(&name, &description, &schema);
        ExecTool {
            name,
            description,
            rendered,
            schema,
            kind,
        }
    }

    pub fn registry(tool: Arc<dyn Tool>) -> Self {
        ExecTool::new(
            tool.name().to_string(),
            tool.description().to_string(),
            tool.args_schema(),
            ToolKind::Registry(tool),
        )
    }

    pub fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.schema.clone(),
        }
    }

    fn cacheable(&self) -> bool {
        match &self.kind {
            ToolKind::Registry(tool) => tool.cacheable(),
            ToolKind::Delegation(..) => true,
        }
    }
}

/// `_merge_tools`: new tools replace existing ones of the same name.
pub(crate) fn merge_tools(existing: Vec<ExecTool>, new: Vec<ExecTool>) -> Vec<ExecTool> {
    let mut tools: Vec<ExecTool> = existing
        .into_iter()
        .filter(|tool| !new.iter().any(|added| added.name == tool.name))
        .collect();
    tools.extend(new);
    tools
}

/// `{tools}`: the rewritten descriptions, one per line.
pub(crate) fn tools_description(tools: &[ExecTool]) -> String {
    tools
        .iter()
        .map(|tool| tool.rendered.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `{tool_names}`.
pub(crate) fn tool_names(tools: &[ExecTool]) -> String {
    tools
        .iter()
        .map(|tool| tool.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `_select_tool`: best ratio first; exact (case-insensitive) or ratio > 0.85.
pub(crate) fn select_tool<'t>(tools: &'t [ExecTool], asked: &str) -> Result<&'t ExecTool, String> {
    let wanted = asked.trim().to_lowercase();
    let mut ranked: Vec<(f64, &ExecTool)> = tools
        .iter()
        .map(|tool| (ratio(&tool.name.trim().to_lowercase(), &wanted), tool))
        .collect();
    // Stable sort, best first, like Python's sorted(..., reverse=True).
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (score, tool) in ranked {
        if tool.name.trim().to_lowercase() == wanted || score > 0.85 {
            return Ok(tool);
        }
    }
    if asked.is_empty() {
        Err(format!(
            "I forgot the Action name, these are the only available Actions: {}",
            tools_description(tools)
        ))
    } else {
        Err(format!(
            "Action '{asked}' don't exist, these are the only available Actions:\n{}",
            tools_description(tools)
        ))
    }
}

/// `_validate_tool_input`: a dict, from JSON or Python-literal-ish or repaired text.
pub(crate) fn parse_tool_input(input: &str) -> Option<Map<String, Value>> {
    if input.trim().is_empty() {
        return None;
    }
    match parse_lenient(input) {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The cancellation token fired while a tool ran.
#[derive(Debug)]
pub(crate) struct Cancelled;

/// Tool use within one agent execution.
pub(crate) struct ToolSession<'r, 'a> {
    pub run: &'r Run<'a>,
    pub agent: &'r AgentRuntime,
    pub task_id: &'r str,
    pub tools: &'r [ExecTool],
    /// The task's `used_tools` counter (shared by the task's retries).
    pub used_tools: &'r AtomicU32,
    /// `tools_handler.last_used_tool`: (name, arguments).
    pub last_used: Option<(String, Value)>,
}

impl ToolSession<'_, '_> {
    fn format_reminder(&self) -> String {
        TOOLS
            .replace("{tools}", &tools_description(self.tools))
            .replace("{tool_names}", &tool_names(self.tools))
    }

    fn format_slice(&self) -> String {
        FORMAT.replace("{tool_names}", &tool_names(self.tools))
    }

    /// `_format_result`: counts the use and appends the format reminder every 3rd.
    fn format_result(&self, result: String) -> String {
        let used = self.used_tools.fetch_add(1, Ordering::SeqCst) + 1;
        if used.is_multiple_of(REMEMBER_FORMAT_AFTER_USAGES) {
            format!("{result}\n\n{}", self.format_reminder())
        } else {
            result
        }
    }

    fn failed(&self, tool_name: &str, tool_args: Value, error: &str) {
        self.run.emit(RuntimeEvent::ToolFailed {
            task_id: self.task_id.to_string(),
            agent_role: self.agent.role.clone(),
            tool_name: tool_name.to_string(),
            tool_args,
            error: error.to_string(),
        });
    }

    /// A ReAct action (or a native call: same steps) → the observation text.
    pub async fn use_tool(&mut self, asked: &str, input: &str) -> Result<String, Cancelled> {
        let tool = match select_tool(self.tools, asked) {
            Ok(tool) => tool,
            Err(error) => {
                self.failed(asked, Value::String(input.to_string()), &error);
                return Ok(format!(
                    "I encountered an error: {error}\nMoving on then. {}",
                    self.format_slice()
                ));
            }
        };
        let Some(arguments) = parse_tool_input(input) else {
            self.failed(
                &tool.name,
                Value::String(input.to_string()),
                "Tool input must be a valid dictionary in JSON or Python literal format",
            );
            return Ok(TOOL_ARGUMENTS_ERROR.to_string());
        };
        let arguments = Value::Object(arguments);
        if self
            .last_used
            .as_ref()
            .is_some_and(|(name, args)| *name == tool.name && *args == arguments)
        {
            return Ok(self.format_result(TASK_REPEATED_USAGE.to_string()));
        }
        self.run_tool(tool, arguments).await
    }

    async fn run_tool(&mut self, tool: &ExecTool, arguments: Value) -> Result<String, Cancelled> {
        let cache_key = format!("{}-{}", tool.name, arguments);
        let use_cache = self.agent.spec.cache && tool.cacheable();
        let mut attempts = 0;
        loop {
            tokio::select! {
                biased;
                _ = self.run.cancel.cancelled() => return Err(Cancelled),
                () = self.run.sink_ready() => {}
            }
            self.run.emit(RuntimeEvent::ToolStarted {
                task_id: self.task_id.to_string(),
                agent_role: self.agent.role.clone(),
                tool_name: tool.name.clone(),
                tool_args: arguments.clone(),
            });
            let cached = match (&self.run.cache, use_cache) {
                (Some(cache), true) => cache
                    .lock()
                    .ok()
                    .and_then(|cache| cache.get(&cache_key).cloned()),
                _ => None,
            };
            let from_cache = cached.is_some();
            let outcome = match cached {
                Some(result) => Ok(result),
                None => self.invoke(tool, &arguments).await?,
            };
            match outcome {
                Ok(result) => {
                    if use_cache
                        && !from_cache
                        && let Some(cache) = &self.run.cache
                        && let Ok(mut cache) = cache.lock()
                    {
                        cache.insert(cache_key, result.clone());
                    }
                    self.last_used = Some((tool.name.clone(), arguments.clone()));
                    let result = self.format_result(result);
                    self.run.emit(RuntimeEvent::ToolCompleted {
                        task_id: self.task_id.to_string(),
                        agent_role: self.agent.role.clone(),
                        tool_name: tool.name.clone(),
                        tool_args: arguments,
                        output: result.clone(),
                        from_cache,
                    });
                    return Ok(result);
                }
                Err(error) => {
                    self.failed(&tool.name, arguments.clone(), &error.to_string());
                    attempts += 1;
                    // A schema mismatch fails the same way every time: no retry.
                    let retry =
                        matches!(error, ToolError::Failed(_)) && attempts <= MAX_TOOL_RETRIES;
                    if !retry {
                        return Ok(format!(
                            "\nI encountered an error while trying to use the tool. This was the error: {error}.\n Tool {} accepts these inputs: {}.\nMoving on then. {}",
                            tool.name,
                            tool.rendered,
                            self.format_slice()
                        ));
                    }
                }
            }
        }
    }

    /// Arguments are filtered to the schema's properties first, as CrewAI does.
    async fn invoke(
        &self,
        tool: &ExecTool,
        arguments: &Value,
    ) -> Result<Result<String, ToolError>, Cancelled> {
        let mut filtered = arguments.as_object().cloned().unwrap_or_default();
        if let ToolKind::Delegation(..) = tool.kind {
            // CrewAI's delegation tools also accept `co_worker`.
            if !filtered.contains_key("coworker")
                && let Some(value) = filtered.get("co_worker").cloned()
            {
                filtered.insert("coworker".into(), value);
            }
        }
        if let Some(properties) = tool.schema.get("properties").and_then(Value::as_object) {
            filtered.retain(|key, _| properties.contains_key(key));
        }
        let filtered = Value::Object(filtered);
        match &tool.kind {
            ToolKind::Registry(registered) => {
                let run = invoke_tool(registered.as_ref(), filtered);
                tokio::select! {
                    biased;
                    _ = self.run.cancel.cancelled() => Err(Cancelled),
                    result = run => Ok(result),
                }
            }
            ToolKind::Delegation(kind, coworkers) => {
                if let Err(problems) = crate::crew::tools::schema::validate(&tool.schema, &filtered)
                {
                    return Ok(Err(ToolError::InvalidArguments(format!(
                        "Arguments validation failed: {}",
                        problems.join("; ")
                    ))));
                }
                delegation::delegate(
                    self.run,
                    self.agent,
                    self.task_id,
                    *kind,
                    &tool.name,
                    coworkers,
                    &filtered,
                )
                .await
                .map(Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crew::tools::{Calculator, HelloWorld};

    fn tools() -> Vec<ExecTool> {
        vec![
            ExecTool::registry(Arc::new(HelloWorld)),
            ExecTool::registry(Arc::new(Calculator)),
        ]
    }

    #[test]
    fn selects_case_insensitively_and_fuzzily() {
        let tools = tools();
        assert_eq!(
            select_tool(&tools, "Hello_World").map(|t| t.name.as_str()),
            Ok("hello_world")
        );
        assert_eq!(
            select_tool(&tools, "hello world").map(|t| t.name.as_str()),
            Ok("hello_world")
        );
        assert_eq!(
            select_tool(&tools, "calculater").map(|t| t.name.as_str()),
            Ok("calculator")
        );
        let error = select_tool(&tools, "search").err().expect("no such tool");
        assert!(error.starts_with(
            "Action 'search' don't exist, these are the only available Actions:\nTool Name: hello_world\nTool Arguments: {'name': {'description': 'Who to greet', 'type': 'str'}}\nTool Description: Greets"
        ), "{error}");
        let error = select_tool(&tools, "").err().expect("empty");
        assert!(error.starts_with(
            "I forgot the Action name, these are the only available Actions: Tool Name: hello_world"
        ));
    }

    #[test]
    fn tool_inputs_must_be_dicts() {
        assert_eq!(
            parse_tool_input("{'name': 'Ada'}").map(Value::Object),
            Some(serde_json::json!({"name": "Ada"}))
        );
        assert_eq!(parse_tool_input("[1, 2]"), None);
        assert_eq!(parse_tool_input("42"), None);
        assert_eq!(parse_tool_input("  "), None);
        assert_eq!(parse_tool_input("Ada"), None);
    }

    #[test]
    fn merging_replaces_by_name() {
        let merged = merge_tools(tools(), vec![ExecTool::registry(Arc::new(HelloWorld))]);
        assert_eq!(tool_names(&merged), "calculator, hello_world");
    }
}
