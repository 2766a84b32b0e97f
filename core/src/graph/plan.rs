//! The plan of a graph: its tasks in execution order with their agent, context and tools,
//! and its agents with their tools and model.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::graph::document::{Document, Node, NodeKind};
use crate::graph::problems::{Problem, Problems};
use crate::graph::shape::Edges;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    Sequential,
    Hierarchical,
}

/// What a valid graph will run: tasks in execution order with their agent, context,
/// tools, and the kickoff inputs the graph needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub process: Process,
    /// Every agent of the crew, in document order.
    pub agents: Vec<PlannedAgent>,
    pub tasks: Vec<PlannedTask>,
    /// The llm node configuring the manager (hierarchical), if one is linked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_llm_node: Option<String>,
    /// `{placeholder}` names the kickoff inputs must provide, sorted.
    pub inputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedAgent {
    pub node_id: String,
    /// Tool names from tool → agent edges.
    pub tools: Vec<String>,
    /// The llm node linked to the agent, if any (else its inline `llm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedTask {
    pub node_id: String,
    pub name: Option<String>,
    /// The agent node performing it (`None` only in hierarchical crews: the manager delegates).
    pub agent: Option<String>,
    /// Explicit context tasks (task → task edges, in the order of the document's edges;
    /// empty for `no_context`), or `None` for CrewAI's default context (the outputs of
    /// every earlier task).
    pub context: Option<Vec<String>>,
    /// Tool names available to the task (its own tool edges, else its agent's).
    pub tools: Vec<String>,
    pub async_execution: bool,
}

pub(crate) fn tool_names(document: &Document, tool_nodes: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in tool_nodes
        .iter()
        .filter_map(|t| document.node(t))
        .filter_map(|t| t.fields().text("tool"))
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

pub(crate) fn plan_agents(document: &Document, edges: &Edges) -> Vec<PlannedAgent> {
    document
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Agent)
        .map(|agent| PlannedAgent {
            node_id: agent.id.clone(),
            tools: tool_names(
                document,
                edges
                    .tools_of
                    .get(&agent.id)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            ),
            llm_node: edges
                .llms_of
                .get(&agent.id)
                .and_then(|llms| llms.first().cloned()),
        })
        .collect()
}

/// Topological order of task → task edges; ties by `data.order`, then vertical position,
/// then id, so the same document always gives the same order.
pub(crate) fn order_tasks(
    document: &Document,
    edges: &Edges,
    problems: &mut Problems,
) -> Vec<String> {
    let tasks: Vec<&Node> = document
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Task)
        .collect();
    let key = |node: &Node| {
        let order = node.fields().number("order").unwrap_or(f64::MAX);
        (OrderedF64(order), OrderedF64(node.y), node.id.clone())
    };
    let mut incoming: HashMap<&str, usize> = tasks.iter().map(|t| (t.id.as_str(), 0)).collect();
    let mut outgoing: HashMap<&str, Vec<&str>> = HashMap::new();
    for (target, sources) in &edges.context_of_task {
        for source in sources {
            *incoming.entry(target.as_str()).or_default() += 1;
            outgoing
                .entry(source.as_str())
                .or_default()
                .push(target.as_str());
        }
    }
    let by_id: HashMap<&str, &Node> = tasks.iter().map(|t| (t.id.as_str(), *t)).collect();
    let mut ready: BTreeSet<(OrderedF64, OrderedF64, String)> = tasks
        .iter()
        .filter(|t| incoming.get(t.id.as_str()) == Some(&0))
        .map(|t| key(t))
        .collect();
    let mut order = Vec::new();
    let mut placed: HashSet<String> = HashSet::new();
    while let Some(next) = ready.pop_first() {
        let id = next.2.clone();
        // Two nodes with one id (reported by the shape checks) are placed once.
        if !placed.insert(id.clone()) {
            continue;
        }
        for target in outgoing.get(id.as_str()).into_iter().flatten() {
            if let Some(count) = incoming.get_mut(target) {
                *count = count.saturating_sub(1);
                if *count == 0
                    && let Some(node) = by_id.get(target)
                {
                    ready.insert(key(node));
                }
            }
        }
        order.push(id);
    }
    if order.len() < tasks.len() {
        let mut stuck: Vec<&str> = tasks
            .iter()
            .map(|t| t.id.as_str())
            .filter(|id| !order.iter().any(|o| o == id))
            .collect();
        stuck.sort_unstable();
        for id in stuck {
            problems.push(
                Problem::error(
                    "task_context_cycle",
                    "task context edges form a cycle through this task",
                )
                .node(id),
            );
        }
    }
    order
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedF64(f64);

impl Eq for OrderedF64 {}

impl PartialOrd for OrderedF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

pub(crate) fn plan_tasks(
    document: &Document,
    edges: &Edges,
    order: &[String],
    process: Process,
    problems: &mut Problems,
) -> Vec<PlannedTask> {
    let mut tasks = Vec::new();
    for id in order {
        let Some(node) = document.node(id) else {
            continue;
        };
        let agents = edges.agents_of_task.get(id).cloned().unwrap_or_default();
        if agents.len() > 1 {
            problems.push(
                Problem::error(
                    "multiple_agents_for_task",
                    "a task is performed by exactly one agent",
                )
                .node(id),
            );
        }
        let fields = node.fields();
        let description = fields.text("description").unwrap_or_default();
        if agents.is_empty() && process == Process::Sequential {
            problems.push(
                Problem::error(
                    "missing_agent_in_task",
                    format!(
                        "Sequential process error: Agent is missing in the task with the following description: {description}"
                    ),
                )
                .node(id),
            );
        }
        let agent = agents.first().cloned();
        let own_tools = edges.tools_of.get(id).cloned().unwrap_or_default();
        let tool_nodes = if own_tools.is_empty() {
            agent
                .as_ref()
                .and_then(|a| edges.tools_of.get(a))
                .cloned()
                .unwrap_or_default()
        } else {
            own_tools
        };
        let tools = tool_names(document, &tool_nodes);
        // CrewAI joins an explicit context in the author's order: that of the edges.
        let context = if fields.flag("no_context") {
            Some(Vec::new())
        } else {
            edges.context_of_task.get(id).cloned()
        };
        tasks.push(PlannedTask {
            node_id: id.clone(),
            name: fields.text("name").map(str::to_string),
            agent,
            context,
            tools,
            async_execution: fields.flag("async_execution"),
        });
    }
    tasks
}
