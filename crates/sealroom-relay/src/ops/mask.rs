//! Masking of user and room ids in logs.
//!
//! Logs must not carry user data by default, yet an operator has to be able to follow one
//! user or one room through them. [`IdMask`] replaces an id with a short, stable token: the
//! first 8 hex digits of a keyed 64-bit hash of the id. The same id always gives the same
//! token for the same salt, so one process's log (or, with a configured salt, a fleet's logs)
//! can be grepped for one user; without the salt the token does not reveal the id.
//!
//! This is a **pseudonymization, not a secure hash**. The hash is SipHash-2-4 (the
//! `siphasher` crate, a fixed, specified algorithm, so tokens stay the same across builds)
//! keyed with a 128-bit salt. It is not a cryptographic commitment: with the salt in hand
//! anyone can test guesses of an id, and a 32-bit token collides after roughly 65 000
//! distinct ids. The relay deliberately links no content crypto crate.
//!
//! A development switch ([`IdMask::show`]) logs ids in clear.

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};

use siphasher::sip::SipHasher24;

/// Masks ids for logging. Cheap to clone; share one per relay.
#[derive(Clone)]
pub struct IdMask {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Masked { salt: [u8; 16] },
    Shown,
}

impl IdMask {
    /// Mask with a salt drawn at random for this process: tokens are stable for the life of
    /// the process and differ after a restart.
    pub fn per_process() -> Self {
        let state = RandomState::new();
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&state.hash_one(0u8).to_le_bytes());
        salt[8..].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
        Self {
            mode: Mode::Masked { salt },
        }
    }

    /// Mask with a configured salt: tokens are stable across restarts and across relays
    /// configured with the same salt.
    pub fn with_salt(salt: &[u8]) -> Self {
        // Fold a salt of any length into the 128-bit SipHash key, with two fixed keys so
        // the fold is itself specified and stable.
        let fold = |k0: u64| {
            let mut hasher = SipHasher24::new_with_keys(k0, u64::from_be_bytes(*b"sealroom"));
            hasher.write(b"sealroom id mask salt");
            hasher.write(salt);
            hasher.finish()
        };
        let mut folded = [0u8; 16];
        folded[..8].copy_from_slice(&fold(1).to_le_bytes());
        folded[8..].copy_from_slice(&fold(2).to_le_bytes());
        Self {
            mode: Mode::Masked { salt: folded },
        }
    }

    /// Show ids in clear. For development only.
    pub fn show() -> Self {
        Self { mode: Mode::Shown }
    }

    /// Whether ids are shown in clear.
    pub fn shows_ids(&self) -> bool {
        matches!(self.mode, Mode::Shown)
    }

    /// The loggable form of `id`: `u:` and 8 hex digits when masked, the id itself when shown.
    ///
    /// Use `u:` for user ids and `r:` for room ids via [`IdMask::user`] and [`IdMask::room`]
    /// so that a user and a room with the same name do not look alike in the log.
    pub fn mask<'a>(&self, id: &'a str) -> Masked<'a> {
        self.tagged("", id)
    }

    /// The loggable form of a user id (`u:xxxxxxxx` when masked).
    pub fn user<'a>(&self, id: &'a str) -> Masked<'a> {
        self.tagged("u:", id)
    }

    /// The loggable form of a room id (`r:xxxxxxxx` when masked).
    pub fn room<'a>(&self, id: &'a str) -> Masked<'a> {
        self.tagged("r:", id)
    }

    fn tagged<'a>(&self, tag: &'static str, id: &'a str) -> Masked<'a> {
        match &self.mode {
            Mode::Shown => Masked::Clear(id),
            Mode::Masked { salt } => {
                let mut hasher = SipHasher24::new_with_key(salt);
                // Length-prefix each part so ("u:", "ab") and ("u:a", "b") differ.
                for part in [tag.as_bytes(), id.as_bytes()] {
                    hasher.write(&(part.len() as u64).to_le_bytes());
                    hasher.write(part);
                }
                Masked::Token {
                    tag,
                    token: (hasher.finish() >> 32) as u32,
                }
            }
        }
    }
}

impl Default for IdMask {
    /// Masked with a per-process salt.
    fn default() -> Self {
        Self::per_process()
    }
}

impl fmt::Debug for IdMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the salt: with it, guesses of an id can be tested.
        match self.mode {
            Mode::Masked { .. } => f.write_str("IdMask(masked)"),
            Mode::Shown => f.write_str("IdMask(shown)"),
        }
    }
}

/// An id as it may appear in a log line; formats with `Display`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Masked<'a> {
    /// Masked: a tag (`u:`, `r:` or empty) and the 32-bit token, printed as 8 hex digits.
    Token {
        /// `u:` for users, `r:` for rooms, empty for untyped ids.
        tag: &'static str,
        /// The token.
        token: u32,
    },
    /// Shown in clear (development).
    Clear(&'a str),
}

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token { tag, token } => write!(f, "{tag}{token:08x}"),
            Self::Clear(id) => f.write_str(id),
        }
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_ids_are_stable_short_and_hide_the_id() {
        let mask = IdMask::with_salt(b"fleet-salt");
        let a = mask.user("alice@example.com").to_string();
        assert_eq!(a, mask.user("alice@example.com").to_string());
        assert_eq!(a.len(), 2 + 8);
        assert!(a.starts_with("u:"));
        assert!(a[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!a.contains("alice"));
        assert_ne!(a, mask.user("bob@example.com").to_string());
        // A room named like a user does not look like that user.
        assert_ne!(a[2..], mask.room("alice@example.com").to_string()[2..]);
    }

    #[test]
    fn the_salt_decides_the_token() {
        let one = IdMask::with_salt(b"one").user("alice").to_string();
        let again = IdMask::with_salt(b"one").user("alice").to_string();
        let two = IdMask::with_salt(b"two").user("alice").to_string();
        assert_eq!(one, again);
        assert_ne!(one, two);
        let process = IdMask::per_process();
        assert_eq!(
            process.room("r1").to_string(),
            process.clone().room("r1").to_string()
        );
    }

    #[test]
    fn show_prints_ids_and_debug_hides_the_salt() {
        let shown = IdMask::show();
        assert!(shown.shows_ids());
        assert_eq!(shown.user("alice").to_string(), "alice");
        let masked = IdMask::with_salt(b"secret-salt");
        assert!(!masked.shows_ids());
        let debug = format!("{masked:?}");
        assert_eq!(debug, "IdMask(masked)");
    }

    #[test]
    fn tokens_for_a_configured_salt_do_not_change_between_builds() {
        // Operators grep fleets of relays, across upgrades, for one token. The value is
        // SipHash-2-4 as specified; if this changes, every configured salt's tokens change.
        let mask = IdMask::with_salt(b"fleet salt");
        assert_eq!(mask.user("alice").to_string(), "u:3d38929a");
    }
}
