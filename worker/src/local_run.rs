//! `crewgraph-worker run`: runs one graph document (or `CrewSpec`) locally, with no
//! database and no `CREWGRAPH_*` configuration, and prints its events on stdout as JSON
//! lines `{"seq", "type", "ts", "data"}` as they happen, then the `CrewOutput` as the last
//! line. Problems go to stderr; the exit code says what happened (see [`exit`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use clap::Args;
use crewgraph_core::crew::llm::{
    CredentialSource, Credentials, EnvCredentials, HttpLlmConnector, LlmError, Provider,
    StaticCredentials,
};
use crewgraph_core::crew::tools::ToolRegistry;
use crewgraph_core::crew::{
    CrewOutput, CrewSpec, EventSink, LlmSpec, RunDeps, RunError, RuntimeEvent, run_crew,
};
use crewgraph_core::executions::lifecycle::Outcome;
use crewgraph_core::graph::compile::compile;
use crewgraph_core::graph::problems::{Problem, Severity};
use crewgraph_core::graph::validate::validate;
use crewgraph_core::outbound::OutboundPolicy;
use crewgraph_core::shutdown;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Exit codes of `crewgraph-worker run`.
pub mod exit {
    /// The run failed (an LLM error, a task failure, a time-out...).
    pub const RUN_FAILED: u8 = 1;
    /// The command line or a file it names cannot be read (clap also uses 2).
    pub const USAGE: u8 = 2;
    /// The graph or spec is invalid, or the inputs do not fill its placeholders
    /// (sysexits' EX_DATAERR).
    pub const INVALID: u8 = 65;
    /// Interrupted by Ctrl-C (SIGINT) or SIGTERM: 128 + SIGINT, as shells report it.
    pub const CANCELLED: u8 = 130;
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("crew").required(true).args(["graph", "spec"])))]
pub struct RunArgs {
    /// A graph document (JSON, as the API stores it), validated and compiled first.
    #[arg(long, value_name = "FILE")]
    graph: Option<PathBuf>,
    /// A compiled `CrewSpec` (JSON) instead of a graph.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Kickoff inputs: a JSON object, or `@file.json`.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    inputs: String,
    /// Base URL for every model (e.g. `http://127.0.0.1:8089/v1`), overriding
    /// OPENAI_BASE_URL and the like.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Name of the environment variable holding the API key for every model, overriding
    /// OPENAI_API_KEY and the like.
    #[arg(long, value_name = "NAME")]
    api_key_env: Option<String>,
}

/// Why the command stopped before or during the run.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Failure {
            code: exit::INVALID,
            message: message.into(),
        }
    }
}

/// Runs the command; never reads the worker's configuration.
pub async fn main(args: RunArgs) -> ExitCode {
    init_logging();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("crewgraph-worker run: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Logs go to stderr (stdout carries the events), `RUST_LOG` filtered, warnings by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

async fn run(args: RunArgs) -> Result<(), Failure> {
    let inputs = read_inputs(&args.inputs)?;
    let tools = ToolRegistry::builtin();
    let spec = match (&args.graph, &args.spec) {
        (Some(path), _) => spec_from_graph(path, &tools, &inputs)?,
        (None, Some(path)) => {
            serde_json::from_value::<CrewSpec>(read_json(path)?).map_err(|error| {
                Failure::invalid(format!("{} is not a CrewSpec: {error}", path.display()))
            })?
        }
        (None, None) => return Err(Failure::usage("give --graph FILE or --spec FILE")),
    };
    let credentials = LocalCredentials::new(&args)?;
    // The operator's own graph on the operator's own machine: no other user's input is
    // involved, so no address is refused (a local Ollama or vLLM is the common case).
    let connector = HttpLlmConnector::new(Arc::new(credentials))
        .map_err(|error| Failure::usage(error.to_string()))?
        .with_policy(OutboundPolicy::unrestricted());
    let deps = RunDeps {
        connector: Arc::new(connector),
        tools,
    };

    let (sink, printer) = StdoutSink::start();
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signals = tokio::spawn(async move {
        shutdown::signal().await;
        on_signal.cancel();
    });
    let result = run_crew(&spec, &inputs, deps, &sink, cancel).await;
    signals.abort();
    let outcome = match &result {
        Err(RunError::Cancelled) => Outcome::cancelled("interrupted by a signal"),
        result => Outcome::of_run(result),
    };
    sink.emit(outcome.terminal_event());
    // Every event is on stdout before the result line.
    drop(sink);
    let _ = printer.await;
    match result {
        Ok(output) => print_result(&output),
        Err(RunError::Cancelled) => Err(Failure {
            code: exit::CANCELLED,
            message: "the run was cancelled".into(),
        }),
        Err(error @ (RunError::InvalidInputs(_) | RunError::InvalidCrew(_))) => {
            Err(Failure::invalid(format!("{} ({})", error, error.code())))
        }
        Err(error) => Err(Failure {
            code: exit::RUN_FAILED,
            message: format!("the run failed ({}): {error}", error.code()),
        }),
    }
}

fn print_result(output: &CrewOutput) -> Result<(), Failure> {
    let line = serde_json::to_string(output).map_err(|error| Failure {
        code: exit::RUN_FAILED,
        message: format!("cannot serialise the result: {error}"),
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure {
            code: exit::RUN_FAILED,
            message: format!("cannot write the result: {error}"),
        })
}

/// `--inputs`: a JSON object, or `@path` to a file holding one.
fn read_inputs(argument: &str) -> Result<Map<String, Value>, Failure> {
    let value = match argument.strip_prefix('@') {
        Some(path) => read_json(Path::new(path))?,
        None => serde_json::from_str(argument)
            .map_err(|error| Failure::usage(format!("--inputs is not JSON: {error}")))?,
    };
    match value {
        Value::Object(inputs) => Ok(inputs),
        other => Err(Failure::usage(format!(
            "--inputs must be a JSON object, not {}",
            json_kind(&other)
        ))),
    }
}

fn read_json(path: &Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|error| Failure::usage(format!("{} is not JSON: {error}", path.display())))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Validates and compiles a graph (as `compile_document` does, keeping the warnings), and checks the inputs fill every placeholder, so that
/// no model is called for a run that cannot succeed. Warnings go to stderr.
fn spec_from_graph(
    path: &Path,
    tools: &ToolRegistry,
    inputs: &Map<String, Value>,
) -> Result<CrewSpec, Failure> {
    let document = read_json(path)?;
    let validation = validate(
        &document,
        &|name| tools.contains(name),
        &OutboundPolicy::unrestricted(),
    );
    let Some(plan) = validation.plan else {
        let problems = validation.problems;
        let errors = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let mut message = format!(
            "the graph {} is invalid ({errors} error(s), {} warning(s)):",
            path.display(),
            problems.len() - errors
        );
        for problem in &problems {
            let _ = write!(message, "\n  {}", describe(problem));
        }
        return Err(Failure::invalid(message));
    };
    // A valid document can still carry warnings.
    for problem in &validation.problems {
        eprintln!("crewgraph-worker run: {}", describe(problem));
    }
    let spec = compile(&document, &plan);
    let missing: Vec<&str> = plan
        .inputs
        .iter()
        .map(String::as_str)
        .filter(|name| !inputs.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::invalid(format!(
            "missing input(s): {} (the graph's placeholders need {}; pass them with --inputs '{{\"{}\": \"...\"}}')",
            missing.join(", "),
            plan.inputs.join(", "),
            missing[0]
        )));
    }
    Ok(spec)
}

/// `error graph_cycle (node t1, field description): message`.
fn describe(problem: &Problem) -> String {
    let severity = match problem.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut place = Vec::new();
    if let Some(node) = &problem.node_id {
        place.push(format!("node {node}"));
    }
    if let Some(edge) = &problem.edge_id {
        place.push(format!("edge {edge}"));
    }
    if let Some(field) = &problem.field {
        place.push(format!("field {field}"));
    }
    if let Some(path) = &problem.path {
        place.push(path.clone());
    }
    let place = if place.is_empty() {
        String::new()
    } else {
        format!(" ({})", place.join(", "))
    };
    format!("{severity} {}{place}: {}", problem.code, problem.message)
}

/// The environment's credentials (LiteLLM's variable names), with `--base-url` and
/// `--api-key-env` overriding them for every model.
struct LocalCredentials {
    env: EnvCredentials,
    overrides: StaticCredentials,
}

impl LocalCredentials {
    fn new(args: &RunArgs) -> Result<Self, Failure> {
        let api_key = match &args.api_key_env {
            None => None,
            Some(name) => match std::env::var(name) {
                Ok(key) if !key.trim().is_empty() => Some(SecretString::from(key)),
                _ => {
                    return Err(Failure::usage(format!(
                        "--api-key-env {name}: the environment variable {name} is not set"
                    )));
                }
            },
        };
        Ok(LocalCredentials {
            env: EnvCredentials::from_env(),
            overrides: StaticCredentials::new(args.base_url.clone(), api_key),
        })
    }
}

#[async_trait::async_trait]
impl CredentialSource for LocalCredentials {
    async fn resolve(&self, spec: &LlmSpec, provider: Provider) -> Result<Credentials, LlmError> {
        let from_env = self.env.credentials(spec, provider);
        let overrides = &self.overrides.credentials;
        Ok(Credentials {
            api_key: overrides.api_key.clone().or(from_env.api_key),
            base_url: overrides.base_url.clone().or(from_env.base_url),
            api_version: from_env.api_version,
        })
    }
}

/// Queues events for a printer task (`emit` never blocks on stdout); the printer numbers
/// them in the order they were emitted.
struct StdoutSink {
    events: mpsc::UnboundedSender<(String, RuntimeEvent)>,
}

impl StdoutSink {
    fn start() -> (StdoutSink, tokio::task::JoinHandle<()>) {
        let (events, mut queue) = mpsc::unbounded_channel::<(String, RuntimeEvent)>();
        // A blocking thread: a slow reader of stdout holds up the printer, never the run.
        let printer = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::stdout().lock();
            let mut seq: u64 = 0;
            while let Some((ts, event)) = queue.blocking_recv() {
                seq += 1;
                let line = EventLine {
                    seq,
                    kind: event.type_name(),
                    ts: &ts,
                    data: event.data(),
                };
                let Ok(line) = serde_json::to_string(&line) else {
                    continue;
                };
                if writeln!(stdout, "{line}").is_err() || stdout.flush().is_err() {
                    // stdout is gone (a closed pipe): nothing more can be shown.
                    break;
                }
            }
        });
        (StdoutSink { events }, printer)
    }
}

/// One event on stdout, its keys in this order.
#[derive(Serialize)]
struct EventLine<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    ts: &'a str,
    data: Value,
}

impl EventSink for StdoutSink {
    fn emit(&self, event: RuntimeEvent) {
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let _ = self.events.send((ts, event));
    }
}
