//! What runs do: executions finished by status and end code (counted by whichever process
//! recorded the end, after its transaction committed), and — in workers — LLM calls,
//! tokens and errors by provider and tool calls by tool and outcome, counted from the
//! runtime's events as the worker's sink sees them.

use std::collections::HashMap;
use std::sync::OnceLock;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::bounded_label;
use crate::crew::events::RuntimeEvent;
use crate::crew::llm::Provider;
use crate::crew::tools::ToolRegistry;
use crate::crew::{ASK_QUESTION, DELEGATE_WORK};
use crate::executions::lifecycle::{Outcome, Status, end_code};

/// The `code` label of a succeeded execution.
pub const SUCCEEDED_CODE: &str = "none";
/// The `tool` label of a tool name outside the known set (a model may call anything).
pub const OTHER_TOOL: &str = "other";

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("a valid static metric definition");
    if let Err(error) = registry.register(Box::new(counter.clone())) {
        tracing::error!(%error, name, "registering a metric failed");
    }
    counter
}

/// Executions' ends.
pub struct ExecutionMetrics {
    finished: IntCounterVec,
}

impl ExecutionMetrics {
    pub(super) fn new(registry: &Registry) -> ExecutionMetrics {
        ExecutionMetrics {
            finished: counter_vec(
                registry,
                "crewgraph_executions_finished_total",
                "Executions that reached a terminal status, by status and end code \
                 (`none` for succeeded), counted by the process that recorded the end.",
                &["status", "code"],
            ),
        }
    }

    /// One recorded end.
    pub fn finished(&self, outcome: &Outcome) {
        let (status, code) = match outcome {
            Outcome::Succeeded(_) => (Status::Succeeded, SUCCEEDED_CODE),
            Outcome::Failed { code, .. } => (Status::Failed, code.as_str()),
            Outcome::Cancelled { .. } => (Status::Cancelled, end_code::CANCELLED),
        };
        self.finished_as(status, code, 1);
    }

    /// `count` recorded ends of one kind (the reaper's, say).
    pub fn finished_as(&self, status: Status, code: &str, count: u64) {
        if count > 0 {
            self.finished
                .with_label_values(&[status.as_str(), bounded_label(code)])
                .inc_by(count);
        }
    }
}

struct ProviderCounters {
    completed: IntCounter,
    failed: IntCounter,
    prompt_tokens: IntCounter,
    completion_tokens: IntCounter,
}

/// One set per [`Provider`] (a field each, so a new provider cannot be forgotten).
struct Providers {
    openai: ProviderCounters,
    anthropic: ProviderCounters,
    ollama: ProviderCounters,
    azure: ProviderCounters,
    openai_compatible: ProviderCounters,
}

struct ToolCounters {
    completed: IntCounter,
    cached: IntCounter,
    failed: IntCounter,
}

/// LLM and tool calls of the runs in this process, with every series resolved up front
/// (each event costs a match and an atomic add).
pub struct RunMetrics {
    providers: Providers,
    tools: HashMap<String, ToolCounters>,
    other_tool: ToolCounters,
}

static RUN_METRICS: OnceLock<RunMetrics> = OnceLock::new();

impl RunMetrics {
    /// Registers the run metrics in this process (a worker does, at start-up), with one
    /// series per tool of `tools` and per delegation tool; calls of any other name (a
    /// model may call anything) count as [`OTHER_TOOL`]. Installing twice keeps the first.
    pub fn install(tools: &ToolRegistry) -> &'static RunMetrics {
        RUN_METRICS.get_or_init(|| {
            let names: Vec<String> = tools.list().into_iter().map(|tool| tool.name).collect();
            let delegation = [DELEGATE_WORK, ASK_QUESTION];
            let all = names.iter().map(String::as_str).chain(delegation);
            RunMetrics::new(super::metrics().registry(), all)
        })
    }

    /// The installed metrics; `None` in processes that run no crews.
    pub fn get() -> Option<&'static RunMetrics> {
        RUN_METRICS.get()
    }

    fn new<'a>(registry: &Registry, tool_names: impl IntoIterator<Item = &'a str>) -> RunMetrics {
        let calls = counter_vec(
            registry,
            "crewgraph_llm_calls_total",
            "LLM calls that ended, by provider and outcome (`completed` or `failed`).",
            &["provider", "outcome"],
        );
        let tokens = counter_vec(
            registry,
            "crewgraph_llm_tokens_total",
            "Tokens of completed LLM calls, by provider and kind (`prompt` or `completion`).",
            &["provider", "kind"],
        );
        let tool_calls = counter_vec(
            registry,
            "crewgraph_tool_calls_total",
            "Tool calls that ended, by tool and outcome (`completed`, `cached` or `failed`).",
            &["tool", "outcome"],
        );
        let provider_counters = |provider: Provider| {
            let name = provider.name();
            ProviderCounters {
                completed: calls.with_label_values(&[name, "completed"]),
                failed: calls.with_label_values(&[name, "failed"]),
                prompt_tokens: tokens.with_label_values(&[name, "prompt"]),
                completion_tokens: tokens.with_label_values(&[name, "completion"]),
            }
        };
        let providers = Providers {
            openai: provider_counters(Provider::OpenAi),
            anthropic: provider_counters(Provider::Anthropic),
            ollama: provider_counters(Provider::Ollama),
            azure: provider_counters(Provider::Azure),
            openai_compatible: provider_counters(Provider::OpenAiCompatible),
        };
        let tool_counters = |tool: &str| ToolCounters {
            completed: tool_calls.with_label_values(&[tool, "completed"]),
            cached: tool_calls.with_label_values(&[tool, "cached"]),
            failed: tool_calls.with_label_values(&[tool, "failed"]),
        };
        let tools = tool_names
            .into_iter()
            .filter(|name| *name != OTHER_TOOL)
            .map(|name| (name.to_owned(), tool_counters(name)))
            .collect();
        RunMetrics {
            providers,
            tools,
            other_tool: tool_counters(OTHER_TOOL),
        }
    }

    /// Counts what one runtime event says about LLM and tool calls; other events cost a
    /// match.
    pub fn observe(&self, event: &RuntimeEvent) {
        match event {
            RuntimeEvent::LlmCompleted { model, usage, .. } => {
                let counters = self.provider(model);
                counters.completed.inc();
                counters.prompt_tokens.inc_by(usage.prompt_tokens);
                counters.completion_tokens.inc_by(usage.completion_tokens);
            }
            RuntimeEvent::LlmFailed { model, .. } => self.provider(model).failed.inc(),
            RuntimeEvent::ToolCompleted {
                tool_name,
                from_cache,
                ..
            } => {
                let counters = self.tool(tool_name);
                if *from_cache {
                    counters.cached.inc();
                } else {
                    counters.completed.inc();
                }
            }
            RuntimeEvent::ToolFailed { tool_name, .. } => self.tool(tool_name).failed.inc(),
            _ => {}
        }
    }

    fn provider(&self, model: &str) -> &ProviderCounters {
        let p = &self.providers;
        match Provider::of_model(model) {
            Provider::OpenAi => &p.openai,
            Provider::Anthropic => &p.anthropic,
            Provider::Ollama => &p.ollama,
            Provider::Azure => &p.azure,
            Provider::OpenAiCompatible => &p.openai_compatible,
        }
    }

    fn tool(&self, name: &str) -> &ToolCounters {
        self.tools.get(name).unwrap_or(&self.other_tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crew::output::UsageMetrics;
    use serde_json::json;

    fn llm_completed(model: &str, prompt: u64, completion: u64) -> RuntimeEvent {
        RuntimeEvent::LlmCompleted {
            call_id: "c".into(),
            agent_role: "r".into(),
            model: model.into(),
            response: String::new(),
            usage: UsageMetrics {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                ..UsageMetrics::default()
            },
        }
    }

    fn tool_failed(name: &str) -> RuntimeEvent {
        RuntimeEvent::ToolFailed {
            task_id: "t".into(),
            agent_role: "r".into(),
            tool_name: name.into(),
            tool_args: json!({}),
            error: "no".into(),
        }
    }

    #[test]
    fn llm_calls_count_by_provider_and_tools_by_known_name() {
        let registry = Registry::new();
        let metrics = RunMetrics::new(&registry, ["calculator"]);
        metrics.observe(&llm_completed("anthropic/claude-3-5-haiku", 10, 3));
        metrics.observe(&llm_completed("gpt-4o-mini", 5, 1));
        metrics.observe(&RuntimeEvent::LlmFailed {
            call_id: "c".into(),
            agent_role: "r".into(),
            model: "openai/gpt-4o".into(),
            error: "boom".into(),
        });
        metrics.observe(&tool_failed("calculator"));
        metrics.observe(&tool_failed("a tool the model made up"));
        let anthropic = metrics.provider("anthropic/x");
        assert_eq!(anthropic.completed.get(), 1);
        assert_eq!(anthropic.prompt_tokens.get(), 10);
        assert_eq!(anthropic.completion_tokens.get(), 3);
        let openai = metrics.provider("gpt-4o");
        assert_eq!((openai.completed.get(), openai.failed.get()), (1, 1));
        assert_eq!(metrics.tool("calculator").failed.get(), 1);
        assert_eq!(metrics.other_tool.failed.get(), 1);
        let families = registry.gather();
        let tool_family = families
            .iter()
            .find(|f| f.name() == "crewgraph_tool_calls_total")
            .expect("tool family");
        for metric in tool_family.get_metric() {
            for label in metric.get_label() {
                assert!(
                    label.value() != "a tool the model made up",
                    "an unknown tool name is never a label"
                );
            }
        }
    }

    #[test]
    fn ends_count_by_status_and_a_bounded_code() {
        let registry = Registry::new();
        let metrics = ExecutionMetrics::new(&registry);
        metrics.finished(&Outcome::failed("task_failed", "x"));
        metrics.finished(&Outcome::cancelled("asked"));
        metrics.finished_as(Status::Failed, "not a code!", 2);
        let get =
            |status: &str, code: &str| metrics.finished.with_label_values(&[status, code]).get();
        assert_eq!(get("failed", "task_failed"), 1);
        assert_eq!(get("cancelled", "cancelled"), 1);
        assert_eq!(get("failed", "other"), 2);
    }
}
