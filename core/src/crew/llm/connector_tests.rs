//! Connecting specs: keys stay hidden, URLs are built per provider, and base URLs pass
//! the outbound policy before anything is sent.

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
async fn a_providers_default_on_this_machine_needs_the_allow_list() {
    let connector = HttpLlmConnector::new(static_key("sk-x")).expect("client");
    let ollama = LlmSpec::model("ollama/llama3");
    let refused = connector
        .client(&ollama)
        .await
        .expect_err("loopback default");
    assert_eq!(refused.code(), "llm_address_refused");
    let allowed = connector.clone().with_policy(OutboundPolicy::new(
        parse_allowed_hosts("127.0.0.1:11434").expect("entry"),
    ));
    assert!(allowed.client(&ollama).await.is_ok(), "allow-listed Ollama");
    assert!(
        connector
            .client(&LlmSpec::model("openai/gpt-4o-mini"))
            .await
            .is_ok(),
        "a public default is trusted"
    );
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
    let connector = HttpLlmConnector::new(Arc::new(StaticCredentials::default())).expect("client");
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

#[tokio::test]
async fn the_operators_fallback_is_trusted_as_written_whatever_path_the_provider_adds() {
    let fallback = "http://10.0.0.5:11434";
    let connector = HttpLlmConnector::new(Arc::new(StaticCredentials::new(
        Some(fallback.to_owned()),
        None,
    )))
    .expect("client")
    .with_policy(OutboundPolicy::default().trusting(Some(fallback)));
    assert!(
        connector
            .client(&LlmSpec::model("ollama/llama3"))
            .await
            .is_ok(),
        "Ollama's /v1 suffix does not make the fallback foreign"
    );
}
