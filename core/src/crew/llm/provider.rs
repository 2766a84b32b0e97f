//! LiteLLM-style model strings (`openai/gpt-4o-mini`, `anthropic/claude-3-5-sonnet-latest`,
//! `ollama/llama3.1`, `azure/<deployment>`, a bare `gpt-4o`) → a provider, the model name
//! sent on the wire, and the base URL to call.

use std::fmt;

use super::LlmError;

pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// Ollama's OpenAI-compatible API.
pub const OLLAMA_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// LiteLLM provider prefixes for OpenAI-compatible services: the prefix is stripped
/// from the model name, as LiteLLM does. Any other prefix is kept (Hugging Face style
/// names such as `meta-llama/Llama-3.1-8B` are model names on vLLM and similar servers).
const OPENAI_COMPATIBLE_PREFIXES: &[&str] = &[
    "hosted_vllm",
    "openrouter",
    "groq",
    "deepseek",
    "together_ai",
    "mistral",
    "lm_studio",
    "xai",
    "fireworks_ai",
    "perplexity",
    "custom_openai",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Ollama,
    /// Azure OpenAI: the model part is the deployment name.
    Azure,
    /// Any other OpenAI-compatible server; needs an explicit base URL.
    OpenAiCompatible,
}

/// Which HTTP API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireApi {
    ChatCompletions,
    Messages,
}

/// The provider of a known LiteLLM prefix (`None`: a prefix kept in the model name).
fn provider_of_prefix(prefix: &str) -> Option<Provider> {
    let is = |name: &str| prefix.eq_ignore_ascii_case(name);
    if is("openai") {
        Some(Provider::OpenAi)
    } else if is("anthropic") {
        Some(Provider::Anthropic)
    } else if is("ollama") || is("ollama_chat") {
        Some(Provider::Ollama)
    } else if is("azure") {
        Some(Provider::Azure)
    } else if OPENAI_COMPATIBLE_PREFIXES.iter().any(|p| is(p)) {
        Some(Provider::OpenAiCompatible)
    } else {
        None
    }
}

/// A bare model name's provider, as LiteLLM infers it: Claude models are Anthropic's,
/// everything else is taken as OpenAI's.
fn provider_of_bare_name(model: &str) -> Provider {
    if model.starts_with("claude") {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    }
}

impl Provider {
    /// The provider a model string is routed to, as [`ModelRoute::parse`] decides it,
    /// without allocating (metrics label every LLM call with it).
    pub fn of_model(model: &str) -> Provider {
        let model = model.trim();
        match model.split_once('/') {
            None => provider_of_bare_name(model),
            Some((prefix, _)) => provider_of_prefix(prefix).unwrap_or(Provider::OpenAiCompatible),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Ollama => "ollama",
            Provider::Azure => "azure",
            Provider::OpenAiCompatible => "openai_compatible",
        }
    }

    pub fn wire_api(self) -> WireApi {
        match self {
            Provider::Anthropic => WireApi::Messages,
            _ => WireApi::ChatCompletions,
        }
    }

    /// Where the provider answers when no base URL is configured.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::OpenAi => Some(OPENAI_BASE_URL),
            Provider::Anthropic => Some(ANTHROPIC_BASE_URL),
            Provider::Ollama => Some(OLLAMA_BASE_URL),
            Provider::Azure | Provider::OpenAiCompatible => None,
        }
    }

    /// Whether calls without an API key are pointless (the hosted services).
    pub fn requires_api_key(self, base_url: &str) -> bool {
        match self {
            Provider::OpenAi => base_url.trim_end_matches('/') == OPENAI_BASE_URL,
            Provider::Anthropic => base_url.trim_end_matches('/') == ANTHROPIC_BASE_URL,
            Provider::Azure => true,
            Provider::Ollama | Provider::OpenAiCompatible => false,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed model string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    pub provider: Provider,
    /// The model name sent in the request body (Azure: the deployment).
    pub wire_model: String,
    /// The LiteLLM prefix as written (`openai`, `groq`, ...), if any.
    pub prefix: Option<String>,
}

impl ModelRoute {
    pub fn parse(model: &str) -> Result<ModelRoute, LlmError> {
        let model = model.trim();
        if model.is_empty() {
            return Err(LlmError::Configuration(
                "the model name is empty".to_owned(),
            ));
        }
        let Some((prefix, rest)) = model.split_once('/') else {
            return Ok(ModelRoute {
                provider: provider_of_bare_name(model),
                wire_model: model.to_owned(),
                prefix: None,
            });
        };
        let known = |provider| {
            if rest.trim().is_empty() {
                Err(LlmError::Configuration(format!(
                    "the model {model:?} names the provider {prefix:?} but no model after the '/'"
                )))
            } else {
                Ok(ModelRoute {
                    provider,
                    wire_model: rest.to_owned(),
                    prefix: Some(prefix.to_owned()),
                })
            }
        };
        match provider_of_prefix(prefix) {
            Some(provider) => known(provider),
            None => Ok(ModelRoute {
                provider: Provider::OpenAiCompatible,
                wire_model: model.to_owned(),
                prefix: Some(prefix.to_owned()),
            }),
        }
    }

    /// The base URL to call: the explicit one (from the spec or the credentials), else
    /// the provider's default. Trailing slashes are removed.
    pub fn base_url(&self, explicit: Option<&str>) -> Result<String, LlmError> {
        let explicit = explicit.map(str::trim).filter(|url| !url.is_empty());
        let url = match (explicit, self.provider.default_base_url()) {
            (Some(url), _) => {
                let parsed = url::Url::parse(url).map_err(|error| {
                    LlmError::Configuration(format!("the base URL {url:?} is invalid: {error}"))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(LlmError::Configuration(format!(
                        "the base URL {url:?} must be http or https"
                    )));
                }
                // LiteLLM's Ollama base URL has no path; its OpenAI-compatible API is under /v1.
                if self.provider == Provider::Ollama && parsed.path().trim_matches('/').is_empty() {
                    format!("{}/v1", url.trim_end_matches('/'))
                } else {
                    url.to_owned()
                }
            }
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                let hint = match self.provider {
                    Provider::Azure => "set AZURE_API_BASE or the LLM's base_url",
                    _ => {
                        "use a known provider prefix (openai/, anthropic/, ollama/, azure/) or set the LLM's base_url"
                    }
                };
                return Err(LlmError::Configuration(format!(
                    "unknown provider {:?} for the model {:?} without a base URL: {hint}",
                    self.prefix.as_deref().unwrap_or(self.provider.name()),
                    self.wire_model
                )));
            }
        };
        Ok(url.trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(model: &str) -> ModelRoute {
        ModelRoute::parse(model).expect("parses")
    }

    #[test]
    fn of_model_names_the_provider_parse_routes_to() {
        for model in [
            "openai/gpt-4o-mini",
            "OpenAI/gpt-4o",
            "anthropic/claude-3-5-sonnet-latest",
            "claude-3-haiku",
            "gpt-4o",
            "ollama_chat/llama3.1",
            "azure/my-deployment",
            "groq/llama-3.1-70b",
            "meta-llama/Llama-3.1-8B",
        ] {
            assert_eq!(Provider::of_model(model), route(model).provider, "{model}");
        }
    }

    #[test]
    fn prefixes_select_the_provider_and_are_stripped() {
        let cases = [
            ("openai/gpt-4o-mini", Provider::OpenAi, "gpt-4o-mini"),
            (
                "anthropic/claude-3-5-sonnet-latest",
                Provider::Anthropic,
                "claude-3-5-sonnet-latest",
            ),
            ("ollama/llama3.1", Provider::Ollama, "llama3.1"),
            ("ollama_chat/llama3.1:8b", Provider::Ollama, "llama3.1:8b"),
            ("azure/my-deployment", Provider::Azure, "my-deployment"),
            ("gpt-4o", Provider::OpenAi, "gpt-4o"),
            (
                "claude-3-haiku-20240307",
                Provider::Anthropic,
                "claude-3-haiku-20240307",
            ),
            (
                "groq/llama-3.1-8b-instant",
                Provider::OpenAiCompatible,
                "llama-3.1-8b-instant",
            ),
            (
                "meta-llama/Llama-3.1-8B-Instruct",
                Provider::OpenAiCompatible,
                "meta-llama/Llama-3.1-8B-Instruct",
            ),
            (
                "openai/meta-llama/Llama-3",
                Provider::OpenAi,
                "meta-llama/Llama-3",
            ),
        ];
        for (model, provider, wire) in cases {
            let parsed = route(model);
            assert_eq!(parsed.provider, provider, "{model}");
            assert_eq!(parsed.wire_model, wire, "{model}");
        }
    }

    #[test]
    fn default_base_urls() {
        assert_eq!(
            route("openai/gpt-4o").base_url(None).expect("url"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            route("anthropic/claude-3-5-sonnet-latest")
                .base_url(None)
                .expect("url"),
            "https://api.anthropic.com"
        );
        assert_eq!(
            route("ollama/llama3.1").base_url(None).expect("url"),
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(
            route("ollama/llama3.1")
                .base_url(Some("http://gpu:11434/"))
                .expect("url"),
            "http://gpu:11434/v1"
        );
        assert_eq!(
            route("gpt-4o")
                .base_url(Some("http://127.0.0.1:9/v1/"))
                .expect("url"),
            "http://127.0.0.1:9/v1"
        );
    }

    #[test]
    fn unknown_provider_needs_a_base_url() {
        let unknown = route("mycloud/some-model");
        match unknown.base_url(None) {
            Err(LlmError::Configuration(message)) => {
                assert!(message.contains("mycloud"), "{message}");
                assert!(message.contains("base_url"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        assert_eq!(
            unknown
                .base_url(Some("http://10.0.0.1:8000/v1"))
                .expect("url"),
            "http://10.0.0.1:8000/v1"
        );
        assert!(matches!(
            route("azure/deployment").base_url(None),
            Err(LlmError::Configuration(_))
        ));
    }

    #[test]
    fn empty_and_invalid_models_are_configuration_errors() {
        for model in ["", "  ", "openai/", "anthropic/ "] {
            assert!(
                matches!(ModelRoute::parse(model), Err(LlmError::Configuration(_))),
                "{model:?}"
            );
        }
        assert!(matches!(
            route("gpt-4o").base_url(Some("not a url")),
            Err(LlmError::Configuration(_))
        ));
        assert!(matches!(
            route("gpt-4o").base_url(Some("ftp://host/v1")),
            Err(LlmError::Configuration(_))
        ));
    }
}
