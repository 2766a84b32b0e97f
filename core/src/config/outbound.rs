//! `CREWGRAPH_LLM_ALLOWED_HOSTS`: hosts an LLM base URL may name although they are not
//! public (see [`crate::outbound`]).

use super::reader::Reader;
use crate::outbound::{AllowedHost, OutboundPolicy, parse_allowed_hosts};

#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    pub llm_allowed_hosts: Vec<AllowedHost>,
}

pub(super) fn read(reader: &mut Reader<'_>) -> OutboundConfig {
    let llm_allowed_hosts = match reader.get("CREWGRAPH_LLM_ALLOWED_HOSTS") {
        Some(raw) => parse_allowed_hosts(&raw).unwrap_or_else(|message| {
            reader.problem(
                "CREWGRAPH_LLM_ALLOWED_HOSTS",
                format!("must be comma-separated hosts or host:port pairs: {message}"),
            );
            Vec::new()
        }),
        None => Vec::new(),
    };
    OutboundConfig { llm_allowed_hosts }
}

impl super::Config {
    /// The policy for LLM base URLs: public addresses, the allow-list, and the
    /// operator's own fallback endpoint. The API validates with it, the worker enforces it.
    pub fn llm_outbound_policy(&self) -> OutboundPolicy {
        OutboundPolicy::new(self.outbound.llm_allowed_hosts.clone())
            .trusting(self.worker.fallback_llm_base_url.as_deref())
    }
}
