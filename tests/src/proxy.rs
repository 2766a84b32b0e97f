//! A loopback TCP proxy that a test can cut and restore, to make a real network outage
//! between a binary and PostgreSQL without stopping the shared server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    enabled: Arc<AtomicBool>,
    latency_ms: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_loop: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let enabled = Arc::new(AtomicBool::new(true));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept_loop = tokio::spawn({
            let enabled = enabled.clone();
            let latency_ms = latency_ms.clone();
            let connections = connections.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !enabled.load(Ordering::SeqCst) {
                        drop(client); // refused: the peer sees the connection close
                        continue;
                    }
                    let latency_ms = latency_ms.clone();
                    let handle = tokio::spawn(async move {
                        if let Ok(upstream) = TcpStream::connect(target).await {
                            let (client_read, client_write) = client.into_split();
                            let (upstream_read, upstream_write) = upstream.into_split();
                            tokio::join!(
                                forward(client_read, upstream_write, latency_ms.clone()),
                                forward(upstream_read, client_write, latency_ms),
                            );
                        }
                    });
                    connections.lock().await.push(handle);
                }
            }
        });
        TcpProxy {
            addr,
            enabled,
            latency_ms,
            connections,
            accept_loop,
        }
    }

    /// Severs every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        for handle in self.connections.lock().await.drain(..) {
            handle.abort();
        }
    }

    /// Delays every chunk forwarded in either direction (a slow network or database).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// A copy of `database_url` that goes through this proxy.
    pub fn url_via(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).expect("database url");
        url.set_host(Some(&self.addr.ip().to_string()))
            .expect("set host");
        url.set_port(Some(self.addr.port())).expect("set port");
        url.to_string()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        if let Ok(mut connections) = self.connections.try_lock() {
            for handle in connections.drain(..) {
                handle.abort();
            }
        }
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_ms: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = latency_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
