//! Run metrics kept in PostgreSQL: every ended execution's figures — per run, per task,
//! per model — written in the transaction that ends it ([`record_ends`], called by
//! `lifecycle::finish_many`), read back for the execution resource ([`RunMetrics`]) and
//! the dashboards. Costs are estimates from the operator's [`prices`] table.

pub mod prices;
mod read;
mod record;

pub use read::{ExecutionFigures, ModelUsage, RunMetrics, TaskMetrics, of_execution, summary_of};
pub use record::{Counts, record_ends};
