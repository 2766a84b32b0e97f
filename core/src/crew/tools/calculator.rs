//! `calculator`: evaluates an arithmetic expression. Numbers, `+ - * / // % ** ^` and
//! parentheses only: no names, no functions, nothing that executes code. Size and
//! nesting are bounded.

use serde_json::{Value, json};

use super::{Tool, ToolError};
use crate::crew::pyrepr::python_float;

pub const MAX_EXPRESSION_CHARS: usize = 500;
const MAX_DEPTH: usize = 50;

pub struct Calculator;

#[async_trait::async_trait]
impl Tool for Calculator {
    fn name(&self) -> &str {
        "calculator"
    }

    fn description(&self) -> &str {
        "Evaluates an arithmetic expression and returns the result. Supports numbers, + - * / // % ** (or ^) and parentheses, e.g. \"(2 + 3) * 4 / 5\"."
    }

    fn args_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The arithmetic expression to evaluate",
                    "minLength": 1,
                    "maxLength": MAX_EXPRESSION_CHARS
                }
            },
            "required": ["expression"],
            "additionalProperties": false
        })
    }

    async fn run(&self, args: Value) -> Result<String, ToolError> {
        let expression = args
            .get("expression")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::InvalidArguments("`expression` must be text".into()))?;
        evaluate(expression)
            .map(format_number)
            .map_err(ToolError::Failed)
    }
}

/// Integral results print as integers, others as Python prints floats.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        python_float(value)
    }
}

pub fn evaluate(expression: &str) -> Result<f64, String> {
    if expression.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(format!(
            "The expression is longer than {MAX_EXPRESSION_CHARS} characters"
        ));
    }
    let tokens = tokenize(expression)?;
    let mut parser = Parser {
        tokens,
        position: 0,
    };
    let value = parser.expression(0)?;
    if parser.position != parser.tokens.len() {
        return Err(format!(
            "Unexpected {} in the expression",
            parser.tokens[parser.position].describe()
        ));
    }
    if value.is_finite() {
        Ok(value)
    } else {
        Err("The result is not a finite number".into())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Plus,
    Minus,
    Star,
    Slash,
    FloorDiv,
    Percent,
    Power,
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Number(n) => format!("number {}", format_number(*n)),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            _ => "operator".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let ch = chars[index];
        let next = chars.get(index + 1).copied();
        match ch {
            c if c.is_whitespace() => index += 1,
            '0'..='9' | '.' => {
                let start = index;
                while index < chars.len()
                    && (chars[index].is_ascii_digit() || chars[index] == '.' || chars[index] == '_')
                {
                    index += 1;
                }
                if index < chars.len() && matches!(chars[index], 'e' | 'E') {
                    let mut lookahead = index + 1;
                    if lookahead < chars.len() && matches!(chars[lookahead], '+' | '-') {
                        lookahead += 1;
                    }
                    if lookahead < chars.len() && chars[lookahead].is_ascii_digit() {
                        index = lookahead;
                        while index < chars.len() && chars[index].is_ascii_digit() {
                            index += 1;
                        }
                    }
                }
                let literal: String = chars[start..index].iter().filter(|c| **c != '_').collect();
                let number = literal
                    .parse::<f64>()
                    .map_err(|_| format!("'{literal}' is not a number"))?;
                tokens.push(Token::Number(number));
            }
            '+' => {
                tokens.push(Token::Plus);
                index += 1;
            }
            '-' => {
                tokens.push(Token::Minus);
                index += 1;
            }
            '*' if next == Some('*') => {
                tokens.push(Token::Power);
                index += 2;
            }
            '*' | '×' => {
                tokens.push(Token::Star);
                index += 1;
            }
            '/' if next == Some('/') => {
                tokens.push(Token::FloorDiv);
                index += 2;
            }
            '/' | '÷' => {
                tokens.push(Token::Slash);
                index += 1;
            }
            '%' => {
                tokens.push(Token::Percent);
                index += 1;
            }
            '^' => {
                tokens.push(Token::Power);
                index += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                index += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                index += 1;
            }
            other => {
                return Err(format!(
                    "Unsupported character '{other}': only numbers, + - * / // % ** ^ and parentheses are allowed"
                ));
            }
        }
    }
    if tokens.is_empty() {
        return Err("The expression is empty".into());
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn expression(&mut self, depth: usize) -> Result<f64, String> {
        let mut value = self.term(depth)?;
        while let Some(token) = self.peek() {
            let operator = token.clone();
            match operator {
                Token::Plus | Token::Minus => {
                    self.position += 1;
                    let right = self.term(depth)?;
                    value = if operator == Token::Plus {
                        value + right
                    } else {
                        value - right
                    };
                }
                _ => break,
            }
        }
        Ok(value)
    }

    fn term(&mut self, depth: usize) -> Result<f64, String> {
        let mut value = self.unary(depth)?;
        while let Some(token) = self.peek() {
            let operator = token.clone();
            if !matches!(
                operator,
                Token::Star | Token::Slash | Token::FloorDiv | Token::Percent
            ) {
                break;
            }
            self.position += 1;
            let right = self.unary(depth)?;
            value = match operator {
                Token::Star => value * right,
                _ if right == 0.0 => return Err("Division by zero".into()),
                Token::Slash => value / right,
                Token::FloorDiv => (value / right).floor(),
                // Python's modulo takes the divisor's sign.
                _ => value - right * (value / right).floor(),
            };
        }
        Ok(value)
    }

    fn unary(&mut self, depth: usize) -> Result<f64, String> {
        if depth > MAX_DEPTH {
            return Err("The expression is nested too deeply".into());
        }
        match self.peek() {
            Some(Token::Minus) => {
                self.position += 1;
                Ok(-self.unary(depth + 1)?)
            }
            Some(Token::Plus) => {
                self.position += 1;
                self.unary(depth + 1)
            }
            _ => self.power(depth),
        }
    }

    fn power(&mut self, depth: usize) -> Result<f64, String> {
        let base = self.atom(depth)?;
        if self.peek() == Some(&Token::Power) {
            self.position += 1;
            // Right-associative, and binds tighter than a unary minus on its left.
            let exponent = self.unary(depth + 1)?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn atom(&mut self, depth: usize) -> Result<f64, String> {
        match self.tokens.get(self.position).cloned() {
            Some(Token::Number(number)) => {
                self.position += 1;
                Ok(number)
            }
            Some(Token::Open) => {
                self.position += 1;
                let value = self.expression(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err("Missing ')' in the expression".into());
                }
                self.position += 1;
                Ok(value)
            }
            Some(other) => Err(format!("Unexpected {} in the expression", other.describe())),
            None => Err("The expression ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc(expression: &str) -> Result<String, String> {
        evaluate(expression).map(format_number)
    }

    #[test]
    fn evaluates_with_precedence() {
        assert_eq!(calc("1 + 2 * 3").as_deref(), Ok("7"));
        assert_eq!(calc("(1 + 2) * 3").as_deref(), Ok("9"));
        assert_eq!(calc("2 ** 3 ** 2").as_deref(), Ok("512"));
        assert_eq!(calc("-2 ^ 2").as_deref(), Ok("-4"));
        assert_eq!(calc("7 // 2 + 7 % 3").as_deref(), Ok("4"));
        assert_eq!(calc("-7 % 3").as_deref(), Ok("2"));
        assert_eq!(calc("10 / 4").as_deref(), Ok("2.5"));
        assert_eq!(calc("2 / 3").as_deref(), Ok("0.6666666666666666"));
        assert_eq!(calc("1e3 + 1_000").as_deref(), Ok("2000"));
    }

    #[test]
    fn refuses_what_is_not_arithmetic() {
        assert_eq!(calc("1 / 0"), Err("Division by zero".into()));
        assert!(calc("__import__('os')").is_err());
        assert!(calc("x + 1").is_err());
        assert!(calc("(1 + 2").is_err());
        assert!(calc("1 +").is_err());
        assert!(calc("").is_err());
        assert!(calc("10 ** 400").is_err());
        assert!(calc(&"(".repeat(200)).is_err());
        assert!(calc(&"1+".repeat(300)).is_err());
    }

    #[tokio::test]
    async fn runs_through_the_registry_with_validation() {
        let registry = super::super::ToolRegistry::builtin();
        assert_eq!(
            registry
                .invoke("calculator", serde_json::json!({"expression": "6 * 7"}))
                .await,
            Ok("42".into())
        );
        assert!(matches!(
            registry
                .invoke("calculator", serde_json::json!({"expr": "1"}))
                .await,
            Err(ToolError::InvalidArguments(_))
        ));
    }
}
