//! http_fetch against real sockets on loopback (no internet here): refusals, a redirect
//! to loopback from a trusted server, size caps.

use std::net::SocketAddr;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Answers every connection with `response` (a full HTTP/1.1 response).
async fn serve(response: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    address
}

fn ok_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn redirect_to(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

async fn fetch(tool: &HttpFetch, url: &str) -> Result<String, ToolError> {
    super::super::invoke_tool(tool, json!({ "url": url })).await
}

fn assert_refused(result: Result<String, ToolError>) {
    match result {
        Err(ToolError::Failed(message)) => {
            assert!(
                message.contains("is not a public address")
                    || message.contains("resolves to a non-public address"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn refuses_loopback_private_and_link_local_addresses() {
    let target = serve(ok_response("secret")).await;
    let tool = HttpFetch::default();
    assert_refused(fetch(&tool, &format!("http://{target}/")).await);
    assert_refused(fetch(&tool, &format!("http://localhost:{}/", target.port())).await);
    assert_refused(fetch(&tool, "http://10.1.2.3/").await);
    assert_refused(fetch(&tool, "http://169.254.169.254/latest/meta-data/").await);
    assert_refused(fetch(&tool, &format!("http://[::1]:{}/", target.port())).await);
    assert_refused(fetch(&tool, "http://[::ffff:127.0.0.1]/").await);
    assert_refused(fetch(&tool, "http://0.0.0.0/").await);
    assert_refused(fetch(&tool, "http://192.168.1.1/").await);
    assert_refused(fetch(&tool, "http://[fd00::1]/").await);
    assert_refused(fetch(&tool, "http://224.0.0.1/").await);
}

#[tokio::test]
async fn refuses_other_schemes_and_bad_urls() {
    let tool = HttpFetch::default();
    assert!(matches!(
        fetch(&tool, "file:///etc/passwd").await,
        Err(ToolError::InvalidArguments(message)) if message.contains("only http and https")
    ));
    assert!(matches!(
        fetch(&tool, "not a url").await,
        Err(ToolError::InvalidArguments(_))
    ));
}

#[tokio::test]
async fn a_redirect_to_loopback_is_refused() {
    let secret = serve(ok_response("internal secret")).await;
    let redirector = serve(redirect_to(&format!(
        "http://127.0.0.1:{}/admin",
        secret.port()
    )))
    .await;
    // The operator trusts the redirecting server only, not where it points.
    let tool = HttpFetch::with_trusted(vec![redirector]);
    assert_refused(fetch(&tool, &format!("http://{redirector}/start")).await);

    let to_localhost = serve(redirect_to(&format!("http://localhost:{}/", secret.port()))).await;
    let tool = HttpFetch::with_trusted(vec![to_localhost]);
    assert_refused(fetch(&tool, &format!("http://{to_localhost}/")).await);
}

#[tokio::test]
async fn fetches_trusted_addresses_and_follows_trusted_redirects() {
    let target = serve(ok_response("hello from the page")).await;
    let redirector = serve(redirect_to(&format!("http://{target}/page"))).await;
    let tool = HttpFetch::with_trusted(vec![target, redirector]);
    assert_eq!(
        fetch(&tool, &format!("http://{redirector}/"))
            .await
            .as_deref(),
        Ok("hello from the page")
    );
}

#[tokio::test]
async fn large_answers_are_truncated() {
    let body = "x".repeat(5000);
    let target = serve(ok_response(&body)).await;
    let tool = HttpFetch::with_trusted(vec![target]).with_max_body_bytes(1000);
    let output = fetch(&tool, &format!("http://{target}/"))
        .await
        .expect("fetched");
    assert_eq!(
        output,
        format!("{}\n[truncated at 1000 bytes]", "x".repeat(1000))
    );
}

#[tokio::test]
async fn error_statuses_fail() {
    let target = serve(
        "HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\nconnection: close\r\n\r\ngone".to_string(),
    )
    .await;
    let tool = HttpFetch::with_trusted(vec![target]);
    assert!(matches!(
        fetch(&tool, &format!("http://{target}/")).await,
        Err(ToolError::Failed(message)) if message.contains("404")
    ));
}
