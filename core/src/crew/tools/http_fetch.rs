//! `http_fetch`: GETs an http(s) URL for an agent, safely on a server. Every resolved
//! address of every hop (redirects are followed by hand) must be public by the one
//! outbound policy ([`crate::outbound`]), and the request connects to the address that
//! was checked (no second DNS lookup). Answers are capped in size and time.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use url::{Host, Url};

use super::{Tool, ToolError};
use crate::outbound::{ResolveError, is_public, resolve_checked};

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_REDIRECTS: usize = 5;

pub struct HttpFetch {
    /// Addresses an operator trusts despite the rules (e.g. an internal docs server).
    trusted: Vec<SocketAddr>,
    max_body_bytes: usize,
    timeout: Duration,
}

impl Default for HttpFetch {
    fn default() -> Self {
        HttpFetch {
            trusted: Vec::new(),
            max_body_bytes: MAX_BODY_BYTES,
            timeout: TIMEOUT,
        }
    }
}

impl HttpFetch {
    /// Allows these exact socket addresses even when the rules would refuse them.
    pub fn with_trusted(trusted: Vec<SocketAddr>) -> Self {
        HttpFetch {
            trusted,
            ..HttpFetch::default()
        }
    }

    pub fn with_max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    async fn fetch(&self, start: &str) -> Result<String, ToolError> {
        let mut url = Url::parse(start).map_err(|error| {
            ToolError::InvalidArguments(format!("'{start}' is not a URL: {error}"))
        })?;
        for _ in 0..=MAX_REDIRECTS {
            let (client, checked) = self.client_for(&url).await?;
            let response = client.get(url.clone()).send().await.map_err(|error| {
                ToolError::Failed(format!("GET {url} failed: {}", without_url(&error)))
            })?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| {
                        ToolError::Failed(format!("{url} redirected ({status}) without a Location"))
                    })?;
                url = url.join(location).map_err(|_| {
                    ToolError::Failed(format!("{url} redirected to an invalid URL"))
                })?;
                tracing::debug!(%checked, next = %url, "http_fetch follows a redirect");
                continue;
            }
            let body = self.read_capped(response).await?;
            if !status.is_success() {
                return Err(ToolError::Failed(format!(
                    "GET {url} answered {status}: {body}"
                )));
            }
            return Ok(body);
        }
        Err(ToolError::Failed(format!(
            "too many redirects (more than {MAX_REDIRECTS})"
        )))
    }

    /// Resolves the URL's host, checks every address, and pins the client to the first.
    async fn client_for(&self, url: &Url) -> Result<(reqwest::Client, SocketAddr), ToolError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::InvalidArguments(format!(
                "only http and https URLs can be fetched, not {}",
                url.scheme()
            )));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ToolError::InvalidArguments(format!("{url} has no port")))?;
        let host = url
            .host()
            .ok_or_else(|| ToolError::InvalidArguments(format!("{url} has no host")))?;
        let trusted =
            |address: &SocketAddr| self.trusted.contains(address) || is_public(address.ip());
        let addresses =
            resolve_checked(&host, port, trusted)
                .await
                .map_err(|error| match error {
                    ResolveError::NotPublic { host, ip } => ToolError::Failed(format!(
                        "refused to fetch {url}: {}",
                        crate::outbound::not_public(&host, &ip)
                    )),
                    ResolveError::NoAddress(_) => {
                        ToolError::Failed(format!("{url} resolves to no address"))
                    }
                    unresolvable => ToolError::Failed(unresolvable.to_string()),
                })?;
        let first = addresses[0];
        let domain = match host {
            Host::Domain(domain) => Some(domain.to_string()),
            Host::Ipv4(_) | Host::Ipv6(_) => None,
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .user_agent(concat!("crewgraph-http-fetch/", env!("CARGO_PKG_VERSION")));
        if let Some(domain) = domain {
            builder = builder.resolve(&domain, first);
        }
        let client = builder
            .build()
            .map_err(|_| ToolError::Failed("the HTTP client could not be built".into()))?;
        Ok((client, first))
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<String, ToolError> {
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            ToolError::Failed(format!(
                "reading the answer failed: {}",
                without_url(&error)
            ))
        })? {
            let room = self.max_body_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if truncated {
            text.push_str(&format!("\n[truncated at {} bytes]", self.max_body_bytes));
        }
        Ok(text)
    }
}

fn without_url(error: &reqwest::Error) -> String {
    let error = error.to_string();
    error
        .split(" for url")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[async_trait::async_trait]
impl Tool for HttpFetch {
    fn name(&self) -> &str {
        "http_fetch"
    }

    fn description(&self) -> &str {
        "Fetches a public web page or API over HTTP(S) with a GET request and returns the response body as text (at most 1 MiB)."
    }

    fn args_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "description": "The http:// or https:// URL to fetch",
                    "minLength": 1,
                    "maxLength": 2048
                }
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    async fn run(&self, args: Value) -> Result<String, ToolError> {
        let url = args
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::InvalidArguments("`url` must be text".into()))?;
        match tokio::time::timeout(self.timeout, self.fetch(url)).await {
            Ok(result) => result,
            Err(_) => Err(ToolError::Failed(format!(
                "GET {url} did not finish within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
#[path = "http_fetch_tests.rs"]
mod tests;
