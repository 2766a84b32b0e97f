//! Run results, shaped as CrewAI 0.121.1's TaskOutput, CrewOutput and UsageMetrics
//! (crewai-reference.md §7).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageMetrics {
    pub total_tokens: u64,
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
    pub successful_requests: u64,
}

impl UsageMetrics {
    /// CrewAI's `add_usage_metrics`: field by field.
    pub fn add(&mut self, other: &UsageMetrics) {
        self.total_tokens += other.total_tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_prompt_tokens += other.cached_prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.successful_requests += other.successful_requests;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// The task's graph node id.
    pub task_id: String,
    pub description: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expected_output: Option<String>,
    /// The first 10 words of the description + "...".
    #[serde(default)]
    pub summary: Option<String>,
    pub raw: String,
    /// The role of the agent that produced it.
    pub agent: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrewOutput {
    /// The last non-empty task output.
    pub raw: String,
    pub tasks_output: Vec<TaskOutput>,
    pub token_usage: UsageMetrics,
}
