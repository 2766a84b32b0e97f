//! `CREWGRAPH_PRICES_FILE`: the operator's price table for cost estimates (see
//! [`crate::metrics::prices`]). Unset: no model is priced, every run costs 0 and says so.

use super::reader::Reader;
use crate::metrics::prices::PriceTable;

pub(super) fn read(reader: &mut Reader<'_>) -> PriceTable {
    let Some(path) = reader.get("CREWGRAPH_PRICES_FILE") else {
        return PriceTable::default();
    };
    let text = match std::fs::read_to_string(path.trim()) {
        Ok(text) => text,
        Err(e) => {
            reader.problem(
                "CREWGRAPH_PRICES_FILE",
                format!("cannot read `{}`: {e}", path.trim()),
            );
            return PriceTable::default();
        }
    };
    PriceTable::parse(&text).unwrap_or_else(|message| {
        reader.problem(
            "CREWGRAPH_PRICES_FILE",
            format!("`{}` is not a valid price table: {message}", path.trim()),
        );
        PriceTable::default()
    })
}
