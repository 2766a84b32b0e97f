//! Validation of a graph document: graph-shape rules plus the rules CrewAI 0.121.1 itself
//! enforces when a crew is built (crewai-reference.md §1–§3). Every problem is collected;
//! when there is no error the ordered plan is returned too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::graph::document::{self, Document, Node, NodeKind};
use crate::graph::placeholders;
use crate::graph::problems::{Problem, Problems, has_errors};
use crate::outbound::{OutboundPolicy, check_llm_node_base_url};

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
    /// Explicit context tasks (task → task edges), or `None` for CrewAI's default context
    /// (the outputs of every earlier task).
    pub context: Option<Vec<String>>,
    /// Tool names available to the task (its own tool edges, else its agent's).
    pub tools: Vec<String>,
    pub async_execution: bool,
}

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
    for node in &document.nodes {
        check_node_data(node, tool_exists, &mut problems);
        check_llm_node_base_url(node, llm_hosts, &mut problems);
    }
    let process = crew
        .and_then(|c| c.data.get("process"))
        .and_then(Value::as_str)
        .map(|p| {
            if p == "hierarchical" {
                Process::Hierarchical
            } else {
                Process::Sequential
            }
        })
        .unwrap_or(Process::Sequential);
    let order = order_tasks(&document, &edges, &mut problems);
    let tasks = plan_tasks(&document, &edges, &order, process, &mut problems);
    if process == Process::Hierarchical {
        check_manager(&edges, crew, &mut problems);
    }
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
    check_node_data(&node, tool_exists, &mut problems);
    check_llm_node_base_url(&node, llm_hosts, &mut problems);
    problems
}

fn tool_names(document: &Document, tool_nodes: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in tool_nodes
        .iter()
        .filter_map(|t| document.node(t))
        .filter_map(|t| t.data.get("tool").and_then(Value::as_str))
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

fn plan_agents(document: &Document, edges: &Edges) -> Vec<PlannedAgent> {
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

/// Edges that survived the checks, by meaning.
#[derive(Default)]
struct Edges {
    /// task id → agent ids
    agents_of_task: BTreeMap<String, Vec<String>>,
    /// task id → context task ids (sources of task → task edges)
    context_of_task: BTreeMap<String, Vec<String>>,
    /// agent or task id → tool node ids
    tools_of: BTreeMap<String, Vec<String>>,
    /// agent or crew id → llm node ids
    llms_of: BTreeMap<String, Vec<String>>,
    /// nodes that take part in at least one edge
    connected: HashSet<String>,
}

fn check_ids(document: &Document, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for node in &document.nodes {
        if !seen.insert(node.id.as_str()) {
            problems.push(
                Problem::error(
                    "duplicate_node_id",
                    format!("two nodes have the id `{}`", node.id),
                )
                .node(&node.id),
            );
        }
    }
    let mut seen = HashSet::new();
    for edge in &document.edges {
        if !seen.insert(edge.id.as_str()) {
            problems.push(
                Problem::error(
                    "duplicate_edge_id",
                    format!("two edges have the id `{}`", edge.id),
                )
                .edge(&edge.id),
            );
        }
    }
}

fn check_crew_nodes<'a>(document: &'a Document, problems: &mut Problems) -> Option<&'a Node> {
    let crews: Vec<&Node> = document
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Crew)
        .collect();
    for extra in crews.iter().skip(1) {
        problems.push(
            Problem::error("multiple_crew_nodes", "a graph has at most one crew node")
                .node(&extra.id),
        );
    }
    crews.first().copied()
}

fn check_edges(document: &Document, problems: &mut Problems) -> Edges {
    let kinds: HashMap<&str, NodeKind> = document
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.kind))
        .collect();
    let mut edges = Edges::default();
    let mut pairs = HashSet::new();
    for edge in &document.edges {
        let (Some(&source), Some(&target)) = (
            kinds.get(edge.source.as_str()),
            kinds.get(edge.target.as_str()),
        ) else {
            let missing = if kinds.contains_key(edge.source.as_str()) {
                &edge.target
            } else {
                &edge.source
            };
            problems.push(
                Problem::error(
                    "dangling_edge",
                    format!("the edge points to `{missing}`, which is not a node"),
                )
                .edge(&edge.id),
            );
            continue;
        };
        if edge.source == edge.target {
            problems.push(
                Problem::error("self_loop", "an edge cannot connect a node to itself")
                    .edge(&edge.id),
            );
            continue;
        }
        if !pairs.insert((edge.source.as_str(), edge.target.as_str())) {
            problems.push(
                Problem::warning(
                    "duplicate_edge",
                    "this edge repeats another between the same nodes",
                )
                .edge(&edge.id),
            );
            continue;
        }
        let (s, t) = (edge.source.clone(), edge.target.clone());
        match (source, target) {
            (NodeKind::Agent, NodeKind::Task) => edges
                .agents_of_task
                .entry(t.clone())
                .or_default()
                .push(s.clone()),
            (NodeKind::Task, NodeKind::Task) => edges
                .context_of_task
                .entry(t.clone())
                .or_default()
                .push(s.clone()),
            (NodeKind::Tool, NodeKind::Agent | NodeKind::Task) => {
                edges.tools_of.entry(t.clone()).or_default().push(s.clone())
            }
            (NodeKind::Llm, NodeKind::Agent | NodeKind::Crew) => {
                edges.llms_of.entry(t.clone()).or_default().push(s.clone())
            }
            _ => {
                problems.push(
                    Problem::error(
                        "meaningless_edge",
                        format!(
                            "an edge from a {} to a {} means nothing; edges go agent → task, task → task, \
                             tool → agent/task, llm → agent/crew",
                            source.as_str(),
                            target.as_str()
                        ),
                    )
                    .edge(&edge.id),
                );
                continue;
            }
        }
        edges.connected.insert(s);
        edges.connected.insert(t);
    }
    for (target, llms) in &edges.llms_of {
        if llms.len() > 1 {
            problems.push(
                Problem::error(
                    "multiple_llms",
                    "only one llm node can configure an agent or the crew",
                )
                .node(target),
            );
        }
    }
    edges
}

/// Field checks per node kind, with CrewAI's messages where CrewAI has one.
fn check_node_data(node: &Node, tool_exists: &dyn Fn(&str) -> bool, problems: &mut Problems) {
    let mut fields = FieldChecker { node, problems };
    match node.kind {
        NodeKind::Agent => {
            for field in ["role", "goal", "backstory"] {
                fields.required_text(field);
            }
            fields.optional_text("llm");
            fields.one_of("tool_calling", &["react", "native"]);
            fields.positive_int("max_iter");
            fields.positive_int("max_rpm");
            fields.positive_int("max_retry_limit");
            if let Some(value) = node.data.get("max_execution_time")
                && !value.is_null()
                && value.as_u64().is_none_or(|v| v == 0)
            {
                fields.problems.push(
                    Problem::error(
                        "invalid_max_execution_time",
                        "Max Execution time must be a positive integer greater than zero",
                    )
                    .node(&node.id)
                    .field("max_execution_time"),
                );
            }
            for flag in [
                "allow_delegation",
                "verbose",
                "use_system_prompt",
                "respect_context_window",
                "cache",
            ] {
                fields.optional_bool(flag);
            }
        }
        NodeKind::Task => {
            fields.required_text("description");
            fields.required_text("expected_output");
            fields.optional_text("name");
            fields.optional_bool("async_execution");
            fields.optional_bool("markdown");
            if let Some(Value::String(path)) = node.data.get("output_file") {
                if let Err(message) = check_output_file(path) {
                    fields.problems.push(
                        Problem::error("invalid_output_file", message)
                            .node(&node.id)
                            .field("output_file"),
                    );
                }
            } else {
                fields.optional_text("output_file");
            }
            if let Some(order) = node.data.get("order")
                && !order.is_null()
                && !order.is_number()
            {
                fields.invalid("order", "`order` must be a number");
            }
        }
        NodeKind::Tool => {
            if let Some(name) = fields.required_text("tool")
                && !tool_exists(&name)
            {
                fields.problems.push(
                    Problem::error(
                        "unknown_tool",
                        format!("there is no tool named `{name}` in the tool repository"),
                    )
                    .node(&node.id)
                    .field("tool"),
                );
            }
        }
        NodeKind::Llm => {
            fields.required_text("model");
            fields.optional_text("base_url");
            if let Some(Value::String(url)) = node.data.get("base_url")
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                fields.invalid("base_url", "`base_url` must be an http:// or https:// URL");
            }
            if let Some(value) = node.data.get("api_key_id")
                && !value.is_null()
                && value
                    .as_str()
                    .is_none_or(|id| uuid::Uuid::parse_str(id).is_err())
            {
                fields.invalid(
                    "api_key_id",
                    "`api_key_id` must be the id of a stored API key",
                );
            }
            fields.number_in("temperature", 0.0, 2.0);
            fields.number_in("top_p", 0.0, 1.0);
            fields.number_in("timeout", 0.001, 3600.0);
            fields.positive_int("max_tokens");
            fields.optional_bool("stream");
        }
        NodeKind::Crew => {
            if let Some(process) = node.data.get("process")
                && !process.is_null()
                && !matches!(process.as_str(), Some("sequential" | "hierarchical"))
            {
                fields.invalid(
                    "process",
                    "`process` must be `sequential` or `hierarchical`",
                );
            }
            fields.optional_text("manager_llm");
            fields.positive_int("max_rpm");
        }
    }
}

struct FieldChecker<'a> {
    node: &'a Node,
    problems: &'a mut Problems,
}

impl FieldChecker<'_> {
    fn data(&self) -> &Map<String, Value> {
        &self.node.data
    }

    fn invalid(&mut self, field: &str, message: &str) {
        self.problems.push(
            Problem::error("invalid_field", message)
                .node(&self.node.id)
                .field(field),
        );
    }

    /// CrewAI: "{field} must be provided either directly or through config".
    fn required_text(&mut self, field: &str) -> Option<String> {
        match self.data().get(field) {
            Some(Value::String(text)) if !text.trim().is_empty() => Some(text.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.problems.push(
                    Problem::error(
                        "missing_field",
                        format!("{field} must be provided either directly or through config"),
                    )
                    .node(&self.node.id)
                    .field(field),
                );
                None
            }
            Some(_) => {
                self.invalid(field, &format!("`{field}` must be text"));
                None
            }
        }
    }

    fn optional_text(&mut self, field: &str) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.is_string()
        {
            self.invalid(field, &format!("`{field}` must be text"));
        }
    }

    fn optional_bool(&mut self, field: &str) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.is_boolean()
        {
            self.invalid(field, &format!("`{field}` must be true or false"));
        }
    }

    fn one_of(&mut self, field: &str, allowed: &[&str]) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.as_str().is_some_and(|v| allowed.contains(&v))
        {
            self.invalid(
                field,
                &format!("`{field}` must be one of: {}", allowed.join(", ")),
            );
        }
    }

    fn number_in(&mut self, field: &str, min: f64, max: f64) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.as_f64().is_some_and(|v| (min..=max).contains(&v))
        {
            self.invalid(
                field,
                &format!("`{field}` must be a number from {min} to {max}"),
            );
        }
    }

    fn positive_int(&mut self, field: &str) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && value.as_u64().is_none_or(|v| v == 0)
        {
            self.invalid(
                field,
                &format!("`{field}` must be a whole number greater than zero"),
            );
        }
    }
}

/// CrewAI's `output_file` validator (crewai-reference.md §2).
fn check_output_file(path: &str) -> Result<(), String> {
    if path.contains("..") {
        return Err("Path traversal attempts are not allowed in output_file paths".into());
    }
    if path.starts_with('~') || path.starts_with('$') {
        return Err("Shell expansion characters are not allowed in output_file paths".into());
    }
    if path.contains(['|', '>', '<', '&', ';']) {
        return Err("Shell special characters are not allowed in output_file paths".into());
    }
    for part in path.split('{').skip(1) {
        if let Some((var, _)) = part.split_once('}')
            && !placeholders::is_identifier(var)
        {
            return Err(format!("Invalid template variable name: {var}"));
        }
    }
    Ok(())
}

/// Topological order of task → task edges; ties by `data.order`, then vertical position,
/// then id, so the same document always gives the same order.
fn order_tasks(document: &Document, edges: &Edges, problems: &mut Problems) -> Vec<String> {
    let tasks: Vec<&Node> = document
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Task)
        .collect();
    let key = |node: &Node| {
        let order = node
            .data
            .get("order")
            .and_then(Value::as_f64)
            .unwrap_or(f64::MAX);
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
    while let Some(next) = ready.pop_first() {
        let id = next.2.clone();
        for target in outgoing.get(id.as_str()).into_iter().flatten() {
            if let Some(count) = incoming.get_mut(target) {
                *count -= 1;
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

fn plan_tasks(
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
        let description = node
            .data
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
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
        let context = edges.context_of_task.get(id).map(|sources| {
            order
                .iter()
                .filter(|o| sources.contains(o))
                .cloned()
                .collect::<Vec<_>>()
        });
        tasks.push(PlannedTask {
            node_id: id.clone(),
            name: node
                .data
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
            agent,
            context,
            tools,
            async_execution: node
                .data
                .get("async_execution")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
    tasks
}

/// CrewAI: "Attribute `manager_llm` or `manager_agent` is required when using hierarchical process."
fn check_manager(edges: &Edges, crew: Option<&Node>, problems: &mut Problems) {
    let inline = crew
        .and_then(|c| c.data.get("manager_llm"))
        .and_then(Value::as_str)
        .is_some_and(|m| !m.trim().is_empty());
    let linked = crew.is_some_and(|c| edges.llms_of.contains_key(&c.id));
    if !inline && !linked {
        let mut problem = Problem::error(
            "missing_manager_llm",
            "Attribute `manager_llm` or `manager_agent` is required when using hierarchical process.",
        );
        if let Some(crew) = crew {
            problem = problem.node(&crew.id).field("manager_llm");
        }
        problems.push(problem);
    }
}

fn check_async_rules(tasks: &[PlannedTask], document: &Document, problems: &mut Problems) {
    let description = |id: &str| {
        document
            .node(id)
            .and_then(|n| n.data.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let trailing_async = tasks.iter().rev().take_while(|t| t.async_execution).count();
    if trailing_async > 1 {
        problems.push(Problem::error(
            "async_task_count",
            "The crew must end with at most one asynchronous task.",
        ));
    }
    // An async task may not take context from the run of async tasks right before it.
    for (index, task) in tasks.iter().enumerate() {
        if !task.async_execution {
            continue;
        }
        let run: Vec<&str> = tasks[..index]
            .iter()
            .rev()
            .take_while(|t| t.async_execution)
            .map(|t| t.node_id.as_str())
            .collect();
        if task
            .context
            .iter()
            .flatten()
            .any(|c| run.contains(&c.as_str()))
        {
            problems.push(
                Problem::error(
                    "async_context_sequential",
                    format!(
                        "Task '{}' is asynchronous and cannot include other sequential asynchronous tasks in its context.",
                        description(&task.node_id)
                    ),
                )
                .node(&task.node_id),
            );
        }
    }
}

fn check_isolated(document: &Document, edges: &Edges, process: Process, problems: &mut Problems) {
    for node in &document.nodes {
        if node.kind == NodeKind::Crew || edges.connected.contains(&node.id) {
            continue;
        }
        // In a hierarchical crew every agent is on the manager's team and tasks need no
        // agent, so neither is idle without edges; a lone tool or llm does nothing.
        if process == Process::Hierarchical && matches!(node.kind, NodeKind::Agent | NodeKind::Task)
        {
            continue;
        }
        problems.push(
            Problem::warning(
                "isolated_node",
                format!("this {} is not connected to anything", node.kind.as_str()),
            )
            .node(&node.id),
        );
    }
}
