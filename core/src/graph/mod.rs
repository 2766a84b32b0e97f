//! Graphs: the document model, validation with stable problem codes, and the ordered plan
//! a valid graph runs (DESIGN §2).

pub mod compile;
pub mod document;
pub mod node_types;
pub mod placeholders;
pub mod problems;
pub mod validate;

#[cfg(test)]
mod validate_props;
#[cfg(test)]
mod validate_tests;
