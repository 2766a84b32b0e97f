//! Validation of a graph document: graph-shape rules plus the rules CrewAI 0.121.1 itself
//! enforces when a crew is built (crewai-reference.md §1–§3). Every problem is collected;
//! when there is no error the ordered plan is returned too.

use serde_json::{Map, Value};

use crate::graph::document::{self, Node, NodeKind};
use crate::graph::field_checks::{FieldContext, check_node_data};
use crate::graph::placeholders;
pub use crate::graph::plan::{Plan, PlannedAgent, PlannedTask, Process};
use crate::graph::plan::{order_tasks, plan_agents, plan_tasks};
use crate::graph::plan_rules::{check_async_rules, check_context, check_isolated, check_manager};
use crate::graph::problems::{Problem, Problems, has_errors};
use crate::graph::shape::{check_crew_nodes, check_edges, check_ids};
use crate::outbound::{OutboundPolicy, check_llm_node_base_url};

pub struct Validation {
    pub problems: Problems,
    pub plan: Option<Plan>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        !has_errors(&self.problems)
    }
}

/// Validates a document. `tool_exists` says whether a tool name is in the tool repository;
/// `llm_hosts` is the deployment's policy for LLM base URLs.
pub fn validate(
    value: &Value,
    tool_exists: &dyn Fn(&str) -> bool,
    llm_hosts: &OutboundPolicy,
) -> Validation {
    let mut problems = Problems::new();
    let document = document::read(value, &mut problems);
    check_ids(&document, &mut problems);
    let crew = check_crew_nodes(&document, &mut problems);
    let edges = check_edges(&document, &mut problems);
    let context = FieldContext { tool_exists };
    for node in &document.nodes {
        check_node_data(node, &context, &mut problems);
        check_llm_node_base_url(node, llm_hosts, &mut problems);
    }
    let process = match crew.and_then(|c| c.fields().text("process")) {
        Some("hierarchical") => Process::Hierarchical,
        _ => Process::Sequential,
    };
    let order = order_tasks(&document, &edges, &mut problems);
    let tasks = plan_tasks(&document, &edges, &order, process, &mut problems);
    if process == Process::Hierarchical {
        check_manager(&edges, crew, &mut problems);
    }
    check_context(&document, &edges, &mut problems);
    check_async_rules(&tasks, &document, &mut problems);
    check_isolated(&document, &edges, process, &mut problems);
    if document.nodes.iter().all(|n| n.kind != NodeKind::Task) {
        problems.push(Problem::error("no_task", "a crew needs at least one task"));
    }
    let plan = (!has_errors(&problems)).then(|| Plan {
        process,
        agents: plan_agents(&document, &edges),
        manager_llm_node: crew
            .and_then(|c| edges.llms_of.get(&c.id))
            .and_then(|llms| llms.first().cloned()),
        tasks,
        inputs: placeholders::required_inputs(&document),
    });
    Validation { problems, plan }
}

/// Validates one node's `data` alone (the front end's form check).
pub fn validate_node(
    kind: NodeKind,
    id: &str,
    data: Map<String, Value>,
    tool_exists: &dyn Fn(&str) -> bool,
    llm_hosts: &OutboundPolicy,
) -> Problems {
    let node = Node {
        id: id.to_string(),
        kind,
        y: 0.0,
        data,
    };
    let mut problems = Problems::new();
    check_node_data(&node, &FieldContext { tool_exists }, &mut problems);
    check_llm_node_base_url(&node, llm_hosts, &mut problems);
    problems
}
