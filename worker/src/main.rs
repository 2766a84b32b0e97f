//! `crewgraph-worker`: claims queued executions and runs crews.
//!
//! This first slice connects, checks the schema, reports ready and stops cleanly on
//! SIGTERM; the claim loop arrives with the execution pipeline.

mod local_run;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use crewgraph_core::config::{Component, Config};
use crewgraph_core::{db, shutdown, telemetry};

/// Exit code for invalid configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// How long the worker waits for the database at start-up before giving up.
const DATABASE_PATIENCE: Duration = Duration::from_secs(60);

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Runs without the worker's configuration (no database, no CREWGRAPH_* variables).
    if let Some(Command::Run(args)) = cli.command {
        return local_run::main(args).await;
    }
    let config = match Config::from_env(Component::Worker) {
        Ok(config) => config,
        Err(e) => {
            eprint!("crewgraph-worker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(&config.log);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let result = match cli.command.unwrap_or(Command::Work) {
        Command::Work => work(config).await,
        Command::Run(args) => return local_run::main(args).await,
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

async fn work(config: Config) -> anyhow::Result<()> {
    let stop = shutdown::signal();
    tokio::pin!(stop);
    let db = tokio::select! {
        db = db::connect_with_patience(&config.database, DATABASE_PATIENCE) => db?,
        () = &mut stop => return Ok(()),
    };
    let pending = crewgraph_migrations::pending_migrations(&db).await?;
    if !pending.is_empty() {
        anyhow::bail!(
            "the database schema is not up to date ({} pending migration(s)): run `crewgraph-api migrate`",
            pending.len()
        );
    }
    tracing::info!(
        concurrency = config.worker.concurrency,
        "crewgraph-worker ready"
    );
    stop.await;
    tracing::info!("crewgraph-worker stopping");
    db.close().await?;
    tracing::info!("crewgraph-worker stopped");
    Ok(())
}
