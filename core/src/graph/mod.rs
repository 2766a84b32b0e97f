//! Graphs: the document model, validation with stable problem codes, and the ordered plan
//! a valid graph runs (DESIGN §2).

pub mod compile;
pub mod document;
pub mod field_checks;
mod field_table;
pub mod fields;
pub mod node_types;
pub mod placeholders;
mod plan;
mod plan_rules;
pub mod problems;
mod shape;
pub mod validate;

#[cfg(test)]
mod context_tests;
#[cfg(test)]
mod fields_tests;
#[cfg(test)]
mod validate_props;
#[cfg(test)]
mod validate_tests;
