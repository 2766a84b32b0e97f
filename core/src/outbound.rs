//! The one outbound address policy: which addresses a request a user chose (an LLM base
//! URL, an `http_fetch` URL) may reach from our servers.
//!
//! Only public addresses: loopback, private, link-local (cloud metadata at
//! 169.254.169.254), unique-local, shared (CGNAT), multicast, broadcast, documentation
//! and unspecified addresses are refused. Names are checked by the addresses they
//! resolve to *when the connection is made* (so DNS rebinding cannot slip past a
//! check made earlier). An operator can allow hosts (`host` or `host:port`, e.g.
//! `CREWGRAPH_LLM_ALLOWED_HOSTS`), and endpoints the operator configured (the fallback
//! LLM, providers' default URLs) are trusted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

use crate::graph::document::{Node, NodeKind};
use crate::graph::problems::{Problem, Problems};

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => {
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return is_public_v4(mapped);
            }
            is_public_v6(ip)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let octets = ip.octets();
    let shared = octets[0] == 100 && (octets[1] & 0xc0) == 64; // 100.64.0.0/10
    let this_network = octets[0] == 0; // 0.0.0.0/8
    let reserved = octets[0] >= 240; // 240.0.0.0/4 and broadcast
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || shared
        || this_network
        || reserved)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00; // fc00::/7
    let link_local = (first & 0xffc0) == 0xfe80; // fe80::/10
    let site_local = (first & 0xffc0) == 0xfec0; // fec0::/10 (deprecated)
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    // ::a.b.c.d (IPv4-compatible, deprecated) and NAT64 embed v4 addresses.
    let compatible = ip.segments()[..6].iter().all(|s| *s == 0);
    let nat64 = first == 0x0064 && ip.segments()[1] == 0xff9b;
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || site_local
        || documentation
        || compatible
        || nat64)
}

/// Names that only mean something inside a network (`localhost`, `*.internal`, a
/// single-label name such as a compose service): refused without asking DNS, so that
/// validation (which never resolves) and the worker agree.
pub fn is_local_name(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    const LOCAL_SUFFIXES: &[&str] = &[".localhost", ".local", ".internal", ".home.arpa"];
    domain == "localhost"
        || domain == "localhost.localdomain"
        || !domain.contains('.')
        || LOCAL_SUFFIXES.iter().any(|suffix| domain.ends_with(suffix))
}

/// Why a resolution did not give a usable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} could not be resolved")]
    Unresolvable(String),
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("{}", not_public(.host, .ip))]
    NotPublic { host: String, ip: IpAddr },
}

/// The refusal's text. A name's private address is not told: that would let any user map
/// internal DNS through error messages. (An address the user wrote is theirs already.)
pub fn not_public(host: &str, ip: &IpAddr) -> String {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().ok() == Some(*ip) {
        format!("{ip} is not a public address")
    } else {
        format!("{host} resolves to a non-public address")
    }
}

/// The addresses `host:port` resolves to, each accepted by `accept` (every one, so a
/// name with one private address among public ones is refused). An IP literal is
/// checked as it is.
pub async fn resolve_checked(
    host: &Host<&str>,
    port: u16,
    accept: impl Fn(&SocketAddr) -> bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let (name, addresses): (String, Vec<SocketAddr>) = match host {
        Host::Ipv4(ip) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V4(*ip), port)]),
        Host::Ipv6(ip) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V6(*ip), port)]),
        Host::Domain(domain) => {
            let resolved = tokio::net::lookup_host((*domain, port))
                .await
                .map_err(|_| ResolveError::Unresolvable(domain.to_string()))?
                .collect();
            (domain.to_string(), resolved)
        }
    };
    if addresses.is_empty() {
        return Err(ResolveError::NoAddress(name));
    }
    if let Some(refused) = addresses.iter().find(|address| !accept(address)) {
        return Err(ResolveError::NotPublic {
            host: name,
            ip: refused.ip(),
        });
    }
    Ok(addresses)
}

/// A DNS resolver for HTTP clients that call user-chosen endpoints: a name resolving to
/// any non-public address fails the connection before it is made. (IP literals never
/// reach a resolver: [`OutboundPolicy::check_base_url`] checks them first.)
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses =
                resolve_checked(&Host::Domain(&host), 0, |address| is_public(address.ip()))
                    .await
                    .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// One operator allow-list entry: a host, optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: Host<String>,
    port: Option<u16>,
}

impl AllowedHost {
    /// `name`, `name:port`, `1.2.3.4`, `1.2.3.4:port`, `::1`, `[::1]:port`.
    pub fn parse(entry: &str) -> Result<AllowedHost, String> {
        let entry = entry.trim();
        let invalid = || format!("`{entry}` is not a host or host:port");
        if entry.is_empty() || entry.contains(['/', '@', '?', '#', ' ']) {
            return Err(invalid());
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Ok(AllowedHost {
                host: ip_host(ip),
                port: None,
            });
        }
        // Let the URL parser normalise the host (case, IDNA, bracketed IPv6).
        let url = Url::parse(&format!("http://{entry}")).map_err(|_| invalid())?;
        let host = url.host().ok_or_else(invalid)?.to_owned();
        let port = url.port();
        let explicit_port = entry
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        // `http://host:80` parses with no port: keep what the operator wrote.
        let port = port.or_else(|| explicit_port.then_some(80));
        Ok(AllowedHost { host, port })
    }

    fn matches(&self, host: &Host<&str>, port: Option<u16>) -> bool {
        let same_host = match (&self.host, host) {
            (Host::Domain(allowed), Host::Domain(domain)) => {
                allowed.trim_end_matches('.') == domain.trim_end_matches('.')
            }
            (Host::Ipv4(allowed), Host::Ipv4(ip)) => allowed == ip,
            (Host::Ipv6(allowed), Host::Ipv6(ip)) => allowed == ip,
            _ => false,
        };
        same_host && self.port.is_none_or(|allowed| Some(allowed) == port)
    }
}

fn ip_host(ip: IpAddr) -> Host<String> {
    match ip {
        IpAddr::V4(ip) => Host::Ipv4(ip),
        IpAddr::V6(ip) => Host::Ipv6(ip),
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (Host::Ipv6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
            (host, Some(port)) => write!(f, "{host}:{port}"),
            (host, None) => write!(f, "{host}"),
        }
    }
}

/// A comma-separated allow-list; empty entries are skipped.
pub fn parse_allowed_hosts(raw: &str) -> Result<Vec<AllowedHost>, String> {
    raw.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(AllowedHost::parse)
        .collect()
}

/// What a caller must still do before calling a base URL the policy did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Trusted (the operator's own, or allow-listed): call it as it is.
    Trusted,
    /// A public IP literal or a name: the name must resolve to public addresses only,
    /// checked when connecting ([`PublicOnlyResolver`]).
    PublicOnly,
}

/// A base URL the policy refuses, and why (never the URL's credentials or path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `host` or `host:port` as the URL names it.
    pub target: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: only public addresses are allowed unless an operator lists the host in \
             CREWGRAPH_LLM_ALLOWED_HOSTS",
            self.target, self.reason
        )
    }
}

/// The policy for LLM base URLs of one deployment.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Vec<AllowedHost>,
    /// The operator's own endpoints (the fallback LLM), compared without trailing `/`.
    trusted_base_urls: Vec<String>,
    /// Everything goes: `crewgraph-worker run` on the operator's own machine.
    unrestricted: bool,
}

impl OutboundPolicy {
    /// Public addresses plus `allowed_hosts`.
    pub fn new(allowed_hosts: Vec<AllowedHost>) -> Self {
        OutboundPolicy {
            allowed_hosts,
            ..OutboundPolicy::default()
        }
    }

    /// No restriction (no other user's input is involved).
    pub fn unrestricted() -> Self {
        OutboundPolicy {
            unrestricted: true,
            ..OutboundPolicy::default()
        }
    }

    /// Also trusts this exact base URL (the operator configured it).
    pub fn trusting(mut self, base_url: Option<&str>) -> Self {
        if let Some(url) = base_url {
            self.trusted_base_urls.push(normalized(url).to_owned());
        }
        self
    }

    pub fn allowed_hosts(&self) -> &[AllowedHost] {
        &self.allowed_hosts
    }

    /// The static part of the policy (no DNS): trusted and allow-listed URLs pass, IP
    /// literals must be public, local names are refused, other names are left to the
    /// connect-time check. `base_url` must already be a valid http(s) URL.
    pub fn check_base_url(&self, base_url: &str) -> Result<Route, Refusal> {
        if self.unrestricted
            || self
                .trusted_base_urls
                .iter()
                .any(|t| t == normalized(base_url))
        {
            return Ok(Route::Trusted);
        }
        let url = Url::parse(base_url.trim()).ok();
        let Some(host) = url.as_ref().and_then(Url::host) else {
            return Err(Refusal {
                target: "the base URL".into(),
                reason: "has no host".into(),
            });
        };
        let port = url.as_ref().and_then(Url::port_or_known_default);
        if self
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.matches(&host, port))
        {
            return Ok(Route::Trusted);
        }
        let target = match (url.as_ref().and_then(Url::port), &host) {
            (Some(port), Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
            (Some(port), host) => format!("{host}:{port}"),
            (None, host) => host.to_string(),
        };
        let refused = |reason: &str| {
            Err(Refusal {
                target: target.clone(),
                reason: reason.into(),
            })
        };
        match host {
            Host::Ipv4(ip) if !is_public(IpAddr::V4(ip)) => refused("is not a public address"),
            Host::Ipv6(ip) if !is_public(IpAddr::V6(ip)) => refused("is not a public address"),
            Host::Domain(domain) if is_local_name(domain) => refused("is a local name"),
            _ => Ok(Route::PublicOnly),
        }
    }
}

/// Validation's part (static, no DNS): an llm node whose `base_url` the policy refuses
/// gets a `base_url_not_allowed` error on the field. Malformed URLs are left to the
/// node's own field rules.
pub fn check_llm_node_base_url(node: &Node, policy: &OutboundPolicy, problems: &mut Problems) {
    let text = |field: &str| node.data.get(field).and_then(|value| value.as_str());
    match (node.kind, text("base_url")) {
        (NodeKind::Llm, Some(base_url)) => {
            let is_http = Url::parse(base_url.trim())
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
            if !is_http {
                return;
            }
            if let Err(refusal) = policy.check_base_url(base_url) {
                problems.push(
                    Problem::error(
                        "base_url_not_allowed",
                        format!("`base_url` is refused: {refusal}"),
                    )
                    .node(&node.id)
                    .field("base_url"),
                );
            }
        }
        // No base URL: a provider's default applies, and Ollama's is the worker's own
        // loopback, allowed only through the allow-list.
        (NodeKind::Llm, None) => {
            check_default_endpoint(node, "model", text("model"), policy, problems)
        }
        (NodeKind::Agent, _) => check_default_endpoint(node, "llm", text("llm"), policy, problems),
        _ => {}
    }
}

fn check_default_endpoint(
    node: &Node,
    field: &'static str,
    model: Option<&str>,
    policy: &OutboundPolicy,
    problems: &mut Problems,
) {
    let Some(model) = model.filter(|m| m.trim_start().starts_with("ollama/")) else {
        return;
    };
    if let Err(refusal) = policy.check_base_url(crate::crew::llm::provider::OLLAMA_BASE_URL) {
        problems.push(
            Problem::error(
                "base_url_not_allowed",
                format!(
                    "`{model}` calls Ollama at its default address on the worker, which is \
                     refused ({refusal}): give the llm node a `base_url`, or have the operator \
                     allow `127.0.0.1:11434` in CREWGRAPH_LLM_ALLOWED_HOSTS"
                ),
            )
            .node(&node.id)
            .field(field),
        );
    }
}

fn normalized(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
