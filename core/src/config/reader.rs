//! Reading variables: one [`Reader`] collects every problem while the sections read
//! their variables, so all of them are reported at once.

use std::fmt;

use super::ConfigProblem;

/// What a variable source answers for one name.
pub enum Lookup {
    Value(String),
    Missing,
    NotUnicode,
}

pub(super) struct Reader<'a> {
    pub lookup: &'a dyn Fn(&str) -> Lookup,
    pub problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    /// The variable's value; an empty value counts as unset (compose files often pass `VAR=`).
    pub fn get(&mut self, name: &'static str) -> Option<String> {
        match (self.lookup)(name) {
            Lookup::Value(v) if v.trim().is_empty() => None,
            Lookup::Value(v) => Some(v),
            Lookup::Missing => None,
            Lookup::NotUnicode => {
                self.problem(name, "is not valid UTF-8".into());
                None
            }
        }
    }

    pub fn problem(&mut self, variable: &'static str, message: String) {
        self.problems.push(ConfigProblem { variable, message });
    }

    /// A whole number in `[min, max]`, `default` when unset; `None` (and a problem) when
    /// malformed.
    pub fn parse_ranged<T>(&mut self, name: &'static str, default: T, min: T, max: T) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.get(name) {
            Some(raw) => self.in_range(name, &raw, min, max),
            None => Some(default),
        }
    }

    /// A whole number in `[min, max]`; `None` when unset, or malformed (with a problem).
    pub fn parse_optional<T>(&mut self, name: &'static str, min: T, max: T) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let raw = self.get(name)?;
        self.in_range(name, &raw, min, max)
    }

    fn in_range<T>(&mut self, name: &'static str, raw: &str, min: T, max: T) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => Some(v),
            _ => {
                self.problem(
                    name,
                    format!("must be a whole number from {min} to {max}, got `{raw}`"),
                );
                None
            }
        }
    }

    pub fn parse_bool(&mut self, name: &'static str) -> Option<bool> {
        let raw = self.get(name)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => {
                self.problem(name, format!("must be `true` or `false`, got `{raw}`"));
                None
            }
        }
    }
}
