//! `RUST_LOG` and the log format.

use super::reader::Reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

pub(super) fn read(reader: &mut Reader<'_>) -> LogConfig {
    let filter = reader.get("RUST_LOG").unwrap_or_else(|| "info".to_string());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
        reader.problem("RUST_LOG", format!("is not a valid log filter ({e})"));
    }
    let format = match reader.get("CREWGRAPH_LOG_FORMAT") {
        None => LogFormat::Pretty,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => {
                reader.problem(
                    "CREWGRAPH_LOG_FORMAT",
                    format!("must be `json` or `pretty`, got `{v}`"),
                );
                LogFormat::Pretty
            }
        },
    };
    LogConfig { filter, format }
}
