//! `run_crew`: runs a [`CrewSpec`] with CrewAI 0.121.1 semantics, emitting every event of
//! [`RuntimeEvent`] in CrewAI's order. Cancellation stops the run at once: the whole run
//! future is dropped (in-flight HTTP calls with it), and every LLM or tool call checks
//! the token first.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::crew::events::{EventSink, RuntimeEvent};
use crate::crew::interpolate;
use crate::crew::llm::{LlmClient, LlmConnector, LlmError};
use crate::crew::output::{CrewOutput, UsageMetrics};
use crate::crew::process;
use crate::crew::rpm::RpmLimiter;
use crate::crew::spec::{AgentSpec, CrewSpec, LlmSpec, Process};
use crate::crew::tools::ToolRegistry;

/// A hard cap on LLM calls in one agent execution, whatever `max_iter` says: the last
/// one is the forced final answer.
pub const MAX_LLM_CALLS_PER_EXECUTION: u32 = 100;

/// The manager CrewAI builds for a hierarchical crew (`translations/en.json`).
pub const MANAGER_ROLE: &str = "Crew Manager";
pub const MANAGER_GOAL: &str = "Manage the team to complete the task in the best way possible.";
pub const MANAGER_BACKSTORY: &str = "You are a seasoned manager with a knack for getting the best out of your team.\nYou are also known for your ability to delegate work to the right people, and to ask the right questions to get the best out of your team.\nEven though you don't perform tasks by yourself, you have a lot of experience in the field, which allows you to properly evaluate the work of your team members.";

/// What a run needs from outside.
#[derive(Clone)]
pub struct RunDeps {
    pub connector: Arc<dyn LlmConnector>,
    pub tools: ToolRegistry,
}

/// Why a run failed. `code()` is stable (events, execution rows, the API).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// Kickoff inputs do not fill the crew's placeholders.
    #[error("{0}")]
    InvalidInputs(String),
    /// The crew breaks one of CrewAI's rules (or names a tool that does not exist).
    #[error("{0}")]
    InvalidCrew(String),
    /// A model call failed (never retried by the runtime: the client already retried).
    #[error("{0}")]
    Llm(LlmError),
    /// An agent ran past `max_execution_time`.
    #[error("{0}")]
    Timeout(String),
    /// A task failed for another reason after the agent's retries.
    #[error("{0}")]
    TaskFailed(String),
    /// No task produced output.
    #[error("{0}")]
    NoOutput(String),
    /// The cancellation token fired.
    #[error("the run was cancelled")]
    Cancelled,
}

impl RunError {
    pub fn code(&self) -> &'static str {
        match self {
            RunError::InvalidInputs(_) => "invalid_inputs",
            RunError::InvalidCrew(_) => "invalid_crew",
            RunError::Llm(error) => error.code(),
            RunError::Timeout(_) => "task_timeout",
            RunError::TaskFailed(_) => "task_failed",
            RunError::NoOutput(_) => "no_output",
            RunError::Cancelled => "cancelled",
        }
    }
}

/// An agent as a run uses it: interpolated texts, a connected client, its limits.
pub(crate) struct AgentRuntime {
    pub role: String,
    pub goal: String,
    pub backstory: String,
    pub spec: AgentSpec,
    pub client: Arc<dyn LlmClient>,
    pub rpm: Option<Arc<RpmLimiter>>,
    /// CrewAI's `_times_executed`: per agent, never reset, counts retried failures.
    pub times_executed: AtomicU32,
}

/// State shared by everything in one run.
pub(crate) struct Run<'a> {
    pub agents: Vec<AgentRuntime>,
    pub manager: Option<AgentRuntime>,
    pub tools: &'a ToolRegistry,
    pub sink: &'a dyn EventSink,
    pub cancel: CancellationToken,
    /// The crew's shared tool-result cache (`None` when the crew's cache is off).
    pub cache: Option<Mutex<HashMap<String, String>>>,
    pub usage: Mutex<UsageMetrics>,
}

impl Run<'_> {
    pub fn emit(&self, event: RuntimeEvent) {
        self.sink.emit(event);
    }

    /// Backpressure from the sink (see [`EventSink::ready`]).
    pub async fn sink_ready(&self) {
        self.sink.ready().await;
    }

    pub fn add_usage(&self, usage: &UsageMetrics) {
        if let Ok(mut total) = self.usage.lock() {
            total.add(usage);
        }
    }
}

/// Runs a crew to its end. Emits `execution.started` first and `execution.succeeded` or
/// `execution.failed` last; on cancellation it returns [`RunError::Cancelled`] without a
/// terminal event (the worker records `execution.cancelled`).
pub async fn run_crew(
    spec: &CrewSpec,
    inputs: &Map<String, Value>,
    deps: RunDeps,
    sink: &dyn EventSink,
    cancel: CancellationToken,
) -> Result<CrewOutput, RunError> {
    sink.emit(RuntimeEvent::ExecutionStarted {
        crew_name: spec.name.clone().unwrap_or_else(|| "crew".into()),
        inputs: Value::Object(inputs.clone()),
        attempt: None,
    });
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(RunError::Cancelled),
        result = run_to_end(spec, inputs, &deps, sink, cancel.clone()) => result,
    };
    // How the run ended is recorded by whoever ran it, from the `Outcome`
    // (`executions::lifecycle`), which derives the terminal event once for everyone.
    result
}

async fn run_to_end(
    spec: &CrewSpec,
    inputs: &Map<String, Value>,
    deps: &RunDeps,
    sink: &dyn EventSink,
    cancel: CancellationToken,
) -> Result<CrewOutput, RunError> {
    validate(spec, &deps.tools).map_err(RunError::InvalidCrew)?;
    let tasks = process::interpolate_tasks(spec, inputs).map_err(RunError::InvalidInputs)?;
    let mut texts = Vec::with_capacity(spec.agents.len());
    for agent in &spec.agents {
        let field = |text: &str| interpolate::agent_field(text, inputs);
        texts.push((
            field(&agent.role).map_err(RunError::InvalidInputs)?,
            field(&agent.goal).map_err(RunError::InvalidInputs)?,
            field(&agent.backstory).map_err(RunError::InvalidInputs)?,
        ));
    }

    let crew_rpm = spec.max_rpm.and_then(RpmLimiter::new).map(Arc::new);
    let mut agents = Vec::with_capacity(spec.agents.len());
    for (agent, (role, goal, backstory)) in spec.agents.iter().zip(texts) {
        let client = connect(deps, &agent.llm).await?;
        let rpm = match agent.max_rpm {
            Some(max) => RpmLimiter::new(max).map(Arc::new),
            None => crew_rpm.clone(),
        };
        agents.push(AgentRuntime {
            role,
            goal,
            backstory,
            spec: agent.clone(),
            client,
            rpm,
            times_executed: AtomicU32::new(0),
        });
    }
    let manager = match (spec.process, &spec.manager_llm) {
        (Process::Hierarchical, Some(llm)) => Some(manager_agent(
            llm.clone(),
            connect(deps, llm).await?,
            crew_rpm.clone(),
        )),
        _ => None,
    };

    let run = Run {
        agents,
        manager,
        tools: &deps.tools,
        sink,
        cancel,
        cache: spec.cache.then(|| Mutex::new(HashMap::new())),
        usage: Mutex::new(UsageMetrics::default()),
    };
    let tasks_output = process::execute_tasks(&run, spec, &tasks).await?;
    let token_usage = run.usage.lock().map(|usage| *usage).unwrap_or_default();
    if tasks_output.is_empty() {
        return Err(RunError::NoOutput(
            "No task outputs available to create crew output.".into(),
        ));
    }
    let raw = tasks_output
        .iter()
        .rev()
        .find(|output| !output.raw.is_empty())
        .map(|output| output.raw.clone())
        .ok_or_else(|| {
            RunError::NoOutput("No valid task outputs available to create crew output.".into())
        })?;
    Ok(CrewOutput {
        raw,
        tasks_output,
        token_usage,
    })
}

async fn connect(deps: &RunDeps, llm: &LlmSpec) -> Result<Arc<dyn LlmClient>, RunError> {
    deps.connector.connect(llm).await.map_err(RunError::Llm)
}

fn manager_agent(
    llm: LlmSpec,
    client: Arc<dyn LlmClient>,
    rpm: Option<Arc<RpmLimiter>>,
) -> AgentRuntime {
    AgentRuntime {
        role: MANAGER_ROLE.into(),
        goal: MANAGER_GOAL.into(),
        backstory: MANAGER_BACKSTORY.into(),
        spec: AgentSpec {
            id: "crew-manager".into(),
            role: MANAGER_ROLE.into(),
            goal: MANAGER_GOAL.into(),
            backstory: MANAGER_BACKSTORY.into(),
            llm,
            tools: Vec::new(),
            allow_delegation: true,
            max_iter: crate::crew::spec::DEFAULT_MAX_ITER,
            max_rpm: None,
            max_execution_time: None,
            max_retry_limit: crate::crew::spec::DEFAULT_MAX_RETRY_LIMIT,
            use_system_prompt: true,
            respect_context_window: true,
            cache: true,
            tool_calling: Default::default(),
        },
        client,
        rpm,
        times_executed: AtomicU32::new(0),
    }
}

/// CrewAI's construction-time rules (crewai-reference.md §3), with its texts, plus the
/// checks a spec needs that Python objects cannot break (indexes, tool names).
pub fn validate(spec: &CrewSpec, tools: &ToolRegistry) -> Result<(), String> {
    if spec.process == Process::Hierarchical && spec.manager_llm.is_none() {
        return Err(
            "Attribute `manager_llm` or `manager_agent` is required when using hierarchical process."
                .into(),
        );
    }
    if spec.agents.is_empty() && spec.tasks.is_empty() {
        return Err("Either 'agents' and 'tasks' need to be set or 'config'.".into());
    }
    for task in &spec.tasks {
        match task.agent {
            None if spec.process == Process::Sequential => {
                return Err(format!(
                    "Sequential process error: Agent is missing in the task with the following description: {}",
                    task.description
                ));
            }
            Some(index) if index >= spec.agents.len() => {
                return Err(format!(
                    "Task '{}' is assigned to agent #{index}, which is not in the crew.",
                    task.description
                ));
            }
            _ => {}
        }
        for name in &task.tools {
            if !tools.contains(name) {
                return Err(format!(
                    "Task '{}' uses the tool '{name}', which does not exist.",
                    task.description
                ));
            }
        }
    }
    for agent in &spec.agents {
        for name in &agent.tools {
            if !tools.contains(name) {
                return Err(format!(
                    "Agent '{}' uses the tool '{name}', which does not exist.",
                    agent.role
                ));
            }
        }
        if agent.max_execution_time == Some(0) {
            return Err("Max Execution time must be a positive integer greater than zero".into());
        }
    }
    let trailing_async = spec
        .tasks
        .iter()
        .rev()
        .take_while(|task| task.async_execution)
        .count();
    if trailing_async > 1 {
        return Err("The crew must end with at most one asynchronous task.".into());
    }
    for (index, task) in spec.tasks.iter().enumerate() {
        let crate::crew::spec::TaskContext::Tasks(context) = &task.context else {
            continue;
        };
        for &context_index in context {
            let Some(context_task) = spec.tasks.get(context_index) else {
                return Err(format!(
                    "Task '{}' has a context dependency on task #{context_index}, which is not in the crew.",
                    task.description
                ));
            };
            if context_index >= index {
                return Err(format!(
                    "Task '{}' has a context dependency on a future task '{}', which is not allowed.",
                    task.description, context_task.description
                ));
            }
        }
        if task.async_execution {
            // The contiguous run of async tasks right before this one.
            let previous_async = (0..index)
                .rev()
                .take_while(|&previous| spec.tasks[previous].async_execution);
            for previous in previous_async {
                if context.contains(&previous) {
                    return Err(format!(
                        "Task '{}' is asynchronous and cannot include other sequential asynchronous tasks in its context.",
                        task.description
                    ));
                }
            }
        }
    }
    Ok(())
}
