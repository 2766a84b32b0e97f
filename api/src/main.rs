//! `crewgraph-api`: serve the API (default), `migrate`, or print the OpenAPI document.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use crewgraph_api::startup::{AppState, Application, openapi_json};
use crewgraph_core::config::{Component, Config};
use crewgraph_core::{db, open_files, telemetry};

/// Exit code for invalid configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// How long `migrate` and `--migrate` wait for the database to come up.
const DATABASE_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(name = "crewgraph-api", version, about = "crewgraph REST/SSE API")]
struct Cli {
    /// Apply pending database migrations before serving.
    #[arg(long)]
    migrate: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document and exit (no database needed).
    Openapi,
    /// Re-encrypt every stored provider key with the newest CREWGRAPH_ENCRYPTION_KEYS version.
    RotateKeys,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!("{}", openapi_json());
        return ExitCode::SUCCESS;
    }
    let component = match command {
        Command::Migrate => Component::Maintenance,
        // Needs the encryption keys (and refuses the dev key in production) like a worker.
        Command::RotateKeys => Component::Worker,
        _ => Component::Api,
    };
    let config = match Config::from_env(component) {
        Ok(config) => config,
        Err(e) => {
            eprint!("crewgraph-api: {e}");
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
    let result = match command {
        Command::Migrate => migrate(&config).await,
        Command::RotateKeys => rotate_keys(&config).await,
        _ => serve(config, cli.migrate).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "crewgraph-api stopped with an error"
            );
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = db::connect_with_patience(&config.database, DATABASE_PATIENCE).await?;
    let applied = crewgraph_migrations::migrate_up(&db).await?;
    tracing::info!(applied = ?applied, "migrations up to date");
    db.close().await?;
    Ok(())
}

async fn rotate_keys(config: &Config) -> anyhow::Result<()> {
    let db = db::connect_with_patience(&config.database, DATABASE_PATIENCE).await?;
    let pending = crewgraph_migrations::pending_migrations(&db).await?;
    anyhow::ensure!(
        pending.is_empty(),
        "the schema is not up to date: run `crewgraph-api migrate` first"
    );
    let rotated = crewgraph_core::auth::provider_keys::rotate_all(&db, &config.encryption_keys)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (version, _) = config.encryption_keys.newest();
    tracing::info!(rotated, key_version = version, "provider keys re-encrypted");
    db.close().await?;
    Ok(())
}

async fn serve(config: Config, migrate_first: bool) -> anyhow::Result<()> {
    if migrate_first {
        migrate(&config).await?;
    }
    let db = db::connect_lazy(&config.database).await?;
    let database_url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_string();
    let state = AppState::new(db, config);
    // One LISTEN connection for every SSE client of this process.
    tokio::spawn(state.events.clone().run(database_url));
    if let Some(admin) = state.config.auth.admin.clone() {
        tokio::spawn(bootstrap_admin(state.db.clone(), admin));
    }
    let app = Application::bind(state).await?;
    let addr = app
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "?".into());
    tracing::info!(
        addr = %addr,
        docs = %format!("http://{addr}/docs"),
        "crewgraph-api listening"
    );
    app.run_until_stopped().await?;
    tracing::info!("crewgraph-api stopped");
    Ok(())
}

/// Creates the configured admin once the database is reachable and migrated; retries in
/// the background so the API can start (and report not-ready) before the database does.
async fn bootstrap_admin(
    db: sea_orm::DatabaseConnection,
    admin: crewgraph_core::config::BootstrapAdmin,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        match crewgraph_core::auth::users::ensure_bootstrap_admin(&db, &admin).await {
            Ok(Some(user)) => {
                tracing::info!(user_id = %user.id, email = %user.email, "bootstrap admin created");
                return;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "bootstrap admin not created yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
