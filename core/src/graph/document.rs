//! The graph document (DESIGN §2): React Flow style JSON, read leniently so that every
//! structural problem is reported with its JSON path instead of failing at the first.

use serde_json::{Map, Value};

use crate::graph::fields::FieldReader;
use crate::graph::problems::{Problem, Problems};

/// Limits that keep validation and storage cheap whatever a client sends.
pub const MAX_NODES: usize = 500;
pub const MAX_EDGES: usize = 2_000;
pub const MAX_ID_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    Agent,
    Task,
    Tool,
    Llm,
    Crew,
}

impl NodeKind {
    pub const ALL: [NodeKind; 5] = [
        NodeKind::Agent,
        NodeKind::Task,
        NodeKind::Tool,
        NodeKind::Llm,
        NodeKind::Crew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Agent => "agent",
            NodeKind::Task => "task",
            NodeKind::Tool => "tool",
            NodeKind::Llm => "llm",
            NodeKind::Crew => "crew",
        }
    }

    pub fn parse(value: &str) -> Option<NodeKind> {
        NodeKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    /// Vertical position, used to break ties in task order.
    pub y: f64,
    /// The node's `data` object (fields checked per kind by validation).
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
}

/// A document with every node and edge that could be read; what could not be read is
/// in the problems returned beside it.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Node {
    /// The node's `data`, read through its field descriptors.
    pub fn fields(&self) -> FieldReader<'_> {
        FieldReader::new(self.kind, &self.data)
    }
}

impl Document {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// Reads a document, collecting structural problems (`$.nodes[3].id`, ...).
pub fn read(value: &Value, problems: &mut Problems) -> Document {
    let mut document = Document::default();
    let Some(root) = value.as_object() else {
        problems.push(
            Problem::error(
                "invalid_document",
                "the graph document must be a JSON object",
            )
            .at_path("$"),
        );
        return document;
    };
    let nodes = array_field(root, "nodes", "$", problems);
    let edges = array_field(root, "edges", "$", problems);
    if nodes.len() > MAX_NODES {
        problems.push(
            Problem::error(
                "too_many_nodes",
                format!(
                    "a graph may have at most {MAX_NODES} nodes, this one has {}",
                    nodes.len()
                ),
            )
            .at_path("$.nodes"),
        );
    }
    if edges.len() > MAX_EDGES {
        problems.push(
            Problem::error(
                "too_many_edges",
                format!(
                    "a graph may have at most {MAX_EDGES} edges, this one has {}",
                    edges.len()
                ),
            )
            .at_path("$.edges"),
        );
    }
    for (index, raw) in nodes.iter().take(MAX_NODES).enumerate() {
        let path = format!("$.nodes[{index}]");
        if let Some(node) = read_node(raw, &path, problems) {
            document.nodes.push(node);
        }
    }
    for (index, raw) in edges.iter().take(MAX_EDGES).enumerate() {
        let path = format!("$.edges[{index}]");
        if let Some(edge) = read_edge(raw, &path, problems) {
            document.edges.push(edge);
        }
    }
    document
}

fn array_field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    path: &str,
    problems: &mut Problems,
) -> &'a [Value] {
    match object.get(name) {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => &[],
        Some(_) => {
            problems.push(
                Problem::error("invalid_document", format!("`{name}` must be an array"))
                    .at_path(format!("{path}.{name}")),
            );
            &[]
        }
    }
}

fn read_id(object: &Map<String, Value>, path: &str, problems: &mut Problems) -> Option<String> {
    match object.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() && id.chars().count() <= MAX_ID_CHARS => {
            Some(id.clone())
        }
        Some(Value::String(_)) => {
            problems.push(
                Problem::error(
                    "invalid_id",
                    format!("ids must have 1 to {MAX_ID_CHARS} characters"),
                )
                .at_path(format!("{path}.id")),
            );
            None
        }
        _ => {
            problems.push(
                Problem::error("invalid_id", "`id` must be a string").at_path(format!("{path}.id")),
            );
            None
        }
    }
}

fn read_node(raw: &Value, path: &str, problems: &mut Problems) -> Option<Node> {
    let Some(object) = raw.as_object() else {
        problems
            .push(Problem::error("invalid_document", "a node must be a JSON object").at_path(path));
        return None;
    };
    let id = read_id(object, path, problems)?;
    let kind = match object.get("type") {
        Some(Value::String(kind)) => match NodeKind::parse(kind) {
            Some(kind) => kind,
            None => {
                problems.push(
                    Problem::error(
                        "unknown_node_type",
                        format!("unknown node type `{kind}`: use agent, task, tool, llm or crew"),
                    )
                    .node(&id)
                    .at_path(format!("{path}.type")),
                );
                return None;
            }
        },
        _ => {
            problems.push(
                Problem::error(
                    "unknown_node_type",
                    "`type` must be one of agent, task, tool, llm, crew",
                )
                .node(&id)
                .at_path(format!("{path}.type")),
            );
            return None;
        }
    };
    let data = match object.get("data") {
        Some(Value::Object(data)) => data.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            problems.push(
                Problem::error("invalid_document", "`data` must be an object")
                    .node(&id)
                    .at_path(format!("{path}.data")),
            );
            Map::new()
        }
    };
    let y = object
        .get("position")
        .and_then(|p| p.get("y"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Some(Node { id, kind, y, data })
}

fn read_edge(raw: &Value, path: &str, problems: &mut Problems) -> Option<Edge> {
    let Some(object) = raw.as_object() else {
        problems.push(
            Problem::error("invalid_document", "an edge must be a JSON object").at_path(path),
        );
        return None;
    };
    let id = read_id(object, path, problems)?;
    let end = |name: &str, problems: &mut Problems| match object.get(name) {
        Some(Value::String(node)) if !node.is_empty() => Some(node.clone()),
        _ => {
            problems.push(
                Problem::error("invalid_edge", format!("`{name}` must be a node id"))
                    .edge(&id)
                    .at_path(format!("{path}.{name}")),
            );
            None
        }
    };
    let source = end("source", problems);
    let target = end("target", problems);
    Some(Edge {
        id: id.clone(),
        source: source?,
        target: target?,
    })
}
