//! `CREWGRAPH_ENCRYPTION_KEYS`: the AES-256 master keys of stored provider keys.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret as _, SecretBox};

use super::Component;
use super::reader::Reader;

/// The development encryption key. It is public (it is in the source), which is why
/// production refuses to start without `CREWGRAPH_ENCRYPTION_KEYS`.
pub(super) const DEVELOPMENT_ENCRYPTION_KEY: [u8; 32] = *b"crewgraph-development-only-key!!";

/// AES-256 master keys by version, newest first.
pub struct EncryptionKeys {
    keys: Vec<(u32, SecretBox<[u8; 32]>)>,
}

impl EncryptionKeys {
    pub fn newest(&self) -> (u32, &[u8; 32]) {
        let (version, key) = &self.keys[0];
        (*version, key.expose_secret())
    }

    pub fn get(&self, version: u32) -> Option<&[u8; 32]> {
        self.keys
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, key)| key.expose_secret())
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|(v, _)| *v).collect()
    }

    fn get_any_matching(&self, key: &[u8; 32]) -> bool {
        self.keys.iter().any(|(_, k)| k.expose_secret() == key)
    }
}

impl fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKeys")
            .field("versions", &self.versions())
            .finish_non_exhaustive()
    }
}

impl Clone for EncryptionKeys {
    fn clone(&self) -> Self {
        Self {
            keys: self
                .keys
                .iter()
                .map(|(v, k)| (*v, SecretBox::new(Box::new(*k.expose_secret()))))
                .collect(),
        }
    }
}

pub(super) fn read(
    reader: &mut Reader<'_>,
    production: bool,
    component: Component,
    warnings: &mut Vec<String>,
) -> EncryptionKeys {
    match reader.get("CREWGRAPH_ENCRYPTION_KEYS") {
        Some(v) => match parse_encryption_keys(&v) {
            Ok(keys) => {
                if production && keys.get_any_matching(&DEVELOPMENT_ENCRYPTION_KEY) {
                    reader.problem(
                        "CREWGRAPH_ENCRYPTION_KEYS",
                        "holds the public development key, refused in production".into(),
                    );
                }
                keys
            }
            Err(message) => {
                reader.problem("CREWGRAPH_ENCRYPTION_KEYS", message);
                development_keys()
            }
        },
        None if production && component != Component::Maintenance => {
            reader.problem(
                "CREWGRAPH_ENCRYPTION_KEYS",
                "is required in production".into(),
            );
            development_keys()
        }
        None => {
            if component != Component::Maintenance {
                warnings.push(
                    "CREWGRAPH_ENCRYPTION_KEYS is not set: provider keys are encrypted with \
                     the public development key"
                        .into(),
                );
            }
            development_keys()
        }
    }
}

fn development_keys() -> EncryptionKeys {
    EncryptionKeys {
        keys: vec![(1, SecretBox::new(Box::new(DEVELOPMENT_ENCRYPTION_KEY)))],
    }
}

/// Parses `v2:<base64 of 32 bytes>,v1:<...>` (newest first). Messages never echo key material.
pub(super) fn parse_encryption_keys(raw: &str) -> Result<EncryptionKeys, String> {
    let mut keys: Vec<(u32, SecretBox<[u8; 32]>)> = Vec::new();
    for (index, entry) in raw.split(',').map(str::trim).enumerate() {
        let position = index + 1;
        let Some((version, encoded)) = entry.split_once(':') else {
            return Err(format!(
                "entry {position} must look like `v1:<base64 of 32 bytes>`"
            ));
        };
        let version = version
            .strip_prefix('v')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("entry {position} has a version that is not `v<number>`"))?;
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| format!("entry {position} (v{version}) is not valid base64"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "entry {position} (v{version}) must decode to 32 bytes, got {}",
                bytes.len()
            )
        })?;
        if keys.iter().any(|(v, _)| *v == version) {
            return Err(format!("version v{version} appears more than once"));
        }
        if let Some((previous, _)) = keys.last()
            && *previous < version
        {
            return Err(format!(
                "keys must be listed newest first (v{previous} before v{version})"
            ));
        }
        keys.push((version, SecretBox::new(Box::new(key))));
    }
    Ok(EncryptionKeys { keys })
}
