//! Where a run's model credentials come from: the key an llm node names, else the run
//! owner's newest stored key for the provider, else the operator's fallback endpoint
//! (`CREWGRAPH_FALLBACK_LLM_BASE_URL`, which the Quickstart points at `scripted-llm`).
//! Keys are decrypted here, just before the provider is called, and never logged.

use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use uuid::Uuid;

use crate::auth::provider_keys::{self, KeyChoice};
use crate::config::EncryptionKeys;
use crate::crew::llm::{CredentialSource, Credentials, LlmError, Provider};
use crate::crew::spec::LlmSpec;

/// The operator's endpoint for models whose owner stored no key.
#[derive(Clone, Default)]
pub struct Fallback {
    pub base_url: Option<String>,
    pub api_key: Option<SecretString>,
}

pub struct OwnerCredentials {
    pub db: DatabaseConnection,
    pub keys: std::sync::Arc<EncryptionKeys>,
    pub owner: Uuid,
    pub fallback: Fallback,
}

/// The `provider` value of stored keys for a model's provider.
fn stored_provider(provider: Provider) -> &'static str {
    match provider {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Azure => "azure-openai",
        Provider::Ollama => "ollama",
        Provider::OpenAiCompatible => "openai-compatible",
    }
}

#[async_trait::async_trait]
impl CredentialSource for OwnerCredentials {
    async fn resolve(&self, spec: &LlmSpec, provider: Provider) -> Result<Credentials, LlmError> {
        let choice = match spec.api_key_id {
            Some(id) => KeyChoice::ById(id),
            None => KeyChoice::NewestFor(stored_provider(provider)),
        };
        let revealed = provider_keys::reveal(&self.db, &self.keys, self.owner, choice)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "opening a stored provider key failed");
                LlmError::Configuration(
                    "the stored provider key could not be opened; store it again".into(),
                )
            })?;
        match (revealed, spec.api_key_id) {
            (Some(key), _) => Ok(Credentials {
                api_key: Some(key.secret),
                base_url: key.base_url,
                api_version: None,
            }),
            (None, Some(_)) => Err(LlmError::Configuration(
                "the API key this model names does not exist (was it deleted?)".into(),
            )),
            (None, None) => {
                // The operator's key goes to the operator's endpoint only, never to a
                // base URL a graph chose.
                let own_endpoint = spec.base_url.as_deref().is_none_or(|url| {
                    Some(url.trim_end_matches('/')) == self.fallback.base_url.as_deref()
                });
                Ok(Credentials {
                    api_key: self.fallback.api_key.clone().filter(|_| own_endpoint),
                    base_url: self.fallback.base_url.clone(),
                    api_version: None,
                })
            }
        }
    }
}
