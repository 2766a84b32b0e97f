//! Compilation of a valid graph into the `CrewSpec` the runtime runs. Deterministic: the
//! same document always gives the same spec (task order comes from the plan).

use serde_json::{Map, Value};

use crate::crew::spec::{
    AgentSpec, CrewSpec, DEFAULT_MAX_ITER, DEFAULT_MAX_RETRY_LIMIT, DEFAULT_MODEL, LlmSpec,
    Process as SpecProcess, TaskContext, TaskSpec, ToolCalling,
};
use crate::graph::document::NodeKind;
use crate::graph::fields::FieldReader;
use crate::graph::problems::Problems;
use crate::graph::validate::{Plan, PlannedAgent, Process, validate};
use crate::outbound::OutboundPolicy;

/// Why a document cannot be compiled: its validation problems (errors among them).
#[derive(Debug)]
pub struct NotCompilable(pub Problems);

/// Validates and compiles in one step.
pub fn compile_document(
    document: &Value,
    tool_exists: &dyn Fn(&str) -> bool,
    llm_hosts: &OutboundPolicy,
) -> Result<(CrewSpec, Plan), NotCompilable> {
    let validation = validate(document, tool_exists, llm_hosts);
    match validation.plan {
        Some(plan) => Ok((compile(document, &plan), plan)),
        None => Err(NotCompilable(validation.problems)),
    }
}

/// Builds the spec of a document whose validation gave `plan`. Node fields are read through
/// their descriptors (`fields`), defaults included.
pub fn compile(document: &Value, plan: &Plan) -> CrewSpec {
    let nodes = node_data_by_id(document);
    let fields = |kind: NodeKind, id: &str| {
        FieldReader::new(kind, nodes.get(id).copied().unwrap_or(&*EMPTY))
    };
    let agents: Vec<AgentSpec> = plan
        .agents
        .iter()
        .map(|agent| {
            let llm = agent
                .llm_node
                .as_ref()
                .map(|llm_node| llm_spec(fields(NodeKind::Llm, llm_node)));
            agent_spec(agent, fields(NodeKind::Agent, &agent.node_id), llm)
        })
        .collect();
    let agent_index = |id: &str| plan.agents.iter().position(|a| a.node_id == id);
    let task_index = |id: &str| plan.tasks.iter().position(|t| t.node_id == id);
    let tasks = plan
        .tasks
        .iter()
        .map(|task| {
            let fields = fields(NodeKind::Task, &task.node_id);
            TaskSpec {
                id: task.node_id.clone(),
                name: task.name.clone(),
                description: text(fields, "description"),
                expected_output: text(fields, "expected_output"),
                agent: task.agent.as_deref().and_then(agent_index),
                context: match &task.context {
                    None => TaskContext::Default,
                    Some(ids) => {
                        TaskContext::Tasks(ids.iter().filter_map(|id| task_index(id)).collect())
                    }
                },
                tools: task.tools.clone(),
                async_execution: task.async_execution,
                markdown: fields.flag("markdown"),
            }
        })
        .collect();
    let crew = FieldReader::new(NodeKind::Crew, plan_crew_data(document));
    let manager_llm = match plan.process {
        Process::Sequential => None,
        Process::Hierarchical => Some(match &plan.manager_llm_node {
            Some(node) => llm_spec(fields(NodeKind::Llm, node)),
            None => LlmSpec::model(crew.text("manager_llm").unwrap_or(DEFAULT_MODEL)),
        }),
    };
    CrewSpec {
        name: crew.text("name").map(str::to_string),
        process: match plan.process {
            Process::Sequential => SpecProcess::Sequential,
            Process::Hierarchical => SpecProcess::Hierarchical,
        },
        agents,
        tasks,
        manager_llm,
        max_rpm: crew.count("max_rpm"),
        cache: crew.flag("cache"),
    }
}

/// An agent's spec; `llm` is its linked llm node's, else its inline `llm` (or the default).
fn agent_spec(agent: &PlannedAgent, fields: FieldReader<'_>, llm: Option<LlmSpec>) -> AgentSpec {
    AgentSpec {
        id: agent.node_id.clone(),
        role: text(fields, "role"),
        goal: text(fields, "goal"),
        backstory: text(fields, "backstory"),
        llm: llm.unwrap_or_else(|| LlmSpec::model(fields.text("llm").unwrap_or(DEFAULT_MODEL))),
        tools: agent.tools.clone(),
        allow_delegation: fields.flag("allow_delegation"),
        max_iter: fields.count("max_iter").unwrap_or(DEFAULT_MAX_ITER),
        max_rpm: fields.count("max_rpm"),
        max_execution_time: fields.whole("max_execution_time"),
        max_retry_limit: fields
            .count("max_retry_limit")
            .unwrap_or(DEFAULT_MAX_RETRY_LIMIT),
        use_system_prompt: fields.flag("use_system_prompt"),
        respect_context_window: fields.flag("respect_context_window"),
        cache: fields.flag("cache"),
        tool_calling: match fields.text("tool_calling") {
            Some("native") => ToolCalling::Native,
            _ => ToolCalling::React,
        },
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn node_data_by_id(document: &Value) -> std::collections::HashMap<&str, &Map<String, Value>> {
    document
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let id = node.get("id")?.as_str()?;
            let data = node.get("data")?.as_object()?;
            Some((id, data))
        })
        .collect()
}

fn plan_crew_data(document: &Value) -> &Map<String, Value> {
    document
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|node| node.get("type").and_then(Value::as_str) == Some("crew"))
        .and_then(|node| node.get("data"))
        .and_then(Value::as_object)
        .unwrap_or(&*EMPTY)
}

fn llm_spec(fields: FieldReader<'_>) -> LlmSpec {
    LlmSpec {
        model: fields.text("model").unwrap_or(DEFAULT_MODEL).to_string(),
        base_url: fields.text("base_url").map(str::to_string),
        api_key_id: fields
            .text("api_key_id")
            .and_then(|id| uuid::Uuid::parse_str(id).ok()),
        temperature: fields.number("temperature"),
        top_p: fields.number("top_p"),
        max_tokens: fields.count("max_tokens"),
        seed: fields.integer("seed"),
        timeout: fields.number("timeout"),
        stream: fields.flag("stream"),
    }
}

/// Required text (validation made sure it is there).
fn text(fields: FieldReader<'_>, name: &'static str) -> String {
    fields.text(name).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tools(name: &str) -> bool {
        name == "hello_world"
    }

    #[test]
    fn compiles_agents_tasks_context_tools_and_llms() {
        let document = json!({
            "nodes": [
                {"id": "w", "type": "agent", "position": {"y": 100}, "data": {"role": "Writer", "goal": "g", "backstory": "b", "allow_delegation": true}},
                {"id": "r", "type": "agent", "data": {"role": "Researcher", "goal": "g", "backstory": "b", "max_iter": 3, "tool_calling": "native"}},
                {"id": "m", "type": "llm", "data": {"model": "anthropic/claude-3-5-haiku-latest", "temperature": 0.2, "api_key_id": "0193a1b2-0000-7000-8000-000000000001"}},
                {"id": "h", "type": "tool", "data": {"tool": "hello_world"}},
                {"id": "t2", "type": "task", "position": {"y": 0}, "data": {"description": "Write about {topic}", "expected_output": "An article", "markdown": true}},
                {"id": "t1", "type": "task", "position": {"y": 50}, "data": {"description": "Research {topic}", "expected_output": "Facts", "name": "research"}}
            ],
            "edges": [
                {"id": "e1", "source": "r", "target": "t1"},
                {"id": "e2", "source": "w", "target": "t2"},
                {"id": "e3", "source": "t1", "target": "t2"},
                {"id": "e4", "source": "h", "target": "r"},
                {"id": "e5", "source": "m", "target": "r"}
            ]
        });
        let (spec, _) =
            compile_document(&document, &tools, &OutboundPolicy::default()).expect("valid");
        assert_eq!(spec.process, SpecProcess::Sequential);
        let roles: Vec<&str> = spec.agents.iter().map(|a| a.role.as_str()).collect();
        assert_eq!(roles, ["Writer", "Researcher"], "document order");
        let researcher = &spec.agents[1];
        assert_eq!(researcher.llm.model, "anthropic/claude-3-5-haiku-latest");
        assert_eq!(researcher.llm.temperature, Some(0.2));
        assert!(researcher.llm.api_key_id.is_some());
        assert_eq!(researcher.tools, ["hello_world"]);
        assert_eq!(researcher.max_iter, 3);
        assert_eq!(researcher.tool_calling, ToolCalling::Native);
        let writer = &spec.agents[0];
        assert_eq!(writer.llm.model, DEFAULT_MODEL);
        assert!(writer.allow_delegation);
        assert_eq!(writer.max_iter, DEFAULT_MAX_ITER);
        // t1 comes first although it is lower on the canvas: t2 takes its context.
        let order: Vec<&str> = spec.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(order, ["t1", "t2"]);
        assert_eq!(spec.tasks[0].agent, Some(1));
        assert_eq!(spec.tasks[0].context, TaskContext::Default);
        assert_eq!(spec.tasks[0].tools, ["hello_world"], "inherits the agent's");
        assert_eq!(spec.tasks[1].context, TaskContext::Tasks(vec![0]));
        assert!(spec.tasks[1].markdown);
        assert_eq!(spec.tasks[0].name.as_deref(), Some("research"));
        assert_eq!(
            compile_document(&document, &tools, &OutboundPolicy::default())
                .expect("valid")
                .0,
            spec
        );
    }

    #[test]
    fn hierarchical_crews_get_a_manager_llm() {
        let document = json!({
            "nodes": [
                {"id": "c", "type": "crew", "data": {"process": "hierarchical", "manager_llm": "openai/gpt-4o"}},
                {"id": "a", "type": "agent", "data": {"role": "R", "goal": "g", "backstory": "b"}},
                {"id": "t", "type": "task", "data": {"description": "d", "expected_output": "e"}}
            ],
            "edges": []
        });
        let (spec, _) =
            compile_document(&document, &tools, &OutboundPolicy::default()).expect("valid");
        assert_eq!(spec.process, SpecProcess::Hierarchical);
        assert_eq!(
            spec.manager_llm.map(|m| m.model).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(spec.tasks[0].agent, None);
    }

    #[test]
    fn invalid_documents_do_not_compile() {
        let NotCompilable(problems) = compile_document(
            &json!({"nodes": [], "edges": []}),
            &tools,
            &OutboundPolicy::default(),
        )
        .expect_err("invalid");
        assert!(problems.iter().any(|p| p.code == "no_task"));
    }
}
