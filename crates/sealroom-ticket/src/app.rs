//! The secrets of the apps a relay serves, as its configuration names them.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// An app the relay serves: its id (the `app` claim of its tickets) and the secrets its
/// backend signs tickets with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app id.
    pub app: String,
    /// Ticket secrets by key id; several so a secret can be rotated without downtime.
    pub secrets: Vec<TicketSecret>,
}

impl AppConfig {
    /// An app with one ticket secret.
    pub fn new(app: impl Into<String>, kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            app: app.into(),
            secrets: vec![TicketSecret::new(kid, secret)],
        }
    }

    /// Add another secret (for rotation).
    #[must_use]
    pub fn secret(mut self, kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        self.secrets.push(TicketSecret::new(kid, secret));
        self
    }
}

/// One HS256 ticket secret, named by the `kid` a ticket's header carries.
///
/// The secret bytes are zeroized on drop and never printed by `Debug`. In TOML the secret is
/// a string whose UTF-8 bytes are the key.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSecret {
    /// The key id.
    pub kid: String,
    /// The HMAC key.
    #[serde(with = "secret_bytes")]
    pub secret: Vec<u8>,
}

impl TicketSecret {
    /// A named secret.
    pub fn new(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            kid: kid.into(),
            secret: secret.into(),
        }
    }
}

impl Drop for TicketSecret {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketSecret")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

mod secret_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(_: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        // Never write a secret back out (for example in an effective-config dump).
        serializer.serialize_str("<redacted>")
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom(
                "a ticket secret must not be empty",
            ));
        }
        Ok(text.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let app = AppConfig::new("app", "k1", b"hunter2hunter2".to_vec());
        let text = format!("{app:?}");
        assert!(text.contains("k1"));
        assert!(!text.contains("hunter2"));
    }
}
