//! One PostgreSQL database per test.
//!
//! The schema is migrated once into a template database (keyed by the migrations'
//! fingerprint, built under an advisory lock so parallel test processes agree), and each
//! test gets `CREATE DATABASE ... TEMPLATE`, which copies it in milliseconds.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};

const TEMPLATE_LOCK_KEY: i64 = 0x6372_6577_7465_6d70; // "crewtemp"
const TEST_DB_PREFIX: &str = "cgtest_";
const TEMPLATE_PREFIX: &str = "cgtemplate_";

/// The server the tests use: `DATABASE_URL`'s server (its database name is ignored).
pub fn server_url() -> url::Url {
    let raw = std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let mut url = url::Url::parse(&raw).expect("DATABASE_URL must be a valid URL");
    url.set_path("/postgres");
    url
}

/// The PostgreSQL server's socket address (for proxies that cut it away).
pub fn server_addr() -> std::net::SocketAddr {
    let url = server_url();
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .expect("resolve PostgreSQL host")
        .next()
        .expect("PostgreSQL address")
}

fn url_for(database: &str) -> String {
    let mut url = server_url();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

async fn admin_connection() -> anyhow::Result<PgConnection> {
    PgConnection::connect(server_url().as_str())
        .await
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {}:{} (set DATABASE_URL, or start it)",
                server_url().host_str().unwrap_or("?"),
                server_url().port().unwrap_or(5432)
            )
        })
}

/// A database that exists for one test and is dropped with it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDatabase {
    /// A fresh database with every migration applied.
    pub async fn migrated() -> Self {
        let template = ensure_template().await.expect("template database");
        Self::create(Some(&template)).await
    }

    /// A fresh, empty database (no migrations applied).
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut admin = admin_connection().await.expect("admin connection");
        let statement = match template {
            Some(t) => format!(r#"CREATE DATABASE "{name}" TEMPLATE "{t}""#),
            None => format!(r#"CREATE DATABASE "{name}""#),
        };
        // Concurrent clones of one template can collide briefly; retry a few times.
        let mut attempt = 0;
        loop {
            match admin.execute(statement.as_str()).await {
                Ok(_) => break,
                Err(e) if attempt < 20 && e.to_string().contains("being accessed") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("creating test database {name}: {e}"),
            }
        }
        let url = url_for(&name);
        TestDatabase { name, url }
    }

    /// A plain sqlx connection to this database, for assertions on stored rows.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the blocking work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut admin) = admin_connection().await {
                        let _ = admin
                            .execute(
                                format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)
                                    .as_str(),
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Makes sure the migrated template for the current migrations exists, building it once.
async fn ensure_template() -> anyhow::Result<String> {
    let template = format!("{TEMPLATE_PREFIX}{}", crewgraph_migrations::FINGERPRINT);
    let mut admin = admin_connection().await?;
    admin
        .execute(sqlx::query("SELECT pg_advisory_lock($1)").bind(TEMPLATE_LOCK_KEY))
        .await?;
    let result = build_template_if_missing(&mut admin, &template).await;
    admin
        .execute(sqlx::query("SELECT pg_advisory_unlock($1)").bind(TEMPLATE_LOCK_KEY))
        .await?;
    result.map(|()| template)
}

async fn build_template_if_missing(admin: &mut PgConnection, template: &str) -> anyhow::Result<()> {
    let databases: Vec<String> = sqlx::query("SELECT datname FROM pg_database")
        .fetch_all(&mut *admin)
        .await?
        .into_iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    // Leftovers of test processes that were killed before they could drop their databases.
    for name in &databases {
        let stale_test_db = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        let stale_template = name.starts_with(TEMPLATE_PREFIX) && name != template;
        if stale_test_db || stale_template {
            let _ = admin
                .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                .await;
        }
    }
    if databases.iter().any(|d| d == template) {
        return Ok(());
    }
    let building = format!("{template}_building");
    admin
        .execute(format!(r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#).as_str())
        .await?;
    admin
        .execute(format!(r#"CREATE DATABASE "{building}""#).as_str())
        .await?;
    let db = sea_orm::Database::connect(url_for(&building)).await?;
    crewgraph_migrations::migrate_up(&db).await?;
    db.close().await?;
    admin
        .execute(format!(r#"ALTER DATABASE "{building}" RENAME TO "{template}""#).as_str())
        .await?;
    Ok(())
}
