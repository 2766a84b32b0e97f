//! The field descriptors of each node kind (see `fields`). Names, defaults and
//! descriptions follow CrewAI 0.121.1's Agent, Task, LLM and Crew parameters.

use crate::crew::spec::{DEFAULT_MAX_ITER, DEFAULT_MAX_RETRY_LIMIT, DEFAULT_MODEL};
use crate::graph::document::NodeKind;
use crate::graph::fields::CrewAi::{Default as CrewAiDefault, Differs, Required};
use crate::graph::fields::FieldDefault::{Bool, Count, Null, Text};
use crate::graph::fields::{Field, FieldType as T};

pub fn fields_of(kind: NodeKind) -> &'static [Field] {
    match kind {
        NodeKind::Agent => AGENT,
        NodeKind::Task => TASK,
        NodeKind::Tool => TOOL,
        NodeKind::Llm => LLM,
        NodeKind::Crew => CREW,
    }
}

const MODEL_EXAMPLES: &[&str] = &[
    "openai/gpt-4o-mini",
    "anthropic/claude-3-5-haiku-latest",
    "ollama/llama3.1",
];

const POSITIVE: T = T::Integer { min: Some(1) };

const AGENT: &[Field] = &[
    Field::new("role", T::Text, "Defines the agent's function and expertise within the crew. `{placeholders}` are filled from the kickoff inputs.")
        .required().interpolated().crewai(Required),
    Field::new("goal", T::Text, "The individual objective that guides the agent's decision-making. `{placeholders}` allowed.")
        .required().interpolated().crewai(Required),
    Field::new("backstory", T::Text, "Provides context and personality to the agent, enriching interactions. `{placeholders}` allowed.")
        .required().interpolated().crewai(Required),
    Field::new("llm", T::Text, "Model as a LiteLLM-style string (shorthand for an llm node linked to this agent).")
        .default(Text(DEFAULT_MODEL)).examples(MODEL_EXAMPLES)
        .crewai(Differs { crewai: "None", why: "CrewAI's create_llm(None) picks gpt-4o-mini; the schema states the model that runs" }),
    Field::new("tool_calling", T::Choice(&["react", "native"]), "`react`: CrewAI's Thought/Action/Observation text protocol. `native`: the provider's function calling.")
        .default(Text("react")),
    Field::new("max_iter", POSITIVE, "Maximum iterations before the agent must give its best answer.")
        .default(Count(DEFAULT_MAX_ITER)).crewai(CrewAiDefault("25")),
    Field::new("max_rpm", POSITIVE, "Maximum requests per minute to the model (no limit when unset).")
        .nullable().default(Null).crewai(CrewAiDefault("None")),
    Field::new("max_execution_time", POSITIVE, "Maximum seconds for one task execution.")
        .nullable().default(Null).crewai(CrewAiDefault("None"))
        .crewai_error("invalid_max_execution_time", "Max Execution time must be a positive integer greater than zero"),
    Field::new("max_retry_limit", POSITIVE, "Maximum retries when an error occurs.")
        .default(Count(DEFAULT_MAX_RETRY_LIMIT)).crewai(CrewAiDefault("2")),
    Field::new("allow_delegation", T::Bool, "Allow the agent to delegate work to, or ask questions of, the other agents.")
        .default(Bool(false)).crewai(CrewAiDefault("False")),
    Field::new("use_system_prompt", T::Bool, "Send the role-playing prompt as a system message (else everything goes in one user message).")
        .default(Bool(true)).crewai(CrewAiDefault("True")),
    Field::new("respect_context_window", T::Bool, "Summarise the conversation when it outgrows the model's context window.")
        .default(Bool(true)).crewai(CrewAiDefault("True")),
    Field::new("cache", T::Bool, "Reuse results of identical tool calls.")
        .default(Bool(true)).crewai(CrewAiDefault("True")),
    Field::new("verbose", T::Bool, "Accepted for compatibility; every step is an event anyway.")
        .default(Bool(false)).crewai(CrewAiDefault("False")).checked_only(),
];

const TASK: &[Field] = &[
    Field::new("name", T::Text, "A name for the task (shown in events and outputs).")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("description", T::Text, "What the task is about. `{placeholders}` are filled from the kickoff inputs.")
        .required().interpolated().crewai(Required),
    Field::new("expected_output", T::Text, "A clear definition of the expected outcome. `{placeholders}` allowed.")
        .required().interpolated().crewai(Required),
    Field::new("async_execution", T::Bool, "Run asynchronously, alongside the following tasks (a crew may end with at most one).")
        .default(Bool(false)).crewai(CrewAiDefault("False")),
    Field::new("markdown", T::Bool, "Ask for a Markdown-formatted final answer.")
        .default(Bool(false)).crewai(CrewAiDefault("False")),
    Field::new("no_context", T::Bool, "The task sees no earlier output (CrewAI `context=[]`). Without it, a task with no incoming task edge gets CrewAI's default context: every earlier output. Not together with task → task edges into this task.")
        .default(Bool(false)),
    Field::new("order", T::Number { min: None, above: None, max: None }, "Breaks ties in task order between tasks that context edges do not order (lower first); then the vertical position. A task cannot take context from a task with a higher `order` (CrewAI's future-task error).")
        .nullable(),
    Field::new("output_file", T::OutputFile, "Accepted and validated as CrewAI does; outputs are stored with the execution, not written to the server's disk.")
        .nullable().interpolated().crewai(CrewAiDefault("None")).checked_only(),
];

const TOOL: &[Field] = &[Field::new(
    "tool",
    T::ToolName,
    "The tool's name in the tool repository (`GET /api/v1/tools` lists them with their argument schemas).",
)
.required()];

const LLM: &[Field] = &[
    Field::new("model", T::Text, "LiteLLM-style model string: provider/model.")
        .required().examples(MODEL_EXAMPLES).crewai(Required),
    Field::new("base_url", T::HttpUrl, "An OpenAI-compatible (or Anthropic) endpoint instead of the provider's own.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("api_key_id", T::Uuid, "One of your stored provider keys (`/api/v1/api-keys`); by default your newest key for the provider is used.")
        .nullable(),
    Field::new("temperature", T::Number { min: Some(0.0), above: None, max: Some(2.0) }, "Sampling temperature.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("top_p", T::Number { min: Some(0.0), above: None, max: Some(1.0) }, "Nucleus sampling.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("max_tokens", POSITIVE, "Maximum tokens of one completion.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("seed", T::Integer { min: None }, "Seed for providers that support deterministic sampling.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("timeout", T::Number { min: None, above: Some(0.0), max: Some(3600.0) }, "Seconds to wait for one request.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("stream", T::Bool, "Stream tokens (each chunk becomes an `llm.delta` event).")
        .default(Bool(true)).crewai(Differs { crewai: "False", why: "every streamed chunk becomes an `llm.delta` event" }),
];

const CREW: &[Field] = &[
    Field::new("name", T::Text, "The crew's name (shown in events).")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("process", T::Choice(&["sequential", "hierarchical"]), "`sequential`: tasks run in order, each by its agent. `hierarchical`: a manager plans, delegates and validates.")
        .default(Text("sequential")).crewai(CrewAiDefault("'sequential'")),
    Field::new("manager_llm", T::Text, "The manager's model (hierarchical process; or link an llm node to the crew).")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("max_rpm", POSITIVE, "Maximum requests per minute for every agent.")
        .nullable().crewai(CrewAiDefault("None")),
    Field::new("cache", T::Bool, "Share one tool-result cache among the agents.")
        .default(Bool(true)).crewai(CrewAiDefault("True")),
];
