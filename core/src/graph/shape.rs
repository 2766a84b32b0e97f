//! Shape checks of a read document: unique ids, at most one crew node, and edges whose
//! (source type → target type) means something, sorted by that meaning.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::graph::document::{Document, Node, NodeKind};
use crate::graph::problems::{Problem, Problems};

/// Edges that survived the checks, by meaning.
#[derive(Default)]
pub(crate) struct Edges {
    /// task id → agent ids
    pub agents_of_task: BTreeMap<String, Vec<String>>,
    /// task id → context task ids (sources of task → task edges, in the document's order)
    pub context_of_task: BTreeMap<String, Vec<String>>,
    /// agent or task id → tool node ids
    pub tools_of: BTreeMap<String, Vec<String>>,
    /// agent or crew id → llm node ids
    pub llms_of: BTreeMap<String, Vec<String>>,
    /// nodes that take part in at least one edge
    pub connected: HashSet<String>,
}

pub(crate) fn check_ids(document: &Document, problems: &mut Problems) {
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

pub(crate) fn check_crew_nodes<'a>(
    document: &'a Document,
    problems: &mut Problems,
) -> Option<&'a Node> {
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

pub(crate) fn check_edges(document: &Document, problems: &mut Problems) -> Edges {
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
