//! `crewgraph-worker`: claims queued executions and runs crews (DESIGN §1, §3).

mod local_run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crewgraph_core::config::{Component, Config};
use crewgraph_core::{open_files, telemetry};

mod claim_loop;
mod context;
mod event_writer;
mod execute;
mod http;
mod listener;
mod maintenance;
mod running;
mod sink;
mod work;

/// Exit code for invalid configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "crewgraph-worker",
    version,
    about = "crewgraph worker: runs crews"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Claim and run queued executions (the default).
    Work,
    /// Run one graph (or CrewSpec) locally, without a database, printing its events.
    Run(local_run::RunArgs),
    /// Ask the local worker's `/health` (CREWGRAPH_WORKER_HTTP_ADDR); exit 0 when healthy,
    /// 1 otherwise (for a container HEALTHCHECK).
    Health,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Runs without the worker's configuration (no database, no CREWGRAPH_* variables).
    if let Some(Command::Run(args)) = cli.command {
        return local_run::main(args).await;
    }
    if let Some(Command::Health) = cli.command {
        return health().await;
    }
    let config = match Config::from_env(Component::Worker) {
        Ok(config) => config,
        Err(e) => {
            eprint!("crewgraph-worker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(&config.log);
    open_files::raise_limit();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Every process that can end a run prices it the same way.
    crewgraph_core::metrics::prices::install(config.prices.clone());
    let result = match cli.command.unwrap_or(Command::Work) {
        Command::Work => work::run(config).await,
        Command::Run(args) => return local_run::main(args).await,
        Command::Health => return health().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "crewgraph-worker stopped with an error"
            );
            ExitCode::FAILURE
        }
    }
}

/// `crewgraph-worker health`: only the monitoring settings matter (no secrets needed).
async fn health() -> ExitCode {
    let config = match Config::from_env(Component::Maintenance) {
        Ok(config) => config,
        Err(e) => {
            eprint!("crewgraph-worker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match http::check(&config.monitoring).await {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("crewgraph-worker: {problem}");
            ExitCode::FAILURE
        }
    }
}
