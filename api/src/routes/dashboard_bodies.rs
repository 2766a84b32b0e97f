//! The typed bodies of the dashboard endpoints (`routes::dashboard`).

use chrono::{DateTime, Duration, Utc};
use crewgraph_core::metrics::dashboard::{
    self, EndCode, FailingGraph, ModelUsage, Percentiles, RankPage, SeriesPoint, Summary,
    TimeRange, Tokens,
};
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object};
use uuid::Uuid;

use super::graph_bodies::example_time;

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum BucketName {
    Hour,
    Day,
}

impl From<BucketName> for dashboard::Bucket {
    fn from(b: BucketName) -> Self {
        match b {
            BucketName::Hour => dashboard::Bucket::Hour,
            BucketName::Day => dashboard::Bucket::Day,
        }
    }
}

/// Continuous percentiles (interpolated between runs), in milliseconds; null when no run
/// in the range has the figure.
#[derive(Object, Clone, Copy)]
#[oai(rename = "DashboardPercentiles")]
pub struct PercentilesBody {
    #[oai(nullable)]
    pub p50: Option<f64>,
    #[oai(nullable)]
    pub p95: Option<f64>,
}

impl From<Percentiles> for PercentilesBody {
    fn from(p: Percentiles) -> Self {
        PercentilesBody {
            p50: p.p50,
            p95: p.p95,
        }
    }
}

#[derive(Object, Clone, Copy)]
#[oai(rename = "DashboardTokens")]
pub struct TokensBody {
    pub prompt: i64,
    pub completion: i64,
    /// Part of `prompt` served from the provider's prompt cache.
    pub cached_prompt: i64,
    pub total: i64,
}

impl From<Tokens> for TokensBody {
    fn from(t: Tokens) -> Self {
        TokensBody {
            prompt: t.prompt,
            completion: t.completion,
            cached_prompt: t.cached_prompt,
            total: t.total,
        }
    }
}

/// The executions that ended in `[from, to)`.
#[derive(Object)]
#[oai(example)]
pub struct DashboardSummary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// `succeeded / runs` (cancelled runs count as not succeeded); null without runs.
    #[oai(nullable)]
    pub success_rate: Option<f64>,
    /// From the first start to the end, of the runs that started.
    pub run_ms: PercentilesBody,
    /// From kickoff to the first start, of the runs that started.
    pub queue_wait_ms: PercentilesBody,
    pub tokens: TokensBody,
    /// Estimated from the operator's price table when each run ended.
    pub cost_usd: f64,
    pub llm_calls: i64,
    pub llm_failures: i64,
    /// LLM calls that answered (CrewAI's `successful_requests`).
    pub successful_requests: i64,
    pub tool_calls: i64,
    pub tool_failures: i64,
    /// Models used in the range that the price table did not know: their calls are
    /// counted as costing nothing.
    pub unpriced_models: Vec<String>,
}

impl DashboardSummary {
    pub fn new(range: TimeRange, s: Summary) -> Self {
        DashboardSummary {
            from: range.from,
            to: range.to,
            runs: s.runs,
            succeeded: s.succeeded,
            failed: s.failed,
            cancelled: s.cancelled,
            success_rate: s.success_rate,
            run_ms: s.run_ms.into(),
            queue_wait_ms: s.queue_wait_ms.into(),
            tokens: s.tokens.into(),
            cost_usd: s.cost_usd,
            llm_calls: s.llm_calls,
            llm_failures: s.llm_failures,
            successful_requests: s.successful_requests,
            tool_calls: s.tool_calls,
            tool_failures: s.tool_failures,
            unpriced_models: s.unpriced_models,
        }
    }
}

/// One bucket: the executions that ended in `[start, next bucket's start)` (the first
/// and last buckets are cut by the range).
#[derive(Object)]
pub struct DashboardBucket {
    pub start: DateTime<Utc>,
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub llm_calls: i64,
    /// Null when no run in the bucket started.
    #[oai(nullable)]
    pub run_ms_p50: Option<f64>,
    #[oai(nullable)]
    pub run_ms_p95: Option<f64>,
}

impl From<SeriesPoint> for DashboardBucket {
    fn from(p: SeriesPoint) -> Self {
        DashboardBucket {
            start: p.start,
            runs: p.runs,
            succeeded: p.succeeded,
            failed: p.failed,
            cancelled: p.cancelled,
            total_tokens: p.total_tokens,
            cost_usd: p.cost_usd,
            llm_calls: p.llm_calls,
            run_ms_p50: p.run_ms_p50,
            run_ms_p95: p.run_ms_p95,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct DashboardTimeseries {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: BucketName,
    /// The zone whose hours and midnights bound the buckets.
    pub time_zone: String,
    /// Every bucket from the one holding `from` to the one holding `to`, oldest first,
    /// empty ones included.
    pub buckets: Vec<DashboardBucket>,
}

#[derive(Object)]
pub struct FailingGraphBody {
    /// Null for the runs of graphs deleted since (counted together).
    #[oai(nullable)]
    pub graph_id: Option<Uuid>,
    #[oai(nullable)]
    pub graph_name: Option<String>,
    pub failed: i64,
    pub runs: i64,
    /// `failed / runs`.
    pub failure_rate: f64,
}

impl From<FailingGraph> for FailingGraphBody {
    fn from(g: FailingGraph) -> Self {
        FailingGraphBody {
            failure_rate: g.failure_rate(),
            graph_id: g.graph_id,
            graph_name: g.graph_name,
            failed: g.failed,
            runs: g.runs,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct FailingGraphPage {
    /// Most failed runs first, ties by graph id.
    pub items: Vec<FailingGraphBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct EndCodeBody {
    /// The end's `error.code`: `cancelled` for cancelled runs, the failure's code for
    /// failed ones.
    pub code: String,
    pub runs: i64,
}

impl From<EndCode> for EndCodeBody {
    fn from(c: EndCode) -> Self {
        EndCodeBody {
            code: c.code,
            runs: c.runs,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct EndCodePage {
    /// Most runs first, ties by code.
    pub items: Vec<EndCodeBody>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct ModelUsageBody {
    /// `provider/model` as the graph names it.
    pub model: String,
    /// Executions that called it.
    pub runs: i64,
    pub llm_calls: i64,
    pub llm_failures: i64,
    pub successful_requests: i64,
    pub tokens: TokensBody,
    pub cost_usd: f64,
    /// False when the price table did not know it for some run (those calls cost 0).
    pub priced: bool,
}

impl From<ModelUsage> for ModelUsageBody {
    fn from(m: ModelUsage) -> Self {
        ModelUsageBody {
            model: m.model,
            runs: m.runs,
            llm_calls: m.llm_calls,
            llm_failures: m.llm_failures,
            successful_requests: m.successful_requests,
            tokens: m.tokens.into(),
            cost_usd: m.cost_usd,
            priced: m.priced,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ModelUsagePage {
    /// Most LLM calls first, ties by model.
    pub items: Vec<ModelUsageBody>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// Maps a core page to a body page.
pub fn page_items<T, B: From<T>>(page: RankPage<T>) -> (Vec<B>, Option<String>) {
    (
        page.items.into_iter().map(Into::into).collect(),
        page.next_cursor,
    )
}

fn example_tokens() -> TokensBody {
    TokensBody {
        prompt: 38_000,
        completion: 3_200,
        cached_prompt: 1_024,
        total: 41_200,
    }
}

impl Example for DashboardSummary {
    fn example() -> Self {
        DashboardSummary {
            from: example_time() - Duration::days(7),
            to: example_time(),
            runs: 100,
            succeeded: 90,
            failed: 8,
            cancelled: 2,
            success_rate: Some(0.9),
            run_ms: PercentilesBody {
                p50: Some(4_210.0),
                p95: Some(18_950.5),
            },
            queue_wait_ms: PercentilesBody {
                p50: Some(12.0),
                p95: Some(240.0),
            },
            tokens: example_tokens(),
            cost_usd: 0.0412,
            llm_calls: 210,
            llm_failures: 3,
            successful_requests: 207,
            tool_calls: 64,
            tool_failures: 1,
            unpriced_models: vec!["ollama/llama3".into()],
        }
    }
}

impl Example for DashboardTimeseries {
    fn example() -> Self {
        let start = example_time() - Duration::days(1);
        DashboardTimeseries {
            from: start,
            to: example_time(),
            bucket: BucketName::Day,
            time_zone: "UTC".into(),
            buckets: vec![DashboardBucket {
                start,
                runs: 14,
                succeeded: 12,
                failed: 1,
                cancelled: 1,
                total_tokens: 5_800,
                cost_usd: 0.0061,
                llm_calls: 29,
                run_ms_p50: Some(3_900.0),
                run_ms_p95: Some(12_400.0),
            }],
        }
    }
}

impl Example for FailingGraphPage {
    fn example() -> Self {
        FailingGraphPage {
            items: vec![FailingGraphBody {
                graph_id: Some(Uuid::from_u128(0x0193_5f7e_9d2e_7b3c_9d2e_4f60_1a2b_3c4d)),
                graph_name: Some("Research crew".into()),
                failed: 5,
                runs: 20,
                failure_rate: 0.25,
            }],
            next_cursor: None,
        }
    }
}

impl Example for EndCodePage {
    fn example() -> Self {
        EndCodePage {
            items: vec![
                EndCodeBody {
                    code: "llm_error".into(),
                    runs: 6,
                },
                EndCodeBody {
                    code: "cancelled".into(),
                    runs: 2,
                },
            ],
            next_cursor: None,
        }
    }
}

impl Example for ModelUsagePage {
    fn example() -> Self {
        ModelUsagePage {
            items: vec![ModelUsageBody {
                model: "openai/gpt-4o-mini".into(),
                runs: 98,
                llm_calls: 205,
                llm_failures: 3,
                successful_requests: 202,
                tokens: example_tokens(),
                cost_usd: 0.0412,
                priced: true,
            }],
            next_cursor: None,
        }
    }
}
