//! CrewAI 0.121.1's prompt slices (`translations/en.json`) and how the executor assembles
//! them into messages (crewai-reference.md §4).

use serde_json::{Map, Value};

use crate::crew::llm::ChatMessage;
use crate::crew::pyrepr::python_repr;

pub const ROLE_PLAYING: &str = "You are {role}. {backstory}\nYour personal goal is: {goal}";
pub const TOOLS: &str = "\nYou ONLY have access to the following tools, and should NEVER make up tools that are not listed here:\n\n{tools}\n\nIMPORTANT: Use the following format in your response:\n\n```\nThought: you should always think about what to do\nAction: the action to take, only one name of [{tool_names}], just the name, exactly as it's written.\nAction Input: the input to the action, just a simple JSON object, enclosed in curly braces, using \" to wrap keys and values.\nObservation: the result of the action\n```\n\nOnce all necessary information is gathered, return the following format:\n\n```\nThought: I now know the final answer\nFinal Answer: the final answer to the original input question\n```";
pub const NO_TOOLS: &str = "\nTo give my best complete final answer to the task respond using the exact following format:\n\nThought: I now can give a great answer\nFinal Answer: Your final answer must be the great and the most complete as possible, it must be outcome described.\n\nI MUST use these formats, my job depends on it!";
pub const TASK: &str = "\nCurrent Task: {input}\n\nBegin! This is VERY important to you, use the tools available and give your best Final Answer, your job depends on it!\n\nThought:";
/// The stop word: the model must not write the tool's observation itself.
pub const OBSERVATION_STOP: &str = "\nObservation:";
pub const FORMAT: &str = "I MUST either use a tool (use one at time) OR give my best final answer not both at the same time. When responding, I must use the following format:\n\n```\nThought: you should always think about what to do\nAction: the action to take, should be one of [{tool_names}]\nAction Input: the input to the action, dictionary enclosed in curly braces\nObservation: the result of the action\n```\nThis Thought/Action/Action Input/Result can repeat N times. Once I know the final answer, I must return the following format:\n\n```\nThought: I now can give a great answer\nFinal Answer: Your final answer must be the great and the most complete as possible, it must be outcome described\n\n```";
pub const FINAL_ANSWER_FORMAT: &str = "If you don't need to use any more tools, you must give your best complete final answer, make sure it satisfies the expected criteria, use the EXACT format below:\n\n```\nThought: I now can give a great answer\nFinal Answer: my best complete final answer to the task.\n\n```";
pub const FORMAT_WITHOUT_TOOLS: &str = "\nSorry, I didn't use the right format. I MUST either use a tool (among the available ones), OR give my best final answer.\nHere is the expected format I must follow:\n\n```\nQuestion: the input question you must answer\nThought: you should always think about what to do\nAction: the action to take, should be one of [{tool_names}]\nAction Input: the input to the action\nObservation: the result of the action\n```\n This Thought/Action/Action Input/Result process can repeat N times. Once I know the final answer, I must return the following format:\n\n```\nThought: I now can give a great answer\nFinal Answer: Your final answer must be the great and the most complete as possible, it must be outcome described\n\n```";
pub const FORCE_FINAL_ANSWER: &str = "Now it's time you MUST give your absolute best final answer. You'll ignore all previous instructions, stop using any tools, and just return your absolute BEST Final answer.";
pub const EXPECTED_OUTPUT: &str = "\nThis is the expected criteria for your final answer: {expected_output}\nyou MUST return the actual complete content as the final answer, not a summary.";
pub const MARKDOWN: &str = "Your final answer MUST be formatted in Markdown syntax.\nFollow these guidelines:\n- Use # for headers\n- Use ** for bold text\n- Use * for italic text\n- Use - or * for bullet points\n- Use `code` for inline code\n- Use ```language for code blocks";
pub const TASK_WITH_CONTEXT: &str = "{task}\n\nThis is the context you're working with:\n{context}";
/// The expected output of a task a coworker receives through delegation.
pub const MANAGER_REQUEST: &str =
    "Your best answer to your coworker asking you this, accounting for the context shared.";

/// `Task.prompt()`: description, expected criteria, and the Markdown block when asked.
pub fn task_prompt(description: &str, expected_output: &str, markdown: bool) -> String {
    let mut slices = vec![
        description.to_string(),
        EXPECTED_OUTPUT.replace("{expected_output}", expected_output),
    ];
    if markdown {
        slices.push(MARKDOWN.to_string());
    }
    slices.join("\n")
}

/// The task prompt with the context block, only when there is context.
pub fn with_context(task_prompt: &str, context: &str) -> String {
    if context.is_empty() {
        task_prompt.to_string()
    } else {
        TASK_WITH_CONTEXT
            .replace("{task}", task_prompt)
            .replace("{context}", context)
    }
}

/// Who the agent is, for the role-playing slice.
pub struct Persona<'a> {
    pub role: &'a str,
    pub goal: &'a str,
    pub backstory: &'a str,
    pub use_system_prompt: bool,
}

/// The executor's first messages. `tools` is `None` for an agent without (ReAct) tools:
/// `Some((descriptions, names))` otherwise.
pub fn initial_messages(
    persona: &Persona<'_>,
    task_prompt: &str,
    tools: Option<(&str, &str)>,
) -> Vec<ChatMessage> {
    let tool_slice = if tools.is_some() { TOOLS } else { NO_TOOLS };
    // `Prompts._build_prompt` replaces goal, then role, then backstory.
    let build = |template: String| {
        template
            .replace("{goal}", persona.goal)
            .replace("{role}", persona.role)
            .replace("{backstory}", persona.backstory)
    };
    // `_format_prompt` replaces input, then tool names, then tools (plain replaces).
    let (descriptions, names) = tools.unwrap_or(("", ""));
    let format = |prompt: String| {
        prompt
            .replace("{input}", task_prompt)
            .replace("{tool_names}", names)
            .replace("{tools}", descriptions)
    };
    if persona.use_system_prompt {
        let system = format(build(format!("{ROLE_PLAYING}{tool_slice}")));
        let user = format(build(TASK.to_string()));
        vec![
            ChatMessage::system(system.trim_end()),
            ChatMessage::user(user.trim_end()),
        ]
    } else {
        let prompt = format(build(format!("{ROLE_PLAYING}{tool_slice}{TASK}")));
        vec![ChatMessage::user(prompt.trim_end())]
    }
}

/// CrewAI rewrites every tool's description at construction:
/// `Tool Name: ...\nTool Arguments: {python dict}\nTool Description: ...`.
pub fn tool_description(name: &str, description: &str, args_schema: &Value) -> String {
    let mut arguments = Map::new();
    let properties = args_schema.get("properties").and_then(Value::as_object);
    for property in ordered_properties(args_schema) {
        let schema = properties.and_then(|all| all.get(&property));
        let field_description = schema
            .and_then(|s| s.get("description"))
            .cloned()
            .unwrap_or(Value::Null);
        let mut type_name = schema.map(python_type_name).unwrap_or_else(|| "str".into());
        let required = args_schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|required| required.iter().any(|r| r.as_str() == Some(&property)));
        if !required {
            type_name = format!("Union[{type_name}, NoneType]");
        }
        let mut entry = Map::new();
        entry.insert("description".into(), field_description);
        entry.insert("type".into(), Value::String(type_name));
        arguments.insert(property, Value::Object(entry));
    }
    format!(
        "Tool Name: {name}\nTool Arguments: {}\nTool Description: {description}",
        python_dict_in_order(&arguments, &ordered_properties(args_schema))
    )
}

/// Property names in declared order. serde_json maps are sorted, so the `required`
/// list (written in declaration order) comes first, then the optional ones by name.
pub fn ordered_properties(args_schema: &Value) -> Vec<String> {
    let mut names: Vec<String> = args_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|required| {
            required
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(properties) = args_schema.get("properties").and_then(Value::as_object) {
        names.retain(|name| properties.contains_key(name));
        for name in properties.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

fn python_dict_in_order(map: &Map<String, Value>, order: &[String]) -> String {
    let entries: Vec<String> = order
        .iter()
        .filter_map(|key| {
            let value = map.get(key)?;
            // Inner dicts are {'description': ..., 'type': ...}, in that order.
            let description = python_repr(value.get("description").unwrap_or(&Value::Null));
            let type_name = python_repr(value.get("type").unwrap_or(&Value::Null));
            Some(format!(
                "{}: {{'description': {description}, 'type': {type_name}}}",
                python_repr(&Value::String(key.clone()))
            ))
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// The Python annotation name CrewAI prints for a JSON Schema type.
fn python_type_name(schema: &Value) -> String {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "str".into(),
        Some("integer") => "int".into(),
        Some("number") => "float".into(),
        Some("boolean") => "bool".into(),
        Some("object") => "dict".into(),
        Some("array") => match schema.get("items") {
            Some(items) => format!("list[{}]", python_type_name(items)),
            None => "list".into(),
        },
        _ => "str".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crew::llm::Role;
    use serde_json::json;

    #[test]
    fn task_prompt_has_expected_criteria_and_markdown() {
        assert_eq!(
            task_prompt("Do X", "A list", false),
            "Do X\n\nThis is the expected criteria for your final answer: A list\nyou MUST return the actual complete content as the final answer, not a summary."
        );
        let markdown = task_prompt("Do X", "A list", true);
        assert!(markdown.ends_with(
            "not a summary.\nYour final answer MUST be formatted in Markdown syntax.\nFollow these guidelines:\n- Use # for headers\n- Use ** for bold text\n- Use * for italic text\n- Use - or * for bullet points\n- Use `code` for inline code\n- Use ```language for code blocks"
        ));
        assert_eq!(with_context("T", ""), "T");
        assert_eq!(
            with_context("T", "C"),
            "T\n\nThis is the context you're working with:\nC"
        );
    }

    #[test]
    fn system_and_user_messages_without_tools() {
        let persona = Persona {
            role: "Researcher",
            goal: "Find facts",
            backstory: "You dig.",
            use_system_prompt: true,
        };
        let messages = initial_messages(&persona, "Do X", None);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(
            messages[0].content,
            format!("You are Researcher. You dig.\nYour personal goal is: Find facts{NO_TOOLS}")
        );
        assert_eq!(messages[1].role, Role::User);
        assert_eq!(
            messages[1].content,
            "\nCurrent Task: Do X\n\nBegin! This is VERY important to you, use the tools available and give your best Final Answer, your job depends on it!\n\nThought:"
        );
        let single = initial_messages(
            &Persona {
                use_system_prompt: false,
                ..persona
            },
            "Do X",
            None,
        );
        assert_eq!(single.len(), 1);
        assert!(single[0].content.starts_with("You are Researcher."));
        assert!(single[0].content.ends_with("\nCurrent Task: Do X\n\nBegin! This is VERY important to you, use the tools available and give your best Final Answer, your job depends on it!\n\nThought:"));
    }

    #[test]
    fn tools_slice_lists_descriptions_and_names() {
        let persona = Persona {
            role: "R",
            goal: "G",
            backstory: "B",
            use_system_prompt: true,
        };
        let messages = initial_messages(&persona, "Do X", Some(("DESC", "a, b")));
        assert!(
            messages[0]
                .content
                .contains("not listed here:\n\nDESC\n\nIMPORTANT")
        );
        assert!(
            messages[0]
                .content
                .contains("only one name of [a, b], just the name")
        );
    }

    #[test]
    fn tool_descriptions_are_rewritten_like_crewai() {
        let schema = json!({
            "type": "object",
            "properties": {
                "task": {"type": "string", "description": "The task to delegate"},
                "context": {"type": "string", "description": "The context for the task"},
                "coworker": {"type": "string", "description": "The role/name of the coworker to delegate to"},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["task", "context", "coworker"]
        });
        assert_eq!(
            tool_description("Delegate work to coworker", "Delegate it.", &schema),
            "Tool Name: Delegate work to coworker\nTool Arguments: {'task': {'description': 'The task to delegate', 'type': 'str'}, 'context': {'description': 'The context for the task', 'type': 'str'}, 'coworker': {'description': 'The role/name of the coworker to delegate to', 'type': 'str'}, 'tags': {'description': None, 'type': 'Union[list[str], NoneType]'}}\nTool Description: Delegate it."
        );
    }
}
