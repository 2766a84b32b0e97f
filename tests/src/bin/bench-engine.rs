//! `bench-engine`: the crew engine's own cost (DESIGN §7), measured in release mode:
//! `cargo run --release -p crewgraph-tests --bin bench-engine`.
//!
//! 1. Overhead per LLM call: one-task crews, then 10-call ReAct crews with a tool, against
//!    an instant in-process scripted-llm. The same requests sent by a bare reqwest client
//!    are the baseline (what the scripted server and HTTP cost); a crew's wall time minus
//!    the baseline's median is the engine's (prompts, request building, SSE parsing,
//!    events serialised to JSON, tools, output).
//! 2. Memory per concurrent crew: 1,000 crews kept in flight (each ending crew replaced
//!    by a new one for 6 s) against a scripted-llm with 2 s latency, running in a child process so that only the engine's memory is in
//!    this process's RSS.
//!
//! Bounded: a few seconds of work per phase, well under two minutes in all.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crewgraph_core::crew::llm::{HttpLlmConnector, StaticCredentials};
use crewgraph_core::crew::tools::ToolRegistry;
use crewgraph_core::crew::{CrewSpec, EventSink, RunDeps, RuntimeEvent, run_crew};
use crewgraph_core::outbound::OutboundPolicy;
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

/// DESIGN §7: engine overhead per LLM call beyond the provider's own latency.
const OVERHEAD_TARGET_MS: f64 = 0.2;
/// DESIGN §7: 1,000 crews in flight in ≤ 200 MB RSS, i.e. ≤ 200 KB per crew.
const MEMORY_TARGET_KB_PER_CREW: f64 = 200.0;
const ONE_TASK_WARMUP: usize = 300;
const ONE_TASK_CREWS: usize = 5_000;
const REACT_WARMUP: usize = 50;
const REACT_CREWS: usize = 1_000;
const REACT_CALLS: usize = 10;
const CONCURRENT_CREWS: usize = 1_000;
const SLOW_LATENCY_MS: u64 = 2_000;
/// How long phase 3 keeps 1,000 crews in flight.
const SUSTAIN_FOR: Duration = Duration::from_secs(6);
const API_KEY: &str = "sk-bench";
const SERVE_FLAG: &str = "--serve-scripted-llm";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-engine: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.get(1).map(String::as_str) == Some(SERVE_FLAG) {
        let latency_ms = args.get(2).and_then(|ms| ms.parse().ok()).unwrap_or(0);
        runtime.block_on(serve_scripted_llm(latency_ms))
    } else {
        runtime.block_on(bench())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-engine: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    println!("bench-engine: crewgraph engine benchmark (DESIGN §7)");
    if cfg!(debug_assertions) {
        println!(
            "WARNING: this is a debug build; run `cargo run --release -p crewgraph-tests --bin bench-engine`"
        );
    }
    println!(
        "machine: {} CPUs, {}, {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        std::env::consts::ARCH,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!();
    one_task_overhead().await?;
    println!();
    react_overhead().await?;
    println!();
    memory_per_crew().await?;
    Ok(())
}

/// Events serialised to JSON, as every real sink (the event store, `crewgraph-worker
/// run`) does, and counted.
#[derive(Default)]
struct SerialisingSink {
    events: AtomicU64,
    bytes: AtomicU64,
}

impl EventSink for SerialisingSink {
    fn emit(&self, event: RuntimeEvent) {
        let bytes = serde_json::to_vec(&event).map_or(0, |json| json.len());
        self.events.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

fn deps(base_url: &str) -> anyhow::Result<RunDeps> {
    let credentials =
        StaticCredentials::new(Some(base_url.to_owned()), Some(SecretString::from(API_KEY)));
    // The operator's endpoint on loopback, trusted as the worker trusts its fallback.
    let policy = OutboundPolicy::default().trusting(Some(base_url));
    Ok(RunDeps {
        connector: Arc::new(HttpLlmConnector::new(Arc::new(credentials))?.with_policy(policy)),
        tools: ToolRegistry::builtin(),
    })
}

fn one_task_crew() -> anyhow::Result<CrewSpec> {
    crew_spec(Vec::new())
}

fn crew_spec(tools: Vec<&str>) -> anyhow::Result<CrewSpec> {
    Ok(serde_json::from_value(json!({
        "name": "bench",
        "agents": [{"id": "a", "role": "Researcher", "goal": "Find facts about {topic}",
                    "backstory": "A careful researcher.", "tools": tools,
                    "llm": {"model": "openai/gpt-4o-mini"}}],
        "tasks": [{"id": "t", "description": "Research {topic} and greet people",
                   "expected_output": "A short summary", "agent": 0}]
    }))?)
}

fn inputs() -> Map<String, Value> {
    let mut inputs = Map::new();
    inputs.insert("topic".into(), json!("benchmarks"));
    inputs
}

/// Runs one crew to its end; fails unless it made `calls` LLM calls.
async fn run_one(spec: &CrewSpec, deps: &RunDeps, calls: u64) -> anyhow::Result<()> {
    let sink = SerialisingSink::default();
    let output = run_crew(
        spec,
        &inputs(),
        deps.clone(),
        &sink,
        CancellationToken::new(),
    )
    .await?;
    anyhow::ensure!(
        output.token_usage.successful_requests == calls,
        "expected {calls} LLM calls, the crew made {}",
        output.token_usage.successful_requests
    );
    Ok(())
}

/// The request bodies the engine sends for one run of `spec` (from a recording server
/// with the same script).
async fn recorded_requests(
    spec: &CrewSpec,
    script: Script,
    calls: u64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let recorder = ScriptedLlm::start(script).await;
    run_one(spec, &deps(&recorder.openai_base_url())?, calls).await?;
    recorder
        .requests()
        .iter()
        .map(|request| Ok(serde_json::to_vec(&request.body)?))
        .collect()
}

/// The baseline: the same requests through a bare reqwest client, bodies read whole.
struct RawClient {
    http: reqwest::Client,
    url: String,
}

impl RawClient {
    fn new(base_url: &str) -> anyhow::Result<Self> {
        Ok(RawClient {
            http: reqwest::Client::builder().tcp_nodelay(true).build()?,
            url: format!("{base_url}/chat/completions"),
        })
    }

    async fn send(&self, body: &[u8]) -> anyhow::Result<()> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "baseline got {}",
            response.status()
        );
        response.bytes().await?;
        Ok(())
    }
}

/// Milliseconds: each crew's wall time and the baseline's for the same requests,
/// measured alternately so that both see the same machine state.
struct Samples {
    crews: Vec<f64>,
    baseline: Vec<f64>,
}

async fn measure(
    spec: &CrewSpec,
    deps: &RunDeps,
    raw: &RawClient,
    bodies: &[Vec<u8>],
    warmup: usize,
    count: usize,
) -> anyhow::Result<Samples> {
    let calls = bodies.len() as u64;
    let mut samples = Samples {
        crews: Vec::with_capacity(count),
        baseline: Vec::with_capacity(count),
    };
    for round in 0..warmup + count {
        let started = Instant::now();
        for body in bodies {
            raw.send(body).await?;
        }
        let baseline = started.elapsed();
        let started = Instant::now();
        run_one(spec, deps, calls).await?;
        let crew = started.elapsed();
        if round >= warmup {
            samples.baseline.push(millis(baseline));
            samples.crews.push(millis(crew));
        }
    }
    Ok(samples)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

struct Summary {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn summarise(values: &[f64]) -> Summary {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied().unwrap_or(0.0)
    };
    Summary {
        mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        p50: quantile(0.50),
        p99: quantile(0.99),
    }
}

/// Prints both distributions and the overhead per LLM call: each crew's wall time minus
/// the baseline's median (what the scripted server and HTTP cost for the same requests),
/// divided by the calls per crew. Subtracting a constant keeps the crews' own tail in the
/// p99 (the server's tail included, so it errs high, never low).
fn report_overhead(samples: &Samples, calls: usize) {
    let crews = summarise(&samples.crews);
    let baseline = summarise(&samples.baseline);
    let line = |label: &str, s: &Summary| {
        println!(
            "  {label:<34} mean {:>8.4} ms   p50 {:>8.4} ms   p99 {:>8.4} ms",
            s.mean, s.p50, s.p99
        );
    };
    line("crew wall time", &crews);
    line("raw HTTP baseline (same requests)", &baseline);
    let per_call: Vec<f64> = samples
        .crews
        .iter()
        .map(|crew| (crew - baseline.p50) / calls as f64)
        .collect();
    let overhead = summarise(&per_call);
    line("engine overhead per LLM call", &overhead);
    let verdict = |value: f64| {
        if value < OVERHEAD_TARGET_MS {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "  target (DESIGN §7): < {OVERHEAD_TARGET_MS} ms per LLM call -> mean {}, p50 {}, p99 {}",
        verdict(overhead.mean),
        verdict(overhead.p50),
        verdict(overhead.p99)
    );
}

async fn one_task_overhead() -> anyhow::Result<()> {
    println!(
        "[1] engine overhead: {ONE_TASK_CREWS} one-task crews (1 streamed LLM call each), instant in-process scripted-llm"
    );
    let spec = one_task_crew()?;
    let bodies = recorded_requests(&spec, Script::default(), 1).await?;
    let server = quiet_server(Script::default()).await?;
    let deps = deps(&server.openai_base_url())?;
    let raw = RawClient::new(&server.openai_base_url())?;
    let samples = measure(&spec, &deps, &raw, &bodies, ONE_TASK_WARMUP, ONE_TASK_CREWS).await?;
    report_overhead(&samples, 1);
    Ok(())
}

/// A script that makes the agent call `hello_world` nine times, then answer: ten calls.
fn react_script() -> anyhow::Result<Script> {
    let action = |step: usize| {
        format!(
            "Thought: I should greet step{step}\nAction: hello_world\nAction Input: {{\"name\": \"step{step}\"}}"
        )
    };
    let last_tool_step = REACT_CALLS - 1;
    let mut rules = vec![json!({
        "when": {"last_message_contains": format!("Observation: Hello, step{last_tool_step}!")},
        "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: Greeted everyone."}
    })];
    for step in 1..last_tool_step {
        rules.push(json!({
            "when": {"last_message_contains": format!("Observation: Hello, step{step}!")},
            "reply": {"text": action(step + 1)}
        }));
    }
    rules.push(json!({
        "when": {"last_message_contains": "Current Task:"},
        "reply": {"text": action(1)}
    }));
    Ok(serde_json::from_value(
        json!({"rules": rules, "fallback": "error"}),
    )?)
}

async fn react_overhead() -> anyhow::Result<()> {
    println!(
        "[2] engine overhead: {REACT_CREWS} ReAct crews of {REACT_CALLS} streamed LLM calls each (9 hello_world tool uses), instant in-process scripted-llm"
    );
    let spec = crew_spec(vec!["hello_world"])?;
    let calls = REACT_CALLS as u64;
    let bodies = recorded_requests(&spec, react_script()?, calls).await?;
    anyhow::ensure!(
        bodies.len() == REACT_CALLS,
        "recorded {} requests",
        bodies.len()
    );
    let server = quiet_server(react_script()?).await?;
    let deps = deps(&server.openai_base_url())?;
    let raw = RawClient::new(&server.openai_base_url())?;
    let samples = measure(&spec, &deps, &raw, &bodies, REACT_WARMUP, REACT_CREWS).await?;
    report_overhead(&samples, REACT_CALLS);
    Ok(())
}

/// An in-process server that keeps nothing per request.
async fn quiet_server(script: Script) -> anyhow::Result<ScriptedLlm> {
    Ok(ScriptedLlm::start_at(([127, 0, 0, 1], 0).into(), script, false).await?)
}

/// This process's resident set (`VmRSS`), in KiB.
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))
}

async fn memory_per_crew() -> anyhow::Result<()> {
    println!(
        "[3] memory: {CONCURRENT_CREWS} one-task crews kept in flight for {} s, scripted-llm at {SLOW_LATENCY_MS} ms latency in a child process",
        SUSTAIN_FOR.as_secs()
    );
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([SERVE_FLAG, &SLOW_LATENCY_MS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout from the child server"))?;
    let addr = BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the child server printed no address"))?;
    let base_url = format!("http://{addr}/v1");
    let spec = Arc::new(one_task_crew()?);
    let deps = deps(&base_url)?;
    // One crew first: lazily built state (TLS roots, the pool, allocator arenas) is in
    // the "before" figure, not counted as per-crew memory.
    run_one(&spec, &deps, 1).await?;
    let before = rss_kib()?;
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = CancellationToken::new();
    let sampler = {
        let peak = peak.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            while !sampling.is_cancelled() {
                if let Ok(rss) = rss_kib() {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    // Each slot starts a new crew as soon as its last one ends, until the deadline: a
    // steady 1,000 in flight, as a worker would keep them.
    let deadline = started + SUSTAIN_FOR;
    let slots: Vec<_> = (0..CONCURRENT_CREWS)
        .map(|_| {
            let spec = spec.clone();
            let deps = deps.clone();
            tokio::spawn(async move {
                let mut durations = Vec::new();
                loop {
                    let crew_started = Instant::now();
                    run_one(&spec, &deps, 1).await?;
                    durations.push(millis(crew_started.elapsed()));
                    if Instant::now() >= deadline {
                        return anyhow::Ok(durations);
                    }
                }
            })
        })
        .collect();
    let mut failures = 0;
    let mut durations = Vec::new();
    for slot in slots {
        match slot.await {
            Ok(Ok(slot_durations)) => durations.extend(slot_durations),
            _ => failures += 1,
        }
    }
    let elapsed = started.elapsed();
    sampling.cancel();
    let _ = sampler.await;
    let _ = child.kill().await;
    anyhow::ensure!(
        failures == 0,
        "{failures} of {CONCURRENT_CREWS} slots had a crew fail"
    );
    let completed = durations.len();

    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(before);
    let per_crew = growth as f64 / CONCURRENT_CREWS as f64;
    println!(
        "  RSS before {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        growth as f64 / 1024.0
    );
    println!(
        "  memory per concurrent crew: {per_crew:.1} KiB   target (DESIGN §7): <= {MEMORY_TARGET_KB_PER_CREW:.0} KB (1,000 crews in <= 200 MB) -> {}",
        if per_crew <= MEMORY_TARGET_KB_PER_CREW {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  peak RSS with {CONCURRENT_CREWS} crews in flight: {:.1} MiB   target (DESIGN §7): <= 200 MB -> {}",
        peak as f64 / 1024.0,
        if peak as f64 * 1024.0 <= 200_000_000.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    let durations = summarise(&durations);
    println!(
        "  crew wall time (2 s of it the LLM's): mean {:.0} ms, p50 {:.0} ms, p99 {:.0} ms",
        durations.mean, durations.p50, durations.p99
    );
    let rate = completed as f64 / elapsed.as_secs_f64();
    println!(
        "  {completed} crews completed in {:.2} s with {CONCURRENT_CREWS} in flight = {rate:.0} crews/s   target (DESIGN §7, end to end with queue and event store): >= 450 crews/s -> {} for the engine alone (at most {:.0} crews/s are possible at {SLOW_LATENCY_MS} ms)",
        elapsed.as_secs_f64(),
        if rate >= 450.0 { "met" } else { "MISSED" },
        CONCURRENT_CREWS as f64 * 1_000.0 / SLOW_LATENCY_MS as f64
    );
    Ok(())
}

/// The child process of phase 3: a scripted-llm that prints its address, then runs until
/// its stdin closes (the parent exits or kills it).
async fn serve_scripted_llm(latency_ms: u64) -> anyhow::Result<()> {
    let script = Script {
        latency_ms,
        ..Script::default()
    };
    let server = quiet_server(script).await?;
    println!("{}", server.addr());
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        let _ = closed.send(());
    });
    let _ = stdin_closed.await;
    Ok(())
}
