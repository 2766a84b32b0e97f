//! CrewAI's crew rules checked against the plan: a manager for hierarchical crews, the
//! async task rules, and nodes connected to nothing.

use crate::graph::document::{Document, Node, NodeKind};
use crate::graph::plan::{PlannedTask, Process};
use crate::graph::problems::{Problem, Problems};
use crate::graph::shape::Edges;

/// CrewAI: "Attribute `manager_llm` or `manager_agent` is required when using hierarchical process."
pub(crate) fn check_manager(edges: &Edges, crew: Option<&Node>, problems: &mut Problems) {
    let inline = crew.is_some_and(|c| c.fields().text("manager_llm").is_some());
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

/// A task's context against its `no_context` flag and the author's `order` (CrewAI's
/// `validate_context_no_future_tasks`: an explicit order is not silently overridden).
pub(crate) fn check_context(document: &Document, edges: &Edges, problems: &mut Problems) {
    for task in document.nodes.iter().filter(|n| n.kind == NodeKind::Task) {
        let Some(sources) = edges.context_of_task.get(&task.id) else {
            continue;
        };
        let fields = task.fields();
        if fields.flag("no_context") {
            problems.push(
                Problem::error(
                    "conflicting_context",
                    "`no_context` says this task takes no context, but task → task edges give it some: remove one or the other",
                )
                .node(&task.id)
                .field("no_context"),
            );
        }
        let Some(order) = fields.number("order") else {
            continue;
        };
        for source in sources.iter().filter_map(|id| document.node(id)) {
            if source.fields().number("order").is_some_and(|o| o > order) {
                problems.push(
                    Problem::error(
                        "context_on_future_task",
                        format!(
                            "Task '{}' has a context dependency on a future task '{}', which is not allowed.",
                            fields.text("description").unwrap_or_default(),
                            source.fields().text("description").unwrap_or_default()
                        ),
                    )
                    .node(&task.id)
                    .field("order"),
                );
            }
        }
    }
}

pub(crate) fn check_async_rules(
    tasks: &[PlannedTask],
    document: &Document,
    problems: &mut Problems,
) {
    let description = |id: &str| {
        document
            .node(id)
            .and_then(|n| n.fields().text("description"))
            .unwrap_or_default()
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

pub(crate) fn check_isolated(
    document: &Document,
    edges: &Edges,
    process: Process,
    problems: &mut Problems,
) {
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
