//! A real MLflow tracking server for the MLflow tests, and a proxy that loses an answer.
//!
//! The server is the pinned release `scripts/ensure-mlflow` installs; `scripts/test`
//! exports its path as `CREWGRAPH_TEST_MLFLOW`. It is started with `setsid` on a port
//! checked free, under a small shell that also watches the test process: the process group
//! is killed when its [`MlflowServer`] is dropped, or when the test process ends however it
//! ends (the server shared by a test binary is never dropped). It answers `/health` 20–30 s
//! after start on an idle machine; [`START_TIMEOUT`] allows for a busy one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;

pub const MLFLOW_ENV: &str = "CREWGRAPH_TEST_MLFLOW";
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct MlflowServer {
    pub port: u16,
    dir: PathBuf,
    shell: Child,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn mlflow_binary() -> PathBuf {
    match std::env::var_os(MLFLOW_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{MLFLOW_ENV} is not set: the MLflow tests need a real MLflow server. Run \
             `export {MLFLOW_ENV}=$(scripts/ensure-mlflow)` first (scripts/test does it)"
        ),
    }
}

impl MlflowServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> MlflowServer {
        Self::start_on(free_port()).await
    }

    /// Starts a server on `port` (one the product already points at) and waits for it.
    pub async fn start_on(port: u16) -> MlflowServer {
        let binary = mlflow_binary();
        let dir = std::env::temp_dir().join(format!(
            "crewgraph-mlflow-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(dir.join("artifacts")).expect("MLflow directory");
        let log = std::fs::File::create(dir.join("server.log")).expect("MLflow log file");
        let log_err = log.try_clone().expect("MLflow log file");
        // The shell runs the server in the background and, once the test process is gone,
        // ends the whole group (itself last): TERM, then KILL for whatever outlives it
        // (MLflow's job consumers take their time), removing the server's files between.
        let watchdog = r#"watched=$1; dir=$2; shift 2
"$@" &
server=$!
while kill -0 "$watched" 2>/dev/null; do sleep 1; done
trap '' TERM
kill -TERM 0
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$server" 2>/dev/null || break; sleep 1; done
rm -rf "$dir"
kill -KILL 0"#;
        let shell = Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("sh")
            .arg(std::process::id().to_string())
            .arg(&dir)
            .arg(&binary)
            .args(["server", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(dir.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1"])
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let server = MlflowServer { port, dir, shell };
        server.wait_healthy().await;
        server
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let health = client
                .get(format!("{}/health", self.uri()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(health, Ok(ref r) if r.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "MLflow did not answer /health within {START_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The server every test of this test binary may share (each test uses its own
    /// experiments: its own user, workspace and graph).
    pub async fn shared() -> &'static MlflowServer {
        static SHARED: OnceCell<MlflowServer> = OnceCell::const_new();
        SHARED.get_or_init(MlflowServer::start).await
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // setsid made the shell the leader of a new process group: end all of it, and
        // force what is still there after a while.
        let group = format!("-{}", self.shell.id());
        let signal = |name: &str| {
            Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        signal("-TERM");
        let _ = self.shell.wait();
        for _ in 0..100 {
            if !signal("-0") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-KILL");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client for MLflow's REST API, as the tests read it.
pub struct MlflowApi {
    pub uri: String,
    client: reqwest::Client,
}

impl MlflowApi {
    pub fn new(uri: String) -> Self {
        MlflowApi {
            uri,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.uri))
            .query(query)
            .send()
            .await
            .expect("MLflow GET");
        let status = response.status();
        let body: Value = response.json().await.expect("MLflow JSON");
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.uri))
            .json(&body)
            .send()
            .await
            .expect("MLflow POST");
        let status = response.status();
        let body: Value = response.json().await.expect("MLflow JSON");
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    pub async fn run(&self, run_id: &str) -> Value {
        self.get("/api/2.0/mlflow/runs/get", &[("run_id", run_id)])
            .await["run"]
            .clone()
    }

    /// Every run of the experiment tagged with this execution id.
    pub async fn runs_of_execution(&self, experiment_id: &str, execution_id: &str) -> Vec<Value> {
        let body = self
            .post(
                "/api/2.0/mlflow/runs/search",
                json!({
                    "experiment_ids": [experiment_id],
                    "filter": format!("tags.`crewgraph.execution_id` = '{execution_id}'"),
                    "max_results": 100,
                }),
            )
            .await;
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    /// A metric's points as (step, value).
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Vec<(i64, f64)> {
        let body = self
            .get(
                "/api/2.0/mlflow/metrics/get-history",
                &[("run_id", run_id), ("metric_key", key)],
            )
            .await;
        let mut points: Vec<(i64, f64)> = body["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["step"].as_i64().unwrap_or_default(),
                    m["value"].as_f64().unwrap_or_default(),
                )
            })
            .collect();
        points.sort_by_key(|p| p.0);
        points
    }

    /// The traces of an experiment linked to a run.
    pub async fn traces_of_run(&self, experiment_id: &str, run_id: &str) -> Vec<Value> {
        let body = self
            .post(
                "/api/3.0/mlflow/traces/search",
                json!({
                    "locations": [{"type": "MLFLOW_EXPERIMENT",
                                   "mlflow_experiment": {"experiment_id": experiment_id}}],
                    "filter": format!("request_metadata.`mlflow.sourceRun` = '{run_id}'"),
                    "max_results": 100,
                }),
            )
            .await;
        body["traces"].as_array().cloned().unwrap_or_default()
    }
}

/// A TCP proxy to MLflow that forwards everything but loses the answer to the first
/// `runs/create` request: MLflow creates the run, the product sees its connection close.
pub struct LossyProxy {
    pub addr: SocketAddr,
    /// How many answers it lost (at most one).
    pub lost: Arc<AtomicUsize>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    pub async fn start(target_port: u16) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let lost = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let accept_loop = tokio::spawn({
            let lost = lost.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (lost, armed) = (lost.clone(), armed.clone());
                    tokio::spawn(async move {
                        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
                        if let Ok(upstream) = TcpStream::connect(target).await {
                            relay(client, upstream, armed, lost).await;
                        }
                    });
                }
            }
        });
        LossyProxy {
            addr,
            lost,
            accept_loop,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Forwards one connection both ways. HTTP/1.1 clients send a request only after the
/// previous answer, so what comes back after a `runs/create` request is its answer: the
/// first such answer is dropped with the connection.
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    armed: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let losing = Arc::new(AtomicBool::new(false));
    let requests = {
        let losing = losing.clone();
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if buffer[..n].starts_with(b"POST /api/2.0/mlflow/runs/create ")
                    && armed.swap(false, Ordering::SeqCst)
                {
                    losing.store(true, Ordering::SeqCst);
                }
                if upstream_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let answers = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match upstream_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if losing.load(Ordering::SeqCst) {
                lost.fetch_add(1, Ordering::SeqCst);
                break; // the run exists; its answer goes nowhere
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        () = requests => {},
        () = answers => {},
    }
}
