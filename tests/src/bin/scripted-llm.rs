//! `scripted-llm --addr 127.0.0.1:8089 [--script FILE.json] [--latency-ms N]`: the scripted
//! OpenAI/Anthropic-compatible server (docs/development.md) for benchmarks and the no-key
//! demo. Without a script it answers every request in echo mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};

#[derive(Debug, Parser)]
#[command(
    name = "scripted-llm",
    about = "Scripted OpenAI/Anthropic-compatible LLM server"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8089")]
    addr: SocketAddr,
    /// Script (JSON); echo mode when absent.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Latency added to every reply, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Keep every request in memory (only useful to the library API; off for benchmarks).
    #[arg(long)]
    record: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut script = match &args.script {
        None => Script::default(),
        Some(path) => match read_script(path) {
            Ok(script) => script,
            Err(message) => {
                log("scripted-llm cannot start", &[("error", &message)]);
                return ExitCode::FAILURE;
            }
        },
    };
    script.latency_ms += args.latency_ms;
    let server = match ScriptedLlm::start_at(args.addr, script, args.record).await {
        Ok(server) => server,
        Err(error) => {
            log(
                "scripted-llm cannot start",
                &[("error", &format!("cannot listen on {}: {error}", args.addr))],
            );
            return ExitCode::FAILURE;
        }
    };
    log(
        "scripted-llm listening",
        &[("addr", &server.addr().to_string())],
    );
    tokio::select! {
        _ = server.wait() => ExitCode::FAILURE,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}

fn read_script(path: &PathBuf) -> Result<Script, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|error| format!("invalid script {}: {error}", path.display()))
}

/// One JSON log line on stdout.
fn log(message: &str, fields: &[(&str, &str)]) {
    let mut line = serde_json::Map::new();
    line.insert("message".to_owned(), message.into());
    for (key, value) in fields {
        line.insert((*key).to_owned(), (*value).into());
    }
    println!("{}", serde_json::Value::Object(line));
}
