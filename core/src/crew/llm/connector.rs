//! [`HttpLlmConnector`]: turns an [`LlmSpec`] into an OpenAI or Anthropic client over
//! pooled HTTP clients. Keys and base URLs come from a [`CredentialSource`]; a base URL a
//! user chose must pass the [`OutboundPolicy`] before anything is sent to it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};

use super::anthropic::{ANTHROPIC_VERSION, AnthropicClient};
use super::endpoint::{Endpoint, secret_header};
use super::openai::OpenAiClient;
use super::provider::{ModelRoute, Provider, WireApi};
use super::transport::HttpLlmOptions;
use super::{LlmClient, LlmConnector, LlmError};
use crate::crew::spec::LlmSpec;
use crate::outbound::{OutboundPolicy, PublicOnlyResolver, Route};

/// Azure OpenAI's API version when none is configured (the current GA version).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// Where a spec's key and base URL come from.
#[derive(Clone, Default)]
pub struct Credentials {
    pub api_key: Option<SecretString>,
    pub base_url: Option<String>,
    /// Azure OpenAI's `api-version`.
    pub api_version: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// Resolves credentials for one model (the worker's source decrypts the owner's key
/// named by `LlmSpec::api_key_id`).
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync {
    async fn resolve(&self, spec: &LlmSpec, provider: Provider) -> Result<Credentials, LlmError>;
}

/// The same base URL and/or key for every spec (tests, `crewgraph-worker run`).
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    pub credentials: Credentials,
}

impl StaticCredentials {
    pub fn new(base_url: Option<String>, api_key: Option<SecretString>) -> Self {
        StaticCredentials {
            credentials: Credentials {
                api_key,
                base_url,
                api_version: None,
            },
        }
    }
}

#[async_trait::async_trait]
impl CredentialSource for StaticCredentials {
    async fn resolve(&self, _: &LlmSpec, _: Provider) -> Result<Credentials, LlmError> {
        Ok(self.credentials.clone())
    }
}

/// The environment variables LiteLLM reads: `OPENAI_API_KEY`, `OPENAI_BASE_URL` /
/// `OPENAI_API_BASE`, `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` / `ANTHROPIC_API_BASE`,
/// `AZURE_API_KEY`, `AZURE_API_BASE`, `AZURE_API_VERSION`, `OLLAMA_API_BASE`, and for
/// other prefixes `<PREFIX>_API_KEY` / `<PREFIX>_API_BASE` (e.g. `GROQ_API_KEY`).
#[derive(Clone)]
pub struct EnvCredentials {
    vars: HashMap<String, String>,
}

impl fmt::Debug for EnvCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvCredentials").finish_non_exhaustive()
    }
}

impl EnvCredentials {
    /// Reads the process environment now.
    pub fn from_env() -> Self {
        EnvCredentials::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        EnvCredentials {
            vars: vars
                .into_iter()
                .filter(|(_, value)| !value.trim().is_empty())
                .collect(),
        }
    }

    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|name| self.vars.get(*name).cloned())
    }

    pub fn credentials(&self, spec: &LlmSpec, provider: Provider) -> Credentials {
        let (keys, bases): (Vec<String>, Vec<String>) = match provider {
            Provider::OpenAi => (
                vec!["OPENAI_API_KEY".into()],
                vec!["OPENAI_BASE_URL".into(), "OPENAI_API_BASE".into()],
            ),
            Provider::Anthropic => (
                vec!["ANTHROPIC_API_KEY".into()],
                vec!["ANTHROPIC_BASE_URL".into(), "ANTHROPIC_API_BASE".into()],
            ),
            Provider::Azure => (
                vec!["AZURE_API_KEY".into(), "AZURE_OPENAI_API_KEY".into()],
                vec!["AZURE_API_BASE".into(), "AZURE_OPENAI_ENDPOINT".into()],
            ),
            Provider::Ollama => (Vec::new(), vec!["OLLAMA_API_BASE".into()]),
            Provider::OpenAiCompatible => {
                let prefix = spec
                    .model
                    .split_once('/')
                    .map(|(prefix, _)| prefix.to_ascii_uppercase().replace('-', "_"));
                match prefix {
                    Some(prefix) => (
                        vec![format!("{prefix}_API_KEY"), "OPENAI_API_KEY".into()],
                        vec![format!("{prefix}_API_BASE")],
                    ),
                    None => (vec!["OPENAI_API_KEY".into()], Vec::new()),
                }
            }
        };
        let key_names: Vec<&str> = keys.iter().map(String::as_str).collect();
        let base_names: Vec<&str> = bases.iter().map(String::as_str).collect();
        Credentials {
            api_key: self.first(&key_names).map(SecretString::from),
            base_url: self.first(&base_names),
            api_version: match provider {
                Provider::Azure => self.first(&["AZURE_API_VERSION", "OPENAI_API_VERSION"]),
                _ => None,
            },
        }
    }
}

#[async_trait::async_trait]
impl CredentialSource for EnvCredentials {
    async fn resolve(&self, spec: &LlmSpec, provider: Provider) -> Result<Credentials, LlmError> {
        Ok(self.credentials(spec, provider))
    }
}

/// Sampling parameters sent when set (CrewAI drops `None`s).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SamplingParams {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
}

/// Connects specs to OpenAI-compatible or Anthropic clients over two shared, pooled
/// HTTP clients: one for endpoints the operator trusts, one for endpoints users chose.
#[derive(Clone)]
pub struct HttpLlmConnector {
    /// Providers' default URLs, the operator's fallback, allow-listed hosts.
    trusted_http: reqwest::Client,
    /// Everything else: names must resolve to public addresses when connecting; no
    /// proxy (it would connect for us, unchecked) and no redirects (a `Location` may
    /// name an IP literal, which no resolver sees).
    public_http: reqwest::Client,
    credentials: Arc<dyn CredentialSource>,
    options: Arc<HttpLlmOptions>,
    policy: Arc<OutboundPolicy>,
}

impl fmt::Debug for HttpLlmConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLlmConnector")
            .field("options", &self.options)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl HttpLlmConnector {
    pub fn new(credentials: Arc<dyn CredentialSource>) -> Result<Self, LlmError> {
        HttpLlmConnector::with_options(credentials, HttpLlmOptions::default())
    }

    /// A connector whose user-chosen base URLs must be public ([`OutboundPolicy::default`]);
    /// see [`HttpLlmConnector::with_policy`].
    pub fn with_options(
        credentials: Arc<dyn CredentialSource>,
        options: HttpLlmOptions,
    ) -> Result<Self, LlmError> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(options.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .user_agent(concat!("crewgraph/", env!("CARGO_PKG_VERSION")))
        };
        let public_only = builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnlyResolver));
        let build = |builder: reqwest::ClientBuilder| {
            builder.build().map_err(|error| {
                LlmError::Configuration(format!("cannot build the HTTP client: {error}"))
            })
        };
        Ok(HttpLlmConnector {
            trusted_http: build(builder())?,
            public_http: build(public_only)?,
            credentials,
            options: Arc::new(options),
            policy: Arc::new(OutboundPolicy::default()),
        })
    }

    /// The same connector under another outbound policy (the operator's allow-list and
    /// fallback endpoint; [`OutboundPolicy::unrestricted`] for local runs).
    pub fn with_policy(mut self, policy: OutboundPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// The same pooled HTTP clients with other credentials (one connector per run owner).
    pub fn with_credentials(&self, credentials: Arc<dyn CredentialSource>) -> Self {
        HttpLlmConnector {
            credentials,
            ..self.clone()
        }
    }

    /// The HTTP client allowed to call `base_url` (`chosen` when a graph or a stored key
    /// named it, not the provider's default). A provider's public default is trusted; a
    /// default on this machine (Ollama's `127.0.0.1:11434`) is the worker's own loopback
    /// and needs the allow-list like any other.
    fn http_for(&self, base_url: &str, chosen: bool) -> Result<reqwest::Client, LlmError> {
        match self.policy.check_base_url(base_url) {
            Ok(Route::Trusted) => Ok(self.trusted_http.clone()),
            Ok(Route::PublicOnly) if chosen => Ok(self.public_http.clone()),
            Ok(Route::PublicOnly) => Ok(self.trusted_http.clone()),
            Err(refusal) => Err(LlmError::AddressRefused(refusal.to_string())),
        }
    }

    /// The concrete client for a spec (what [`LlmConnector::connect`] boxes).
    pub async fn client(&self, spec: &LlmSpec) -> Result<HttpLlmClient, LlmError> {
        let route = ModelRoute::parse(&spec.model)?;
        let credentials = self.credentials.resolve(spec, route.provider).await?;
        let explicit_base_url = spec
            .base_url
            .as_deref()
            .or(credentials.base_url.as_deref())
            .filter(|url| !url.trim().is_empty());
        let base_url = route.base_url(explicit_base_url)?;
        // A chosen URL is judged as given (the provider may append a path, which must not
        // make the operator's exact fallback URL look foreign).
        let http = self.http_for(
            explicit_base_url.unwrap_or(&base_url),
            explicit_base_url.is_some(),
        )?;
        let api_key = credentials
            .api_key
            .filter(|key| !key.expose_secret().trim().is_empty());
        if api_key.is_none() && route.provider.requires_api_key(&base_url) {
            return Err(LlmError::Configuration(format!(
                "no API key for the {} model {:?}: store a provider key or set {}",
                route.provider,
                spec.model,
                match route.provider {
                    Provider::Anthropic => "ANTHROPIC_API_KEY",
                    Provider::Azure => "AZURE_API_KEY",
                    _ => "OPENAI_API_KEY",
                }
            )));
        }
        let request_timeout = match spec.timeout {
            Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
                Duration::from_secs_f64(seconds.min(86_400.0))
            }
            Some(seconds) => {
                return Err(LlmError::Configuration(format!(
                    "the timeout must be a positive number of seconds, not {seconds}"
                )));
            }
            None => self.options.default_request_timeout,
        };
        let (url, headers) = request_target(
            &route,
            &base_url,
            api_key.as_ref(),
            credentials.api_version.as_deref(),
        )?;
        let endpoint = Endpoint {
            http,
            url,
            headers,
            secret: api_key,
            request_timeout,
            options: self.options.clone(),
        };
        let params = SamplingParams {
            temperature: spec.temperature,
            top_p: spec.top_p,
            max_tokens: spec.max_tokens,
            seed: spec.seed,
        };
        let model = spec.model.clone();
        Ok(match route.provider.wire_api() {
            WireApi::Messages => HttpLlmClient::Anthropic(AnthropicClient::new(
                model,
                route.wire_model,
                params,
                spec.stream,
                endpoint,
            )),
            WireApi::ChatCompletions => HttpLlmClient::OpenAi(OpenAiClient::new(
                model,
                route.wire_model,
                params,
                spec.stream,
                endpoint,
            )),
        })
    }
}

/// The URL to POST to and its authentication and version headers (key values marked
/// sensitive).
fn request_target(
    route: &ModelRoute,
    base_url: &str,
    api_key: Option<&SecretString>,
    api_version: Option<&str>,
) -> Result<(String, HeaderMap), LlmError> {
    let mut headers = HeaderMap::new();
    let url = match route.provider {
        Provider::Anthropic => {
            if let Some(key) = api_key {
                headers.insert("x-api-key", secret_header(key.expose_secret())?);
            }
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
            anthropic_messages_url(base_url)
        }
        Provider::Azure => {
            if let Some(key) = api_key {
                headers.insert("api-key", secret_header(key.expose_secret())?);
            }
            let version = api_version.unwrap_or(DEFAULT_AZURE_API_VERSION);
            let mut url = url::Url::parse(&format!(
                "{base_url}/openai/deployments/{}/chat/completions",
                route.wire_model
            ))
            .map_err(|error| {
                LlmError::Configuration(format!("invalid Azure deployment URL: {error}"))
            })?;
            url.query_pairs_mut().append_pair("api-version", version);
            url.to_string()
        }
        _ => {
            if let Some(key) = api_key {
                headers.insert(
                    AUTHORIZATION,
                    secret_header(&format!("Bearer {}", key.expose_secret()))?,
                );
            }
            format!("{base_url}/chat/completions")
        }
    };
    Ok((url, headers))
}

/// `…/v1/messages` from a base URL with or without `/v1` (LiteLLM accepts both).
fn anthropic_messages_url(base_url: &str) -> String {
    if base_url.ends_with("/v1/messages") {
        base_url.to_owned()
    } else if base_url.ends_with("/v1") {
        format!("{base_url}/messages")
    } else {
        format!("{base_url}/v1/messages")
    }
}

#[async_trait::async_trait]
impl LlmConnector for HttpLlmConnector {
    async fn connect(&self, spec: &LlmSpec) -> Result<Arc<dyn LlmClient>, LlmError> {
        Ok(match self.client(spec).await? {
            HttpLlmClient::OpenAi(client) => Arc::new(client),
            HttpLlmClient::Anthropic(client) => Arc::new(client),
        })
    }
}

/// A connected client of either API.
#[derive(Debug)]
pub enum HttpLlmClient {
    OpenAi(OpenAiClient),
    Anthropic(AnthropicClient),
}

#[cfg(test)]
#[path = "connector_tests.rs"]
mod tests;
