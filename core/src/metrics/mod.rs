//! Run metrics (DESIGN §9, §11).

pub mod dashboard;
