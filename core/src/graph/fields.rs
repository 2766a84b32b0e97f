//! Every node field described once: name, type, range or choices, default, description and
//! CrewAI 0.121.1's default. The form schemas (`node_types`), the field checks
//! (`field_checks`), planning and compilation all read these descriptors (the tables are in
//! `field_table`), and `fields_tests` fails when one of them knows a field the others do not.

use serde_json::{Map, Value};

use crate::graph::document::NodeKind;
pub use crate::graph::field_table::fields_of;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldType {
    /// Text; required text must not be blank.
    Text,
    /// An `http://` or `https://` URL.
    HttpUrl,
    /// A UUID (the id of a stored record).
    Uuid,
    /// A file path, checked as CrewAI checks `output_file`.
    OutputFile,
    /// The name of a tool in the tool repository (the schema enumerates them).
    ToolName,
    /// One of a few words.
    Choice(&'static [&'static str]),
    Bool,
    /// A whole number; at least `min` when there is one.
    Integer {
        min: Option<u64>,
    },
    /// A number within the bounds that are given (`above` is an exclusive minimum).
    Number {
        min: Option<f64>,
        above: Option<f64>,
        max: Option<f64>,
    },
}

/// The default the schema states; validation and compilation fall back to it too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldDefault {
    /// None stated: the field is required, or unset means "not used".
    Unstated,
    /// `null` stated explicitly.
    Null,
    Bool(bool),
    Count(u32),
    Text(&'static str),
}

/// How the field relates to CrewAI 0.121.1's parameter of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrewAi {
    /// A required parameter.
    Required,
    /// A parameter with this default (Python source); ours is the same.
    Default(&'static str),
    /// A parameter whose default (Python source) ours deliberately differs from.
    Differs {
        crewai: &'static str,
        why: &'static str,
    },
    /// Not a CrewAI parameter: a crewgraph field.
    Absent,
}

/// What a field changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Planning or compilation reads it: it changes what runs.
    Runs,
    /// Checked and kept for CrewAI compatibility; nothing runs differently.
    CheckedOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    /// The schema lists `null` among the types. (Validation takes `null` as "unset" for
    /// every optional field, as it always has.)
    pub nullable: bool,
    pub default: FieldDefault,
    pub description: &'static str,
    pub examples: &'static [&'static str],
    pub crewai: CrewAi,
    /// `{placeholders}` in it are filled from the kickoff inputs.
    pub interpolated: bool,
    /// CrewAI's own (code, message) for a wrong value, instead of `invalid_field`.
    pub crewai_error: Option<(&'static str, &'static str)>,
    pub used: Use,
}

impl Field {
    /// An optional field with no stated default, which runs.
    pub const fn new(name: &'static str, ty: FieldType, description: &'static str) -> Field {
        Field {
            name,
            ty,
            required: false,
            nullable: false,
            default: FieldDefault::Unstated,
            description,
            examples: &[],
            crewai: CrewAi::Absent,
            interpolated: false,
            crewai_error: None,
            used: Use::Runs,
        }
    }

    pub const fn required(self) -> Field {
        Field {
            required: true,
            ..self
        }
    }

    pub const fn nullable(self) -> Field {
        Field {
            nullable: true,
            ..self
        }
    }

    pub const fn default(self, default: FieldDefault) -> Field {
        Field { default, ..self }
    }

    pub const fn examples(self, examples: &'static [&'static str]) -> Field {
        Field { examples, ..self }
    }

    pub const fn crewai(self, crewai: CrewAi) -> Field {
        Field { crewai, ..self }
    }

    pub const fn interpolated(self) -> Field {
        Field {
            interpolated: true,
            ..self
        }
    }

    pub const fn crewai_error(self, code: &'static str, message: &'static str) -> Field {
        Field {
            crewai_error: Some((code, message)),
            ..self
        }
    }

    pub const fn checked_only(self) -> Field {
        Field {
            used: Use::CheckedOnly,
            ..self
        }
    }
}

/// The descriptor of a kind's field.
pub fn field(kind: NodeKind, name: &str) -> Option<&'static Field> {
    fields_of(kind).iter().find(|f| f.name == name)
}

/// A node's `data` read through its descriptors: planning and compilation read fields only
/// this way, so they read described fields and fall back to the described defaults.
#[derive(Clone, Copy)]
pub struct FieldReader<'a> {
    kind: NodeKind,
    data: &'a Map<String, Value>,
}

impl<'a> FieldReader<'a> {
    pub fn new(kind: NodeKind, data: &'a Map<String, Value>) -> Self {
        FieldReader { kind, data }
    }

    fn read(&self, name: &'static str) -> (Option<&'static Field>, Option<&'a Value>) {
        #[cfg(test)]
        reads::record(self.kind, name);
        (field(self.kind, name), self.data.get(name))
    }

    fn default_of(field: Option<&'static Field>) -> FieldDefault {
        field.map_or(FieldDefault::Unstated, |f| f.default)
    }

    /// Non-blank text, else the described default text.
    pub fn text(&self, name: &'static str) -> Option<&'a str> {
        let (field, value) = self.read(name);
        match value
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        {
            Some(text) => Some(text),
            None => match Self::default_of(field) {
                FieldDefault::Text(text) => Some(text),
                _ => None,
            },
        }
    }

    /// The boolean, else the described default (false when none is stated).
    pub fn flag(&self, name: &'static str) -> bool {
        let (field, value) = self.read(name);
        value
            .and_then(Value::as_bool)
            .unwrap_or(match Self::default_of(field) {
                FieldDefault::Bool(default) => default,
                _ => false,
            })
    }

    /// A whole number ≥ 0, else the described default.
    pub fn whole(&self, name: &'static str) -> Option<u64> {
        let (field, value) = self.read(name);
        value
            .and_then(Value::as_u64)
            .or(match Self::default_of(field) {
                FieldDefault::Count(default) => Some(u64::from(default)),
                _ => None,
            })
    }

    /// A whole number that fits a `u32`, else the described default.
    pub fn count(&self, name: &'static str) -> Option<u32> {
        self.whole(name).and_then(|v| u32::try_from(v).ok())
    }

    pub fn integer(&self, name: &'static str) -> Option<i64> {
        self.read(name).1.and_then(Value::as_i64)
    }

    pub fn number(&self, name: &'static str) -> Option<f64> {
        self.read(name).1.and_then(Value::as_f64)
    }
}

/// The (kind, field) pairs planning and compilation read on this thread, so a test can
/// compare them with the descriptors.
#[cfg(test)]
pub(crate) mod reads {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use crate::graph::document::NodeKind;

    thread_local! {
        static READS: RefCell<BTreeSet<(NodeKind, &'static str)>> = const { RefCell::new(BTreeSet::new()) };
    }

    pub(super) fn record(kind: NodeKind, name: &'static str) {
        READS.with(|reads| reads.borrow_mut().insert((kind, name)));
    }

    pub(crate) fn take() -> BTreeSet<(NodeKind, &'static str)> {
        READS.with(|reads| std::mem::take(&mut *reads.borrow_mut()))
    }
}
