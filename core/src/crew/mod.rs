//! The crew runtime (DESIGN §9): `CrewSpec`, the runtime that runs it with CrewAI 0.121.1
//! semantics, LLM providers, tools and the events a run emits. Independent of HTTP.

mod agent;
mod delegation;
pub mod events;
pub mod interpolate;
pub mod lenient_json;
pub mod llm;
pub mod output;
pub mod parser;
mod process;
pub mod prompts;
pub mod pyrepr;
mod rpm;
pub mod runtime;
mod similarity;
pub mod spec;
mod tool_usage;
pub mod tools;

pub use delegation::{ASK_QUESTION, DELEGATE_WORK};
pub use events::{EventSink, RuntimeEvent};
pub use output::{CrewOutput, TaskOutput, UsageMetrics};
pub use runtime::{RunDeps, RunError, run_crew};
pub use spec::{AgentSpec, CrewSpec, LlmSpec, Process, TaskContext, TaskSpec, ToolCalling};
