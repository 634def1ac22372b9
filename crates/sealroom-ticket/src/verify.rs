//! Verification: what a relay does before it admits the holder of a ticket.
//!
//! Verification takes the current time as an argument (no clock inside), so tests can check
//! expiry deterministically, and a relay can verify on any thread, outside its room state.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::app::AppConfig;
use crate::claims::{TicketClaims, WireClaims};

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a JWT, not HS256, or a required claim is missing or malformed.
    #[error("malformed ticket")]
    Malformed,
    /// The `app` claim names an app this relay does not serve.
    #[error("unknown app")]
    UnknownApp,
    /// No secret of the app verifies the signature (or the `kid` is unknown).
    #[error("bad signature")]
    BadSignature,
    /// The ticket's `exp` has passed.
    #[error("ticket expired")]
    Expired,
    /// The ticket's `nbf` has not been reached.
    #[error("ticket not yet valid")]
    NotYetValid,
    /// The user id is longer than the verifier accepts ([`TicketVerifier::max_user_id_len`]).
    #[error("the ticket's user id is too long")]
    UserIdTooLong,
    /// The ticket expires further from now than the verifier accepts
    /// ([`TicketVerifier::max_lifetime_secs`]).
    #[error("the ticket lives too long")]
    LivesTooLong,
}

#[cfg(feature = "frame")]
impl VerifyError {
    /// The control-protocol reason sent to the client.
    pub const fn code(self) -> sealroom_frame::control::ErrorCode {
        use sealroom_frame::control::ErrorCode;
        match self {
            Self::Malformed | Self::UserIdTooLong | Self::LivesTooLong => ErrorCode::BadTicket,
            Self::UnknownApp => ErrorCode::UnknownApp,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::Expired => ErrorCode::Expired,
            Self::NotYetValid => ErrorCode::NotYetValid,
        }
    }
}

/// Largest ticket the relay looks at; anything longer is malformed.
pub const MAX_TICKET_LEN: usize = 8 * 1024;

/// Verifies tickets against the secrets of the apps a relay serves, picking the secret by
/// the ticket's `kid`.
///
/// It holds no mutable state: one verifier can be shared (`&self`) by every thread that
/// admits members.
pub struct TicketVerifier {
    apps: HashMap<String, Vec<(String, DecodingKey)>>,
    leeway_secs: u64,
    /// 0: any lifetime.
    max_lifetime_secs: u64,
    /// `usize::MAX`: any length.
    max_user_id_len: usize,
    validation: Validation,
}

impl fmt::Debug for TicketVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketVerifier")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("leeway_secs", &self.leeway_secs)
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .field("max_user_id_len", &self.max_user_id_len)
            .finish_non_exhaustive()
    }
}

impl TicketVerifier {
    /// A verifier for `apps`, tolerating `leeway_secs` of clock skew on `nbf` and `exp`,
    /// with no bound on the lifetime or the user id until [`Self::max_lifetime_secs`] and
    /// [`Self::max_user_id_len`] set them. Empty secrets are skipped (they could never
    /// verify anything).
    pub fn new(apps: &[AppConfig], leeway_secs: u64) -> Self {
        let mut map: HashMap<String, Vec<(String, DecodingKey)>> = HashMap::new();
        for app in apps {
            let keys = map.entry(app.app.clone()).or_default();
            for secret in &app.secrets {
                if let Ok(key) = DecodingKey::from_secret(&secret.secret) {
                    keys.push((secret.kid.clone(), key));
                }
            }
        }
        // The time checks are ours (with the caller's clock); the library checks the
        // signature and the algorithm only.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            apps: map,
            leeway_secs,
            max_lifetime_secs: 0,
            max_user_id_len: usize::MAX,
            validation,
        }
    }

    /// Refuse tickets that expire more than `secs` (plus the leeway) after the time they
    /// are verified at, so a leaked ticket is not good for long; 0 accepts any lifetime.
    #[must_use]
    pub const fn max_lifetime_secs(mut self, secs: u64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    /// Refuse tickets whose user id is longer than `len` bytes.
    #[must_use]
    pub const fn max_user_id_len(mut self, len: usize) -> Self {
        self.max_user_id_len = len;
        self
    }

    /// The clock skew tolerated on `nbf` and `exp`, in seconds.
    pub const fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// Whether `app` is served.
    pub fn serves(&self, app: &str) -> bool {
        self.apps.contains_key(app)
    }

    /// Verify `ticket` at `now` (seconds since the Unix epoch) and return its claims.
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first check that failed, in this order: shape, app,
    /// signature, expiry, not-before, user id length, lifetime.
    pub fn verify(&self, ticket: &str, now: u64) -> Result<TicketClaims, VerifyError> {
        if ticket.len() > MAX_TICKET_LEN {
            return Err(VerifyError::Malformed);
        }
        let header = jsonwebtoken::decode_header(ticket).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(VerifyError::Malformed);
        }
        // The app picks the secrets, so it is read before the signature is checked; an
        // attacker learns nothing from "unknown app" that the app id itself does not say.
        let unverified: WireClaims = jsonwebtoken::dangerous::insecure_decode_claims(ticket)
            .map_err(|_| VerifyError::Malformed)?;
        let keys = self
            .apps
            .get(&unverified.app)
            .ok_or(VerifyError::UnknownApp)?;
        let mut verified = None;
        for (kid, key) in keys {
            if header.kid.as_ref().is_some_and(|wanted| wanted != kid) {
                continue;
            }
            match jsonwebtoken::decode::<WireClaims>(ticket, key, &self.validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(err) => match err.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                    _ => return Err(VerifyError::Malformed),
                },
            }
        }
        let claims = verified.ok_or(VerifyError::BadSignature)?;
        if claims.app.is_empty() || claims.sub.is_empty() || claims.room.is_empty() {
            return Err(VerifyError::Malformed);
        }
        if now >= claims.exp.saturating_add(self.leeway_secs) {
            return Err(VerifyError::Expired);
        }
        if now.saturating_add(self.leeway_secs) < claims.nbf {
            return Err(VerifyError::NotYetValid);
        }
        if claims.sub.len() > self.max_user_id_len {
            return Err(VerifyError::UserIdTooLong);
        }
        if self.max_lifetime_secs > 0
            && claims.exp.saturating_sub(now)
                > self.max_lifetime_secs.saturating_add(self.leeway_secs)
        {
            return Err(VerifyError::LivesTooLong);
        }
        Ok(TicketClaims {
            app: claims.app,
            user: claims.sub,
            room: claims.room,
            nbf: claims.nbf,
            exp: claims.exp,
            grants: claims.grants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Grants, TicketError, mint};

    const NOW: u64 = 1_800_000_000;

    fn verifier(leeway: u64) -> TicketVerifier {
        let apps = [
            AppConfig::new("app-a", "k1", b"secret-one".to_vec())
                .secret("k2", b"secret-two".to_vec()),
            AppConfig::new("app-b", "k1", b"secret-of-b".to_vec()),
        ];
        TicketVerifier::new(&apps, leeway)
    }

    fn claims() -> TicketClaims {
        TicketClaims::new("app-a", "alice", "room-1", NOW - 10, 600, Grants::all())
    }

    #[test]
    fn minted_ticket_verifies_with_every_rotated_secret() {
        let v = verifier(0);
        for (kid, secret) in [("k1", &b"secret-one"[..]), ("k2", &b"secret-two"[..])] {
            let ticket = mint(&claims(), kid, secret).expect("mint");
            assert_eq!(v.verify(&ticket, NOW), Ok(claims()));
        }
    }

    #[test]
    fn wrong_secret_or_unknown_kid_is_a_bad_signature() {
        let v = verifier(0);
        let forged = mint(&claims(), "k1", b"not-the-secret").expect("mint");
        assert_eq!(v.verify(&forged, NOW), Err(VerifyError::BadSignature));
        let unknown_kid = mint(&claims(), "k9", b"secret-one").expect("mint");
        assert_eq!(v.verify(&unknown_kid, NOW), Err(VerifyError::BadSignature));
        // The secret of another app does not open this app's rooms.
        let cross = mint(&claims(), "k1", b"secret-of-b").expect("mint");
        assert_eq!(v.verify(&cross, NOW), Err(VerifyError::BadSignature));
    }

    #[test]
    fn tampered_claims_fail_the_signature() {
        let v = verifier(0);
        let ticket = mint(&claims(), "k1", b"secret-one").expect("mint");
        let mut other = claims();
        other.room = "room-2".to_owned();
        let other_ticket = mint(&other, "k1", b"secret-two").expect("mint");
        // Splice room-2's payload under room-1's signature.
        let parts: Vec<&str> = ticket.split('.').collect();
        let other_parts: Vec<&str> = other_ticket.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
        assert_eq!(v.verify(&spliced, NOW), Err(VerifyError::BadSignature));
    }

    #[test]
    fn time_window_is_enforced_with_leeway() {
        let c = TicketClaims::new("app-a", "alice", "room-1", NOW, 60, Grants::all());
        let ticket = mint(&c, "k1", b"secret-one").expect("mint");
        let strict = verifier(0);
        assert_eq!(
            strict.verify(&ticket, NOW - 1),
            Err(VerifyError::NotYetValid)
        );
        assert!(strict.verify(&ticket, NOW).is_ok());
        assert!(strict.verify(&ticket, NOW + 59).is_ok());
        assert_eq!(strict.verify(&ticket, NOW + 60), Err(VerifyError::Expired));
        let lenient = verifier(5);
        assert!(lenient.verify(&ticket, NOW - 5).is_ok());
        assert!(lenient.verify(&ticket, NOW + 64).is_ok());
        assert_eq!(lenient.verify(&ticket, NOW + 65), Err(VerifyError::Expired));
    }

    #[test]
    fn unknown_app_and_garbage_are_typed() {
        let v = verifier(0);
        let mut c = claims();
        c.app = "app-z".to_owned();
        let ticket = mint(&c, "k1", b"secret-one").expect("mint");
        assert_eq!(v.verify(&ticket, NOW), Err(VerifyError::UnknownApp));
        assert_eq!(v.verify("not a jwt", NOW), Err(VerifyError::Malformed));
        assert_eq!(v.verify("", NOW), Err(VerifyError::Malformed));
        assert_eq!(
            v.verify(&"a".repeat(MAX_TICKET_LEN + 1), NOW),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn lifetime_and_user_id_bounds_are_enforced_when_set() {
        let long_lived = TicketClaims::new("app-a", "alice", "room-1", NOW, 3600, Grants::all());
        let ticket = mint(&long_lived, "k1", b"secret-one").expect("mint");
        assert!(
            verifier(5).verify(&ticket, NOW).is_ok(),
            "no bound by default"
        );
        let bounded = verifier(5).max_lifetime_secs(600);
        assert_eq!(bounded.verify(&ticket, NOW), Err(VerifyError::LivesTooLong));
        // The bound counts from the time of verification, leeway included.
        assert!(bounded.verify(&ticket, NOW + 3600 - 605).is_ok());
        assert_eq!(
            bounded.verify(&ticket, NOW + 3600 - 606),
            Err(VerifyError::LivesTooLong)
        );

        let user = "u".repeat(65);
        let c = TicketClaims::new("app-a", user.as_str(), "room-1", NOW, 60, Grants::all());
        let ticket = mint(&c, "k1", b"secret-one").expect("mint");
        let short_ids = verifier(0).max_user_id_len(64);
        assert_eq!(
            short_ids.verify(&ticket, NOW),
            Err(VerifyError::UserIdTooLong)
        );
        assert!(verifier(0).max_user_id_len(65).verify(&ticket, NOW).is_ok());
    }

    #[test]
    fn grants_use_short_names_and_default_to_nothing() {
        let json = serde_json::to_string(&Grants::all()).expect("json");
        assert_eq!(json, r#"{"pa":true,"pv":true,"pd":true,"sub":true}"#);
        let partial: Grants = serde_json::from_str(r#"{"publish_video":true}"#).expect("json");
        assert_eq!(
            partial,
            Grants {
                publish_video: true,
                ..Grants::none()
            }
        );
    }

    #[test]
    fn the_record_grant_is_named_rec_and_absent_unless_granted() {
        let json = serde_json::to_string(&Grants::recorder()).expect("json");
        assert_eq!(
            json,
            r#"{"pa":false,"pv":false,"pd":false,"sub":false,"rec":true}"#
        );
        let old: Grants = serde_json::from_str(r#"{"pa":true,"sub":true}"#).expect("json");
        assert!(
            !old.record,
            "a ticket minted before the grant existed does not record"
        );
        let json = serde_json::to_string(&Grants::all()).expect("json");
        assert!(
            !json.contains("rec"),
            "no `rec` key in a ticket that does not record"
        );
    }

    #[test]
    fn minting_refuses_bad_claims() {
        assert!(matches!(
            mint(&claims(), "k1", b""),
            Err(TicketError::EmptySecret)
        ));
        let mut c = claims();
        c.exp = c.nbf;
        assert!(matches!(
            mint(&c, "k1", b"s"),
            Err(TicketError::InvalidClaims(_))
        ));
        c = claims();
        c.user.clear();
        assert!(matches!(
            mint(&c, "k1", b"s"),
            Err(TicketError::InvalidClaims(_))
        ));
    }
}
