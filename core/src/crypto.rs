//! Encryption of stored secrets (provider API keys, webhook signing secrets): AES-256-GCM
//! with a random 96-bit nonce per value, the kind of secret and the id it belongs to as
//! associated data (a ciphertext copied onto another row does not decrypt), and the
//! master key's version stored beside it so keys can be rotated (`crewgraph-api
//! rotate-keys`).

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::config::EncryptionKeys;
use crate::error::{CoreError, CoreResult};

const ASSOCIATED_DATA_CONTEXT: &[u8] = b"crewgraph:provider-api-key:owner:";

#[derive(Debug, Clone)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub key_version: i32,
}

fn associated_data(context: &[u8], owner: Uuid) -> Vec<u8> {
    let mut data = context.to_vec();
    data.extend_from_slice(owner.as_bytes());
    data
}

/// Encrypts a provider key's `plaintext` for `owner` with the newest master key.
pub fn seal(keys: &EncryptionKeys, owner: Uuid, plaintext: &SecretString) -> CoreResult<Sealed> {
    seal_bound(keys, ASSOCIATED_DATA_CONTEXT, owner, plaintext)
}

/// Decrypts a provider key sealed for `owner`. Fails (without saying more) when the
/// master key version is unknown, the owner differs, or the bytes were altered.
pub fn open(keys: &EncryptionKeys, owner: Uuid, sealed: &Sealed) -> CoreResult<SecretString> {
    open_bound(keys, ASSOCIATED_DATA_CONTEXT, owner, sealed)
}

/// Encrypts `plaintext` bound to `context` (the kind of secret) and `owner` (the id it
/// belongs to) with the newest master key.
pub fn seal_bound(
    keys: &EncryptionKeys,
    context: &[u8],
    owner: Uuid,
    plaintext: &SecretString,
) -> CoreResult<Sealed> {
    let (version, key) = keys.newest();
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.expose_secret().as_bytes(),
                aad: &associated_data(context, owner),
            },
        )
        .map_err(|_| CoreError::Internal(anyhow::anyhow!("encryption failed")))?;
    Ok(Sealed {
        ciphertext,
        nonce: nonce.to_vec(),
        key_version: version as i32,
    })
}

/// Decrypts a value sealed by [`seal_bound`] with the same `context` and `owner`.
pub fn open_bound(
    keys: &EncryptionKeys,
    context: &[u8],
    owner: Uuid,
    sealed: &Sealed,
) -> CoreResult<SecretString> {
    let undecryptable =
        || CoreError::Internal(anyhow::anyhow!("a stored secret could not be decrypted"));
    let version = u32::try_from(sealed.key_version).map_err(|_| undecryptable())?;
    let key = keys.get(version).ok_or_else(|| {
        CoreError::Internal(anyhow::anyhow!(
            "a stored secret uses master key v{version}, which CREWGRAPH_ENCRYPTION_KEYS no longer holds"
        ))
    })?;
    if sealed.nonce.len() != 12 {
        return Err(undecryptable());
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &associated_data(context, owner),
            },
        )
        .map_err(|_| undecryptable())?;
    String::from_utf8(plaintext)
        .map(SecretString::from)
        .map_err(|_| undecryptable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Component, Config, Lookup};
    use base64::Engine as _;

    fn keys(spec: &str) -> EncryptionKeys {
        let spec = spec.to_string();
        Config::from_lookup(Component::Worker, move |name| match name {
            "CREWGRAPH_ENCRYPTION_KEYS" => Lookup::Value(spec.clone()),
            _ => Lookup::Missing,
        })
        .expect("config")
        .encryption_keys
    }

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let keys = keys(&format!("v1:{}", key(1)));
        let owner = Uuid::new_v4();
        let secret = SecretString::from("sk-test-1234567890");
        let a = seal(&keys, owner, &secret).expect("seal");
        let b = seal(&keys, owner, &secret).expect("seal");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.windows(8).any(|w| w == b"sk-test-"));
        assert_eq!(
            open(&keys, owner, &a).expect("open").expose_secret(),
            "sk-test-1234567890"
        );
    }

    #[test]
    fn another_owner_or_altered_bytes_do_not_decrypt() {
        let keys = keys(&format!("v1:{}", key(1)));
        let sealed = seal(&keys, Uuid::new_v4(), &SecretString::from("sk-x")).expect("seal");
        assert!(open(&keys, Uuid::new_v4(), &sealed).is_err());
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert!(open(&keys, Uuid::new_v4(), &altered).is_err());
    }

    #[test]
    fn old_versions_still_open_after_a_new_key_is_added() {
        let owner = Uuid::new_v4();
        let old = keys(&format!("v1:{}", key(1)));
        let sealed = seal(&old, owner, &SecretString::from("sk-old")).expect("seal");
        let rotated = keys(&format!("v2:{},v1:{}", key(2), key(1)));
        assert_eq!(
            open(&rotated, owner, &sealed)
                .expect("open")
                .expose_secret(),
            "sk-old"
        );
        assert_eq!(
            seal(&rotated, owner, &SecretString::from("x"))
                .expect("seal")
                .key_version,
            2
        );
        let dropped = keys(&format!("v2:{}", key(2)));
        assert!(open(&dropped, owner, &sealed).is_err());
    }
}
