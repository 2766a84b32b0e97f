//! `{placeholder}` names, found exactly as CrewAI's `interpolate_only` finds them: only
//! `{` identifier `}` with identifiers `[A-Za-z_][A-Za-z0-9_-]*`, so JSON text such as
//! `{"a": 1}` is left alone.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::graph::document::Document;
use crate::graph::fields::fields_of;

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Placeholder names in `text`, in order of appearance (with repeats).
pub fn find(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find(['}', '{']) {
            Some(close) if after.as_bytes()[close] == b'}' => {
                let name = &after[..close];
                if is_identifier(name) {
                    names.push(name);
                }
                rest = &after[close + 1..];
            }
            Some(close) => rest = &after[close..],
            None => break,
        }
    }
    names
}

/// Every input a document needs at kickoff, sorted.
pub fn required_inputs(document: &Document) -> Vec<String> {
    let mut names = BTreeSet::new();
    for node in &document.nodes {
        // The fields whose placeholders kickoff inputs fill (crewai-reference.md §2).
        for field in fields_of(node.kind).iter().filter(|f| f.interpolated) {
            if let Some(Value::String(text)) = node.data.get(field.name) {
                names.extend(find(text).into_iter().map(str::to_string));
            }
        }
    }
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_identifiers_and_ignores_json() {
        assert_eq!(find("Research {topic} for {year}"), vec!["topic", "year"]);
        assert_eq!(
            find(r#"{"info": "Look at {placeholder}"}"#),
            vec!["placeholder"]
        );
        assert_eq!(
            find("{interpolation-with-hyphens}"),
            vec!["interpolation-with-hyphens"]
        );
        assert!(find("{1abc} {} {a b} { x }").is_empty());
        assert_eq!(find("{{nested}}"), vec!["nested"]);
    }
}
