//! The address rules, the allow-list and the static check of base URLs.

use super::*;

fn allow(entries: &str) -> OutboundPolicy {
    OutboundPolicy::new(parse_allowed_hosts(entries).expect("valid allow-list"))
}

#[test]
fn public_addresses_are_allowed() {
    assert!(is_public("93.184.216.34".parse().expect("ip")));
    assert!(is_public("2606:4700::1111".parse().expect("ip")));
    assert!(!is_public("100.64.0.1".parse().expect("ip")));
    assert!(!is_public("fe80::1".parse().expect("ip")));
    assert!(!is_public("::".parse().expect("ip")));
    assert!(!is_public("169.254.169.254".parse().expect("ip")));
    assert!(!is_public("::ffff:10.0.0.1".parse().expect("ip")));
}

#[test]
fn allow_list_entries_are_hosts_with_an_optional_port() {
    let hosts = parse_allowed_hosts(" ollama.internal:11434, 127.0.0.1 ,,[::1]:8000,::1,GPU:80")
        .expect("valid");
    let shown: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "ollama.internal:11434",
            "127.0.0.1",
            "[::1]:8000",
            "[::1]",
            "gpu:80"
        ]
    );
    for bad in ["http://x", "x/y", "user@x", "x:notaport", "x:70000", "a b"] {
        assert!(parse_allowed_hosts(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_allowed_hosts("").expect("empty"), []);
}

#[test]
fn the_static_check_refuses_non_public_literals_and_local_names() {
    let policy = OutboundPolicy::default();
    for url in [
        "http://127.0.0.1:5432",
        "http://169.254.169.254/latest",
        "http://[::1]:8000/v1",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.7/v1",
        "http://2130706433/",
        "http://localhost:11434/v1",
        "http://LocalHost./v1",
        "http://metadata.google.internal/",
        "http://ollama:11434",
        "http://printer.local/",
    ] {
        let refusal = policy.check_base_url(url).expect_err(url);
        assert!(
            refusal.to_string().contains("CREWGRAPH_LLM_ALLOWED_HOSTS"),
            "{refusal}"
        );
    }
    assert_eq!(
        policy
            .check_base_url("http://user:pw@127.0.0.1:5432/x")
            .expect_err("loopback")
            .target,
        "127.0.0.1:5432",
        "never the credentials or the path"
    );
    assert_eq!(
        policy.check_base_url("https://api.groq.com/openai/v1"),
        Ok(Route::PublicOnly)
    );
    assert_eq!(
        policy.check_base_url("http://8.8.8.8/v1"),
        Ok(Route::PublicOnly)
    );
}

#[test]
fn allowed_hosts_and_trusted_urls_pass() {
    let policy =
        allow("127.0.0.1:5432,localhost,ollama:11434").trusting(Some("http://10.1.1.1:9000/v1/"));
    assert_eq!(
        policy.check_base_url("http://127.0.0.1:5432/v1"),
        Ok(Route::Trusted)
    );
    assert!(
        policy.check_base_url("http://127.0.0.1:6379").is_err(),
        "another port"
    );
    assert_eq!(
        policy.check_base_url("http://localhost:1234"),
        Ok(Route::Trusted)
    );
    assert_eq!(
        policy.check_base_url("http://ollama:11434/v1"),
        Ok(Route::Trusted)
    );
    assert!(policy.check_base_url("http://ollama:22").is_err());
    assert_eq!(
        policy.check_base_url("http://10.1.1.1:9000/v1"),
        Ok(Route::Trusted),
        "the operator's fallback"
    );
    assert!(
        policy.check_base_url("http://10.1.1.1:9000/admin").is_err(),
        "only the fallback URL itself is trusted"
    );
    // A port-less entry for the default port: `host:80` matches `http://host`.
    assert_eq!(
        allow("gpu:80").check_base_url("http://gpu/v1"),
        Ok(Route::Trusted)
    );
    assert_eq!(
        OutboundPolicy::unrestricted().check_base_url("http://169.254.169.254"),
        Ok(Route::Trusted)
    );
}

#[tokio::test]
async fn resolution_refuses_names_with_any_non_public_address() {
    let refused = resolve_checked(&Host::Domain("localhost"), 80, |a| is_public(a.ip()))
        .await
        .expect_err("localhost is loopback");
    assert!(matches!(refused, ResolveError::NotPublic { ref host, .. } if host == "localhost"));
    let literal = resolve_checked(&Host::Ipv4(Ipv4Addr::new(8, 8, 8, 8)), 443, |a| {
        is_public(a.ip())
    })
    .await
    .expect("a public literal needs no DNS");
    assert_eq!(literal, [SocketAddr::from(([8, 8, 8, 8], 443))]);
}

#[test]
fn validation_flags_refused_base_urls_on_llm_nodes_only() {
    use crate::graph::document::NodeKind;
    use crate::graph::validate::validate_node;
    let data = |url: &str| {
        serde_json::json!({"model": "openai/gpt-4o", "base_url": url})
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let strict = OutboundPolicy::default();
    let problems = validate_node(
        NodeKind::Llm,
        "m",
        data("http://169.254.169.254"),
        &|_| true,
        &strict,
    );
    let found: Vec<(&str, Option<&str>, Option<&str>)> = problems
        .iter()
        .map(|p| (p.code, p.node_id.as_deref(), p.field.as_deref()))
        .collect();
    assert_eq!(
        found,
        [("base_url_not_allowed", Some("m"), Some("base_url"))]
    );
    // Malformed URLs get the field rule's own problem, not a second one.
    let malformed = validate_node(NodeKind::Llm, "m", data("ftp://x"), &|_| true, &strict);
    assert!(malformed.iter().all(|p| p.code != "base_url_not_allowed"));
    let allowed = allow("169.254.169.254");
    assert!(
        validate_node(
            NodeKind::Llm,
            "m",
            data("http://169.254.169.254"),
            &|_| true,
            &allowed
        )
        .is_empty()
    );
}

#[test]
fn a_names_private_address_is_not_told() {
    let ip: IpAddr = "10.1.2.3".parse().expect("ip");
    assert_eq!(
        not_public("db.internal.example", &ip),
        "db.internal.example resolves to a non-public address"
    );
    assert_eq!(
        not_public("10.1.2.3", &ip),
        "10.1.2.3 is not a public address"
    );
    let v6: IpAddr = "::1".parse().expect("ip");
    assert_eq!(not_public("[::1]", &v6), "::1 is not a public address");
}

#[test]
fn ollama_models_without_a_base_url_need_the_allow_list() {
    use crate::graph::document::{Node, NodeKind};
    let node = |kind, field: &str, value: &str| Node {
        id: "n".into(),
        kind,
        y: 0.0,
        data: serde_json::json!({ field: value })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    for (node, field) in [
        (node(NodeKind::Llm, "model", "ollama/llama3.1"), "model"),
        (node(NodeKind::Agent, "llm", "ollama/llama3.1"), "llm"),
    ] {
        let mut problems = Problems::new();
        check_llm_node_base_url(&node, &OutboundPolicy::default(), &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "base_url_not_allowed");
        assert_eq!(problems[0].field.as_deref(), Some(field));
        let mut allowed = Problems::new();
        check_llm_node_base_url(&node, &allow("127.0.0.1:11434"), &mut allowed);
        assert!(allowed.is_empty(), "{allowed:?}");
    }
    let mut public = Problems::new();
    check_llm_node_base_url(
        &node(NodeKind::Agent, "llm", "openai/gpt-4o-mini"),
        &OutboundPolicy::default(),
        &mut public,
    );
    assert!(public.is_empty());
}
