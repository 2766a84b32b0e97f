//! MLflow export and traces (see [`crate::mlflow`]): `MLFLOW_TRACKING_URI` and its
//! credentials, the experiment name template, the export job's retries, and the OTLP trace
//! destinations (`OTEL_EXPORTER_OTLP_*`, content capture). Both binaries read it: either
//! can end an execution and so queue its export.

use secrecy::SecretString;

use super::reader::Reader;

pub const DEFAULT_EXPERIMENT_NAME: &str = "crewgraph/{workspace}/{graph}";
/// The placeholders an experiment name template may use.
pub const EXPERIMENT_NAME_PLACEHOLDERS: &[&str] =
    &["{workspace}", "{graph}", "{workspace_id}", "{graph_id}"];
const DEFAULT_MAX_ATTEMPTS: u32 = 30;
const DEFAULT_RETRY_BASE_SECS: u32 = 5;
const DEFAULT_RETRY_MAX_SECS: u32 = 900;

#[derive(Debug, Clone)]
pub struct MlflowConfig {
    /// `None`: no MLflow runs (and no MLflow traces).
    pub tracking: Option<MlflowTracking>,
    /// Another OTLP/HTTP trace destination (Jaeger, Phoenix, Langfuse, a collector...).
    pub otlp: Option<OtlpDestination>,
    /// Prompts, completions, tool arguments and results in spans (off by default).
    pub capture_content: bool,
    /// Runs of one export before it is given up (`failed`).
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with every further one, up to `retry_max_secs`.
    pub retry_base_secs: u32,
    pub retry_max_secs: u32,
}

impl MlflowConfig {
    /// Whether ended executions are exported anywhere.
    pub fn enabled(&self) -> bool {
        self.tracking.is_some() || self.otlp.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct MlflowTracking {
    /// Without a trailing slash.
    pub uri: String,
    pub auth: MlflowAuth,
    /// With [`EXPERIMENT_NAME_PLACEHOLDERS`].
    pub experiment_name: String,
}

#[derive(Debug, Clone)]
pub enum MlflowAuth {
    None,
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

#[derive(Debug, Clone)]
pub struct OtlpDestination {
    /// The full traces URL (`…/v1/traces`).
    pub traces_url: String,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (often an API key): secret.
    pub headers: Vec<(String, SecretString)>,
}

pub(super) fn read(reader: &mut Reader<'_>) -> MlflowConfig {
    let tracking = read_tracking(reader);
    let otlp = read_otlp(reader);
    let capture_content = reader
        .parse_bool("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        .unwrap_or(false);
    let max_attempts = reader
        .parse_ranged(
            "CREWGRAPH_MLFLOW_MAX_ATTEMPTS",
            DEFAULT_MAX_ATTEMPTS,
            1,
            1000,
        )
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    let retry_base_secs = reader
        .parse_ranged(
            "CREWGRAPH_MLFLOW_RETRY_BASE_SECS",
            DEFAULT_RETRY_BASE_SECS,
            1,
            3600,
        )
        .unwrap_or(DEFAULT_RETRY_BASE_SECS);
    let retry_max_secs = reader
        .parse_ranged(
            "CREWGRAPH_MLFLOW_RETRY_MAX_SECS",
            DEFAULT_RETRY_MAX_SECS.max(retry_base_secs),
            retry_base_secs,
            86_400,
        )
        .unwrap_or(DEFAULT_RETRY_MAX_SECS);
    MlflowConfig {
        tracking,
        otlp,
        capture_content,
        max_attempts,
        retry_base_secs,
        retry_max_secs,
    }
}

fn read_tracking(reader: &mut Reader<'_>) -> Option<MlflowTracking> {
    let token = reader.get("MLFLOW_TRACKING_TOKEN").map(SecretString::from);
    let username = reader.get("MLFLOW_TRACKING_USERNAME");
    let password = reader
        .get("MLFLOW_TRACKING_PASSWORD")
        .map(SecretString::from);
    let experiment_name = read_experiment_name(reader);
    let uri = http_url(reader, "MLFLOW_TRACKING_URI")?;
    let auth = match (token, username, password) {
        (Some(token), None, None) => MlflowAuth::Bearer(token),
        (None, Some(username), Some(password)) => MlflowAuth::Basic { username, password },
        (None, None, None) => MlflowAuth::None,
        (Some(_), _, _) => {
            reader.problem(
                "MLFLOW_TRACKING_TOKEN",
                "set either a token or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, not both".into(),
            );
            MlflowAuth::None
        }
        (None, _, _) => {
            reader.problem(
                "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD go together".into(),
            );
            MlflowAuth::None
        }
    };
    Some(MlflowTracking {
        uri,
        auth,
        experiment_name,
    })
}

fn read_experiment_name(reader: &mut Reader<'_>) -> String {
    let Some(template) = reader.get("CREWGRAPH_MLFLOW_EXPERIMENT_NAME") else {
        return DEFAULT_EXPERIMENT_NAME.into();
    };
    let mut rest = template.clone();
    for placeholder in EXPERIMENT_NAME_PLACEHOLDERS {
        rest = rest.replace(placeholder, "");
    }
    if rest.contains('{') || rest.contains('}') {
        reader.problem(
            "CREWGRAPH_MLFLOW_EXPERIMENT_NAME",
            format!(
                "may only use the placeholders {}",
                EXPERIMENT_NAME_PLACEHOLDERS.join(", ")
            ),
        );
        return DEFAULT_EXPERIMENT_NAME.into();
    }
    template.trim().to_string()
}

/// An http(s) URL without credentials in it (they belong in their own variables, which
/// are kept secret), trailing slashes removed.
fn http_url(reader: &mut Reader<'_>, variable: &'static str) -> Option<String> {
    let raw = reader.get(variable)?;
    match url::Url::parse(raw.trim()) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            reader.problem(variable, "must be an http:// or https:// URL".into());
            None
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            reader.problem(
                variable,
                "must not contain credentials: use the variables for them".into(),
            );
            None
        }
        Ok(_) => Some(raw.trim().trim_end_matches('/').to_string()),
        Err(_) => {
            reader.problem(variable, "must be an http:// or https:// URL".into());
            None
        }
    }
}

fn read_otlp(reader: &mut Reader<'_>) -> Option<OtlpDestination> {
    let headers = match reader.get("OTEL_EXPORTER_OTLP_HEADERS") {
        Some(raw) => parse_headers(&raw).unwrap_or_else(|| {
            reader.problem(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "must be comma-separated name=value pairs".into(),
            );
            Vec::new()
        }),
        None => Vec::new(),
    };
    let traces_url = match http_url(reader, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(url) => url,
        None => format!(
            "{}/v1/traces",
            http_url(reader, "OTEL_EXPORTER_OTLP_ENDPOINT")?
        ),
    };
    Some(OtlpDestination {
        traces_url,
        headers,
    })
}

/// The OTLP exporter's header list: `name=value,name2=value2` (values may be
/// percent-encoded, as the specification allows).
fn parse_headers(raw: &str) -> Option<Vec<(String, SecretString)>> {
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .ok()?
                .into_owned();
            valid.then(|| (name.to_string(), SecretString::from(value)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::parse_headers;

    #[test]
    fn otlp_headers_are_name_value_pairs_with_percent_encoded_values() {
        let headers = parse_headers("Authorization=Basic%20YWJj, x-team = a ").expect("valid");
        let plain: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_string()))
            .collect();
        assert_eq!(
            plain,
            vec![
                ("Authorization".to_string(), "Basic YWJj".to_string()),
                ("x-team".to_string(), "a".to_string())
            ]
        );
        assert!(parse_headers("no-equals-sign").is_none());
        assert!(parse_headers("bad name=1").is_none());
    }
}
