//! Starting the real `crewgraph-api` and `crewgraph-worker` binaries.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::TestDatabase;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a workspace binary, next to the test executable's `deps/` folder. The README's
/// test command (`cargo test --workspace`) builds them: `api/` and `worker/` have
/// integration tests of their own, which makes cargo build their binaries first.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let parent = exe.parent().expect("executable directory");
    // Test executables live in `<profile>/deps/`, binaries (benchmarks) in `<profile>/`.
    let dir = if parent.ends_with("deps") {
        parent.parent().expect("profile directory")
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --workspace --bins` (`cargo test --workspace` does)",
        path.display()
    );
    path
}

/// A running binary whose log lines (stdout and stderr) are collected.
pub struct TestProcess {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl TestProcess {
    /// Starts `binary` with exactly `env` (nothing inherited, so a developer's shell or
    /// `.env` cannot change what a test sees) and JSON logs.
    pub fn start(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary_path(binary));
        command.args(args);
        Self::spawn(command, env)
    }

    /// Like [`TestProcess::start`], with the soft open-file limit lowered to `soft_limit`
    /// first (through `sh -c 'ulimit -Sn N; exec ...'`, so the pid is the binary's).
    pub fn start_with_open_file_limit(
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
        soft_limit: u64,
    ) -> Self {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft_limit} && exec \"$0\" \"$@\""))
            .arg(binary_path(binary))
            .args(args);
        Self::spawn(command, env)
    }

    fn spawn(mut command: Command, env: &[(&str, &str)]) -> Self {
        let workdir = std::env::temp_dir();
        command
            .env_clear()
            .env("CREWGRAPH_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // Workers of parallel tests must not fight over the default port; a worker
            // logs the port it got (`http_addr` on "crewgraph-worker ready").
            .env("CREWGRAPH_WORKER_HTTP_ADDR", "127.0.0.1:0")
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn binary");
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(collect_lines(stdout, logs.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(collect_lines(stderr, logs.clone()));
        }
        TestProcess {
            child,
            logs,
            readers,
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Log lines parsed as JSON (lines that are not JSON are skipped).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until a JSON log line satisfies `predicate`, and returns it.
    pub async fn wait_for_log(
        &mut self,
        timeout: Duration,
        predicate: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.json_logs().into_iter().find(|l| predicate(l)) {
                return Some(line);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // Give the readers a moment to drain what the process printed last.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return self.json_logs().into_iter().find(|l| predicate(l));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("process is running")
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its exit code, once everything it
    /// printed has been collected.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let code = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => return None,
        };
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        code
    }
}

fn collect_lines(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut logs) = logs.lock() {
                logs.push(line);
            }
        }
    })
}

/// A running `crewgraph-api` and a client for it.
pub struct TestApi {
    pub base_url: String,
    pub client: reqwest::Client,
    pub process: TestProcess,
}

impl TestApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request")
    }

    pub fn logs(&self) -> Vec<String> {
        self.process.logs()
    }
}

/// Starts the API on a free loopback port against `db`.
pub async fn spawn_api(db: &TestDatabase) -> TestApi {
    spawn_api_with(&db.url, &[]).await
}

/// Starts the API against any database URL, with extra environment variables.
pub async fn spawn_api_with(database_url: &str, env: &[(&str, &str)]) -> TestApi {
    spawn_api_with_args(database_url, &[], env).await
}

/// Starts the API with command-line arguments (e.g. `--migrate`).
pub async fn spawn_api_with_args(
    database_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> TestApi {
    let vars = api_env(database_url, env);
    api_listening(TestProcess::start("crewgraph-api", args, &vars)).await
}

/// The environment every test API gets on top of its own variables.
pub fn api_env<'a>(database_url: &'a str, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("DATABASE_URL", database_url),
        ("CREWGRAPH_API_ADDR", "127.0.0.1:0"),
    ];
    vars.extend_from_slice(env);
    vars
}

/// Waits for a started `crewgraph-api` to listen and returns a client for it.
pub async fn api_listening(mut process: TestProcess) -> TestApi {
    let listening = process
        .wait_for_log(START_TIMEOUT, |line| {
            line["message"] == "crewgraph-api listening"
        })
        .await;
    let Some(listening) = listening else {
        panic!(
            "crewgraph-api did not start; its output:\n{}",
            process.logs().join("\n")
        );
    };
    let addr = listening["addr"].as_str().expect("addr field").to_string();
    TestApi {
        base_url: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        process,
    }
}
