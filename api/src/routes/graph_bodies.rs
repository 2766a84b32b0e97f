//! Request and response bodies shared by the graph, validation and template routes.

use chrono::{DateTime, Utc};
use crewgraph_core::graph::problems::{Problem, Severity};
use crewgraph_core::graph::validate::{Plan, PlannedAgent, PlannedTask, Process, Validation};
use crewgraph_core::graphs::Graph;
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object};
use serde_json::{Value, json};
use uuid::Uuid;

/// A small valid graph: one agent, one task, the hello_world tool.
pub fn example_document() -> Value {
    json!({
        "nodes": [
            {"id": "greeter", "type": "agent", "position": {"x": 0, "y": 0},
             "data": {"role": "Friendly Greeter", "goal": "Greet people by name",
                      "backstory": "You always use the hello_world tool.", "llm": "openai/gpt-4o-mini"}},
            {"id": "hello", "type": "tool", "position": {"x": -250, "y": 0}, "data": {"tool": "hello_world"}},
            {"id": "greet", "type": "task", "position": {"x": 250, "y": 0},
             "data": {"description": "Greet {name} using the hello_world tool.",
                      "expected_output": "A warm greeting for {name}."}}
        ],
        "edges": [
            {"id": "e1", "source": "hello", "target": "greeter"},
            {"id": "e2", "source": "greeter", "target": "greet"}
        ]
    })
}

pub fn example_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_600_800, 0).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SeverityBody {
    /// Blocks execution.
    Error,
    /// Worth fixing; does not block execution.
    Warning,
}

/// One validation problem. `code` is stable (see docs/validation.md).
#[derive(Debug, Clone, Object)]
#[oai(rename = "Problem")]
pub struct ProblemBody {
    pub code: String,
    pub severity: SeverityBody,
    pub message: String,
    pub node_id: Option<String>,
    pub edge_id: Option<String>,
    /// The `data` field concerned.
    pub field: Option<String>,
    /// JSON path into the document, for problems of its shape.
    pub path: Option<String>,
}

impl From<&Problem> for ProblemBody {
    fn from(p: &Problem) -> Self {
        ProblemBody {
            code: p.code.to_string(),
            severity: match p.severity {
                Severity::Error => SeverityBody::Error,
                Severity::Warning => SeverityBody::Warning,
            },
            message: p.message.clone(),
            node_id: p.node_id.clone(),
            edge_id: p.edge_id.clone(),
            field: p.field.clone(),
            path: p.path.clone(),
        }
    }
}

/// Stored problems come back from the database as JSON.
pub fn problems_from_json(value: &Value) -> Vec<ProblemBody> {
    let Some(items) = value.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|p| {
            Some(ProblemBody {
                code: p.get("code")?.as_str()?.to_string(),
                severity: if p.get("severity").and_then(Value::as_str) == Some("warning") {
                    SeverityBody::Warning
                } else {
                    SeverityBody::Error
                },
                message: p.get("message")?.as_str()?.to_string(),
                node_id: text(p, "node_id"),
                edge_id: text(p, "edge_id"),
                field: text(p, "field"),
                path: text(p, "path"),
            })
        })
        .collect()
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ProcessBody {
    Sequential,
    Hierarchical,
}

#[derive(Debug, Clone, Object)]
#[oai(rename = "PlannedAgent")]
pub struct PlannedAgentBody {
    pub node_id: String,
    /// Tool names from tool → agent edges.
    pub tools: Vec<String>,
    /// The llm node linked to the agent (else its inline `llm` applies).
    pub llm_node: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename = "PlannedTask")]
pub struct PlannedTaskBody {
    pub node_id: String,
    pub name: Option<String>,
    /// The agent node performing it; absent in hierarchical crews (the manager delegates).
    pub agent: Option<String>,
    /// Explicit context tasks, in the author's order (the order of their edges); empty:
    /// no context (`no_context`, CrewAI's `context=[]`); absent: CrewAI's default (every
    /// earlier output).
    pub context: Option<Vec<String>>,
    /// Tools available to the task (its own, else its agent's).
    pub tools: Vec<String>,
    pub async_execution: bool,
}

/// What a valid graph will run.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Plan")]
pub struct PlanBody {
    pub process: ProcessBody,
    pub agents: Vec<PlannedAgentBody>,
    /// Tasks in execution order.
    pub tasks: Vec<PlannedTaskBody>,
    pub manager_llm_node: Option<String>,
    /// `{placeholders}` the kickoff inputs must provide, sorted.
    pub inputs: Vec<String>,
}

impl From<&Plan> for PlanBody {
    fn from(plan: &Plan) -> Self {
        PlanBody {
            process: match plan.process {
                Process::Sequential => ProcessBody::Sequential,
                Process::Hierarchical => ProcessBody::Hierarchical,
            },
            agents: plan.agents.iter().map(agent_body).collect(),
            tasks: plan.tasks.iter().map(task_body).collect(),
            manager_llm_node: plan.manager_llm_node.clone(),
            inputs: plan.inputs.clone(),
        }
    }
}

fn agent_body(agent: &PlannedAgent) -> PlannedAgentBody {
    PlannedAgentBody {
        node_id: agent.node_id.clone(),
        tools: agent.tools.clone(),
        llm_node: agent.llm_node.clone(),
    }
}

fn task_body(task: &PlannedTask) -> PlannedTaskBody {
    PlannedTaskBody {
        node_id: task.node_id.clone(),
        name: task.name.clone(),
        agent: task.agent.clone(),
        context: task.context.clone(),
        tools: task.tools.clone(),
        async_execution: task.async_execution,
    }
}

/// Every problem at once, and the plan when there is no error.
#[derive(Debug, Clone, Object)]
#[oai(rename = "ValidationResult", example)]
pub struct ValidationBody {
    /// No error (warnings allowed).
    pub valid: bool,
    pub problems: Vec<ProblemBody>,
    pub plan: Option<PlanBody>,
}

impl From<&Validation> for ValidationBody {
    fn from(v: &Validation) -> Self {
        ValidationBody {
            valid: v.is_valid(),
            problems: v.problems.iter().map(ProblemBody::from).collect(),
            plan: v.plan.as_ref().map(PlanBody::from),
        }
    }
}

impl Example for ValidationBody {
    fn example() -> Self {
        let validation = crewgraph_core::graph::validate::validate(
            &example_document(),
            &|t| t == "hello_world",
            &crewgraph_core::outbound::OutboundPolicy::default(),
        );
        ValidationBody::from(&validation)
    }
}

/// A stored graph.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Graph", example)]
pub struct GraphBody {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The graph document (React Flow style; see docs/graph-format.md).
    pub document: Value,
    /// Increases with every change of the document; send it back (or `If-Match`) to replace it.
    pub version: i32,
    /// No validation error: it can run.
    pub valid: bool,
    /// Its validation problems (drafts may have errors).
    pub problems: Vec<ProblemBody>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Graph> for GraphBody {
    fn from(g: Graph) -> Self {
        GraphBody {
            problems: problems_from_json(&g.problems),
            id: g.id,
            workspace_id: g.workspace_id,
            name: g.name,
            description: g.description,
            document: g.document,
            version: g.version,
            valid: g.valid,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

impl Example for GraphBody {
    fn example() -> Self {
        GraphBody {
            id: Uuid::from_u128(0x0193_5f7e_9d2e_7b3c_9d2e_4f60_1a2b_3c4d),
            workspace_id: Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            name: "Greeter".into(),
            description: None,
            document: example_document(),
            version: 3,
            valid: true,
            problems: vec![],
            created_at: example_time(),
            updated_at: example_time(),
        }
    }
}
