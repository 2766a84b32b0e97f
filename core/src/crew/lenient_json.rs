//! A forgiving reader for tool inputs, standing in for the chain CrewAI tries
//! (`json.loads` → `ast.literal_eval` → JSON5 → `json_repair`): strict JSON, then
//! Python-literal-ish text (single quotes, `True`/`False`/`None`, bare keys, trailing
//! commas), then truncated JSON (unclosed strings, objects and arrays are closed).

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Reads `text` as a value, repairing what it can; `None` when nothing sensible remains.
pub fn parse_lenient(text: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Some(value);
    }
    let mut reader = Reader {
        chars: text.chars().collect(),
        position: 0,
    };
    reader.skip_space();
    let value = reader.value(0)?;
    reader.skip_space();
    // Trailing prose after a complete value is ignored, as json_repair does.
    Some(value)
}

struct Reader {
    chars: Vec<char>,
    position: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match self.peek()? {
            '{' => self.object(depth),
            '[' => self.array(depth),
            '"' | '\'' => self.string().map(Value::String),
            _ => self.bare(),
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        self.position += 1;
        let mut map = Map::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => return Some(Value::Object(map)),
                Some('}') => {
                    self.position += 1;
                    return Some(Value::Object(map));
                }
                Some(',') => {
                    self.position += 1;
                    continue;
                }
                Some(_) => {}
            }
            let key = match self.peek()? {
                '"' | '\'' => self.string()?,
                _ => self.bare_word(),
            };
            if key.is_empty() {
                return None;
            }
            self.skip_space();
            if self.peek() == Some(':') {
                self.position += 1;
            } else {
                return None;
            }
            self.skip_space();
            let value = match self.peek() {
                None | Some('}') | Some(',') => Value::String(String::new()),
                Some(_) => self.value(depth + 1)?,
            };
            map.insert(key, value);
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        self.position += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => return Some(Value::Array(items)),
                Some(']') => {
                    self.position += 1;
                    return Some(Value::Array(items));
                }
                Some(',') => {
                    self.position += 1;
                    continue;
                }
                Some(_) => items.push(self.value(depth + 1)?),
            }
        }
    }

    /// A quoted string; an unterminated one ends at the end of the text.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.position += 1;
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            self.position += 1;
            if ch == quote {
                return Some(out);
            }
            if ch != '\\' {
                out.push(ch);
                continue;
            }
            let escaped = self.peek()?;
            self.position += 1;
            match escaped {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = self.chars.iter().skip(self.position).take(4).collect();
                    let code = u32::from_str_radix(&hex, 16).ok()?;
                    self.position += 4;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                other => out.push(other),
            }
        }
        Some(out)
    }

    fn bare_word(&mut self) -> String {
        let mut word = String::new();
        while let Some(ch) = self.peek() {
            if ch.is_alphanumeric() || matches!(ch, '_' | '-' | '.' | '+') {
                word.push(ch);
                self.position += 1;
            } else {
                break;
            }
        }
        word
    }

    fn bare(&mut self) -> Option<Value> {
        let word = self.bare_word();
        match word.as_str() {
            "" => None,
            "true" | "True" => Some(Value::Bool(true)),
            "false" | "False" => Some(Value::Bool(false)),
            "null" | "None" => Some(Value::Null),
            _ => {
                if let Ok(integer) = word.parse::<i64>() {
                    return Some(Value::Number(integer.into()));
                }
                word.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_json_passes_through() {
        assert_eq!(
            parse_lenient(r#"{"a": [1, 2.5, "x"]}"#),
            Some(json!({"a": [1, 2.5, "x"]}))
        );
    }

    #[test]
    fn python_literals_are_read() {
        assert_eq!(
            parse_lenient("{'name': 'Ada', 'ok': True, 'none': None, 'n': 3,}"),
            Some(json!({"name": "Ada", "ok": true, "none": null, "n": 3}))
        );
        assert_eq!(parse_lenient("{name: 'Ada'}"), Some(json!({"name": "Ada"})));
    }

    #[test]
    fn truncated_json_is_closed() {
        assert_eq!(
            parse_lenient(r#"{"name": "Ada"#),
            Some(json!({"name": "Ada"}))
        );
        assert_eq!(parse_lenient(r#"{"a": [1, 2"#), Some(json!({"a": [1, 2]})));
    }

    #[test]
    fn prose_is_not_a_value() {
        assert_eq!(parse_lenient("hello there"), None);
        assert_eq!(parse_lenient(""), None);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(1000);
        assert_eq!(parse_lenient(&text), None);
    }
}
