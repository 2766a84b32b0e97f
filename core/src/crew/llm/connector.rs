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

    /// The HTTP client allowed to call `base_url`; `None` for a provider's default.
    fn http_for(&self, explicit_base_url: Option<&str>) -> Result<reqwest::Client, LlmError> {
        let Some(base_url) = explicit_base_url else {
            return Ok(self.trusted_http.clone());
        };
        match self.policy.check_base_url(base_url) {
            Ok(Route::Trusted) => Ok(self.trusted_http.clone()),
            Ok(Route::PublicOnly) => Ok(self.public_http.clone()),
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
        let http = self.http_for(explicit_base_url)?;
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
        let mut headers = HeaderMap::new();
        let url = match route.provider {
            Provider::Anthropic => {
                if let Some(key) = &api_key {
                    headers.insert("x-api-key", secret_header(key.expose_secret())?);
                }
                headers.insert(
                    "anthropic-version",
                    HeaderValue::from_static(ANTHROPIC_VERSION),
                );
                anthropic_messages_url(&base_url)
            }
            Provider::Azure => {
                if let Some(key) = &api_key {
                    headers.insert("api-key", secret_header(key.expose_secret())?);
                }
                let version = credentials
                    .api_version
                    .as_deref()
                    .unwrap_or(DEFAULT_AZURE_API_VERSION);
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
                if let Some(key) = &api_key {
                    headers.insert(
                        AUTHORIZATION,
                        secret_header(&format!("Bearer {}", key.expose_secret()))?,
                    );
                }
                format!("{base_url}/chat/completions")
            }
        };
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
mod tests {
    use super::*;
    use crate::outbound::parse_allowed_hosts;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback listener that counts the connections it accepts.
    async fn counting_listener() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn refused_base_urls_fail_before_anything_is_sent() {
        let (target, accepted) = counting_listener().await;
        let connector = HttpLlmConnector::new(static_key("sk-x")).expect("client");
        for base_url in [
            format!("http://{target}/v1"),
            format!("http://localhost:{}/v1", target.port()),
            "http://169.254.169.254/latest".to_owned(),
        ] {
            let spec = LlmSpec {
                base_url: Some(base_url.clone()),
                ..LlmSpec::model("openai/gpt-4o-mini")
            };
            let refused = connector.client(&spec).await.expect_err("refused");
            assert_eq!(refused.code(), "llm_address_refused", "{base_url}");
        }
        // A stored key's (or any credential's) base URL is checked the same way.
        let from_credentials = HttpLlmConnector::new(Arc::new(StaticCredentials::new(
            Some(format!("http://{target}/v1")),
            None,
        )))
        .expect("client");
        let refused = from_credentials
            .client(&LlmSpec::model("openai/gpt-4o-mini"))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), "llm_address_refused");
        assert_eq!(accepted.load(Ordering::SeqCst), 0);

        let allowed = connector.clone().with_policy(OutboundPolicy::new(
            parse_allowed_hosts(&target.to_string()).expect("entry"),
        ));
        let spec = LlmSpec {
            base_url: Some(format!("http://{target}/v1")),
            ..LlmSpec::model("openai/gpt-4o-mini")
        };
        assert!(allowed.client(&spec).await.is_ok(), "allow-listed");
        let trusting = connector
            .with_policy(OutboundPolicy::default().trusting(Some(&format!("http://{target}/v1/"))));
        assert!(trusting.client(&spec).await.is_ok(), "the operator's own");
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_when_connecting() {
        let (target, accepted) = counting_listener().await;
        let connector = HttpLlmConnector::new(static_key("sk-x")).expect("client");
        // `localhost` passes no static check here: this is the resolver's own refusal,
        // which a DNS answer changed after validation would meet too.
        let error = connector
            .public_http
            .post(format!(
                "http://localhost:{}/v1/chat/completions",
                target.port()
            ))
            .send()
            .await
            .expect_err("refused by the resolver");
        let failure = super::super::transport::send_failure(&error, None);
        assert_eq!(
            failure.error.code(),
            "llm_address_refused",
            "{:?}",
            failure.error
        );
        assert!(!failure.retryable);
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    fn static_key(key: &str) -> Arc<dyn CredentialSource> {
        Arc::new(StaticCredentials::new(
            None,
            Some(SecretString::from(key.to_owned())),
        ))
    }

    #[tokio::test]
    async fn debug_output_never_shows_the_key() {
        let connector = HttpLlmConnector::new(static_key("sk-very-secret-key")).expect("client");
        for model in ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-latest"] {
            let client = connector
                .client(&LlmSpec::model(model))
                .await
                .expect("connects");
            let debug = format!("{client:?}");
            assert!(!debug.contains("sk-very-secret-key"), "{debug}");
            assert!(debug.contains("[REDACTED]"), "{debug}");
        }
        let credentials = Credentials {
            api_key: Some(SecretString::from("sk-very-secret-key")),
            ..Credentials::default()
        };
        assert!(!format!("{credentials:?}").contains("sk-very-secret-key"));
    }

    #[tokio::test]
    async fn hosted_providers_need_a_key_and_azure_builds_its_url() {
        let connector =
            HttpLlmConnector::new(Arc::new(StaticCredentials::default())).expect("client");
        let missing = connector.client(&LlmSpec::model("gpt-4o")).await;
        assert!(
            matches!(missing, Err(LlmError::Configuration(message)) if message.contains("OPENAI_API_KEY"))
        );
        let env = EnvCredentials::from_vars([
            ("AZURE_API_KEY".to_owned(), "az-key".to_owned()),
            (
                "AZURE_API_BASE".to_owned(),
                "https://res.openai.azure.com/".to_owned(),
            ),
        ]);
        let connector = HttpLlmConnector::new(Arc::new(env)).expect("client");
        let client = connector
            .client(&LlmSpec::model("azure/my-gpt4o"))
            .await
            .expect("connects");
        let HttpLlmClient::OpenAi(client) = client else {
            panic!("azure speaks chat completions")
        };
        let debug = format!("{client:?}");
        assert!(
            debug.contains("https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"),
            "{debug}"
        );
    }

    #[test]
    fn env_credentials_follow_litellm_names() {
        let env = EnvCredentials::from_vars([
            ("OPENAI_API_KEY".to_owned(), "sk-openai".to_owned()),
            ("OPENAI_API_BASE".to_owned(), "http://proxy/v1".to_owned()),
            ("ANTHROPIC_API_KEY".to_owned(), "sk-ant".to_owned()),
            ("GROQ_API_KEY".to_owned(), "gsk".to_owned()),
            ("OLLAMA_API_BASE".to_owned(), "http://gpu:11434".to_owned()),
        ]);
        let key = |model: &str, provider| {
            env.credentials(&LlmSpec::model(model), provider)
                .api_key
                .map(|key| key.expose_secret().to_owned())
        };
        assert_eq!(
            key("gpt-4o", Provider::OpenAi).as_deref(),
            Some("sk-openai")
        );
        assert_eq!(
            key("anthropic/claude", Provider::Anthropic).as_deref(),
            Some("sk-ant")
        );
        assert_eq!(
            key("groq/llama", Provider::OpenAiCompatible).as_deref(),
            Some("gsk")
        );
        assert_eq!(
            env.credentials(&LlmSpec::model("gpt-4o"), Provider::OpenAi)
                .base_url
                .as_deref(),
            Some("http://proxy/v1")
        );
        assert_eq!(
            env.credentials(&LlmSpec::model("ollama/llama3.1"), Provider::Ollama)
                .base_url
                .as_deref(),
            Some("http://gpu:11434")
        );
        assert_eq!(anthropic_messages_url("http://h"), "http://h/v1/messages");
        assert_eq!(
            anthropic_messages_url("http://h/v1"),
            "http://h/v1/messages"
        );
    }
}
