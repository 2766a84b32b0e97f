//! Graphs: the document model, validation with stable problem codes, and the ordered plan
//! a valid graph runs (DESIGN §2).

pub mod document;
pub mod placeholders;
pub mod problems;
pub mod validate;

#[cfg(test)]
mod validate_tests;
