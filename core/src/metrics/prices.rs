//! The price table behind the estimated cost of runs: the operator's JSON file
//! (`CREWGRAPH_PRICES_FILE`), per model, in US dollars per million tokens. A model the
//! table does not know costs nothing, and the run says so (`unpriced_models`).
//!
//! ```json
//! {"models": {"gpt-4o-mini": {"input": 0.15, "output": 0.60, "cached_input": 0.075}}}
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::crew::output::UsageMetrics;

/// One model's prices, dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens served from the provider's cache; `input` when not given.
    #[serde(default)]
    pub cached_input: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    models: HashMap<String, ModelPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    models: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// Reads a price file's text; the message says what is wrong with it.
    pub fn parse(text: &str) -> Result<PriceTable, String> {
        let file: PriceFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (model, price) in &file.models {
            let figures = [price.input, price.output, price.cached_input.unwrap_or(0.0)];
            if figures.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(format!(
                    "the prices of {model:?} must be finite and not negative"
                ));
            }
        }
        Ok(PriceTable {
            models: file.models,
        })
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The price of a model as a run names it: the exact string first, then without its
    /// provider prefix (`openai/gpt-4o-mini` is priced as `gpt-4o-mini`).
    pub fn price_of(&self, model: &str) -> Option<ModelPrice> {
        self.models.get(model).copied().or_else(|| {
            let (_, bare) = model.split_once('/')?;
            self.models.get(bare).copied()
        })
    }

    /// The estimated cost of this usage of `model`; `None` when the model is not priced.
    pub fn cost_of(&self, model: &str, usage: &UsageMetrics) -> Option<f64> {
        let price = self.price_of(model)?;
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let dollars = uncached as f64 * price.input
            + cached as f64 * price.cached_input.unwrap_or(price.input)
            + usage.completion_tokens as f64 * price.output;
        Some(dollars / 1_000_000.0)
    }
}

static INSTALLED: OnceLock<PriceTable> = OnceLock::new();

/// Installs this process's price table (at start-up; later calls are ignored).
pub fn install(table: PriceTable) {
    let _ = INSTALLED.set(table);
}

/// The installed table (empty when none was installed: every model unpriced).
pub fn installed() -> &'static PriceTable {
    static EMPTY: OnceLock<PriceTable> = OnceLock::new();
    INSTALLED
        .get()
        .unwrap_or_else(|| EMPTY.get_or_init(PriceTable::default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, cached: u64, completion: u64) -> UsageMetrics {
        UsageMetrics {
            total_tokens: prompt + completion,
            prompt_tokens: prompt,
            cached_prompt_tokens: cached,
            completion_tokens: completion,
            successful_requests: 1,
        }
    }

    #[test]
    fn costs_per_million_tokens_with_cached_input_and_prefix_fallback() {
        let table = PriceTable::parse(
            r#"{"models": {"gpt-4o-mini": {"input": 0.15, "output": 0.6, "cached_input": 0.075},
                           "anthropic/claude": {"input": 3, "output": 15}}}"#,
        )
        .expect("valid");
        let cost = table
            .cost_of("openai/gpt-4o-mini", &usage(1_000_000, 200_000, 500_000))
            .expect("priced by its bare name");
        assert!((cost - (0.8 * 0.15 + 0.2 * 0.075 + 0.5 * 0.6)).abs() < 1e-12);
        let cost = table
            .cost_of("anthropic/claude", &usage(2_000, 1_000, 0))
            .expect("exact");
        assert_eq!(cost, 2_000.0 * 3.0 / 1e6);
        assert_eq!(table.cost_of("llama3", &usage(10, 0, 10)), None);
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        assert!(PriceTable::parse("{}").is_err(), "models is required");
        let negative = PriceTable::parse(r#"{"models": {"m": {"input": -1, "output": 1}}}"#);
        assert!(negative.expect_err("refused").contains("\"m\""));
        let unknown = PriceTable::parse(r#"{"models": {"m": {"input": 1, "outptu": 1}}}"#);
        assert!(unknown.is_err());
    }
}
