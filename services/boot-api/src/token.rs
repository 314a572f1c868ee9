//! Install tokens: an HMAC-SHA256 of the machine id and the provisioning's id under a key
//! from the environment. Nothing stores a token: any replica with the key renders it into
//! the cmdline and checks it on phone-home, and a new provisioning makes the old one
//! worthless (see docs/decisions.md).

use hmac::{Hmac, Mac as _};
use metal_core::MachineId;
use sha2::Sha256;
use uuid::Uuid;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Hex characters of a token (128 bits).
const TOKEN_HEX: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("environment variable {variable} is not set: boot-api derives install tokens from the key in it (at least {MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`)")]
    Missing { variable: String },
    #[error("environment variable {variable} holds {bytes} bytes; an install-token key needs at least {MIN_KEY_BYTES}")]
    TooShort { variable: String, bytes: usize },
}

/// The key; its `Debug` never shows it.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// Reads the key from the environment variable `variable`.
    pub fn from_env(variable: &str) -> Result<TokenKey, TokenKeyError> {
        match std::env::var_os(variable) {
            None => Err(TokenKeyError::Missing {
                variable: variable.to_string(),
            }),
            Some(value) => TokenKey::new(variable, value.as_encoded_bytes().to_vec()),
        }
    }

    pub fn new(variable: &str, key: Vec<u8>) -> Result<TokenKey, TokenKeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(TokenKeyError::TooShort {
                variable: variable.to_string(),
                bytes: key.len(),
            });
        }
        Ok(TokenKey(key))
    }

    /// The token of one provisioning of one machine.
    pub fn token(&self, machine_id: MachineId, provision_id: Uuid) -> String {
        hex(&self.digest(machine_id, provision_id)[..TOKEN_HEX / 2])
    }

    /// Whether `token` is this provisioning's, compared in constant time.
    pub fn verify(&self, machine_id: MachineId, provision_id: Uuid, token: &str) -> bool {
        let expected = self.token(machine_id, provision_id);
        let (a, b) = (expected.as_bytes(), token.trim().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn digest(&self, machine_id: MachineId, provision_id: Uuid) -> Vec<u8> {
        // A key of any length is valid for HMAC.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(format!("metal-install-token:v1:{machine_id}:{provision_id}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> TokenKey {
        TokenKey::new("TEST_KEY", text.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn tokens_bind_machine_provisioning_and_key() {
        let machine = MachineId(Uuid::from_u128(1));
        let other_machine = MachineId(Uuid::from_u128(2));
        let (first, second) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let k = key("0123456789abcdef0123");
        let token = k.token(machine, first);
        assert_eq!(token.len(), 32);
        assert_eq!(token, k.token(machine, first), "deterministic");
        assert!(k.verify(machine, first, &token));
        assert!(!k.verify(machine, second, &token), "a new provisioning");
        assert!(!k.verify(other_machine, first, &token), "another machine");
        assert!(!key("another key of 16+ bytes").verify(machine, first, &token));
        assert!(!k.verify(machine, first, ""));
        assert!(!k.verify(machine, first, &token[..31]));
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn short_or_missing_keys_are_refused_by_name() {
        let error = TokenKey::new("METAL_BOOT_TOKEN_KEY", b"short".to_vec()).unwrap_err();
        assert!(
            error.to_string().contains("METAL_BOOT_TOKEN_KEY"),
            "{error}"
        );
        let error = TokenKey::from_env("METAL_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(error
            .to_string()
            .contains("METAL_TEST_SURELY_UNSET_VARIABLE"));
    }
}
