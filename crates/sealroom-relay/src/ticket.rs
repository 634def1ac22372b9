//! Entry tickets: JWTs signed with HS256 by an app's backend, verified by the relay.
//!
//! A ticket names the app, the user, the room, a validity window and the grants. Its JSON
//! claims are:
//!
//! | claim    | type   | meaning                                                 |
//! |----------|--------|---------------------------------------------------------|
//! | `app`    | string | app id; picks the secrets the relay verifies with       |
//! | `sub`    | string | user id                                                 |
//! | `room`   | string | room id                                                 |
//! | `nbf`    | number | not valid before, seconds since the Unix epoch          |
//! | `exp`    | number | not valid from, seconds since the Unix epoch            |
//! | `iat`    | number | issued at (informational, not checked)                  |
//! | `grants` | object | `{"pa": bool, "pv": bool, "pd": bool, "sub": bool}`     |
//!
//! The grant keys stand for publish audio, publish video, publish data and subscribe; a
//! missing key (or a missing `grants` object) grants nothing. The long names
//! (`publish_audio`, ...) are accepted too. The JOSE header must say `"alg": "HS256"`; its
//! `kid` picks one of the app's secrets, and a ticket without `kid` is tried against each of
//! the app's secrets.
//!
//! Verification takes the current time as an argument (no clock inside), so tests can check
//! expiry deterministically.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sealroom_frame::control::ErrorCode;
use sealroom_frame::envelope::MediaKind;
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;

/// What a ticket allows its holder to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Grants {
    /// Publish audio frames.
    #[serde(rename = "pa", alias = "publish_audio", default)]
    pub publish_audio: bool,
    /// Publish video frames.
    #[serde(rename = "pv", alias = "publish_video", default)]
    pub publish_video: bool,
    /// Publish data messages.
    #[serde(rename = "pd", alias = "publish_data", default)]
    pub publish_data: bool,
    /// Receive the other members' frames.
    #[serde(rename = "sub", alias = "subscribe", default)]
    pub subscribe: bool,
}

impl Grants {
    /// Everything allowed.
    pub const fn all() -> Self {
        Self {
            publish_audio: true,
            publish_video: true,
            publish_data: true,
            subscribe: true,
        }
    }

    /// Nothing allowed (the member can only see the roster).
    pub const fn none() -> Self {
        Self {
            publish_audio: false,
            publish_video: false,
            publish_data: false,
            subscribe: false,
        }
    }

    /// Only receiving.
    pub const fn subscribe_only() -> Self {
        Self {
            subscribe: true,
            ..Self::none()
        }
    }

    /// Whether frames of `kind` may be published.
    pub const fn may_publish(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.publish_audio,
            MediaKind::Video => self.publish_video,
            MediaKind::Data => self.publish_data,
        }
    }
}

/// The claims of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketClaims {
    /// App id.
    pub app: String,
    /// User id (the JWT `sub` claim).
    pub user: String,
    /// Room id.
    pub room: String,
    /// Not valid before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Expiry, seconds since the Unix epoch; the ticket is refused from this second on.
    pub exp: u64,
    /// What the holder may do.
    pub grants: Grants,
}

impl TicketClaims {
    /// Claims valid from `now` for `ttl_secs` seconds.
    pub fn new(
        app: impl Into<String>,
        user: impl Into<String>,
        room: impl Into<String>,
        now: u64,
        ttl_secs: u64,
        grants: Grants,
    ) -> Self {
        Self {
            app: app.into(),
            user: user.into(),
            room: room.into(),
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            grants,
        }
    }
}

/// The JSON form of the claims.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    app: String,
    sub: String,
    room: String,
    nbf: u64,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    grants: Grants,
}

/// Why a ticket could not be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// The secret is empty.
    #[error("the ticket secret is empty")]
    EmptySecret,
    /// A claim is empty or the validity window is inverted.
    #[error("invalid claims: {0}")]
    InvalidClaims(&'static str),
    /// The JWT library failed to sign.
    #[error("could not sign the ticket: {0}")]
    Sign(String),
}

/// Mint a ticket (an HS256 JWT) for `claims`, naming `kid` in its header.
///
/// `iat` is set to `nbf`, so minting is deterministic.
///
/// # Errors
/// [`TicketError`] when the secret is empty, a claim is empty, `exp <= nbf`, or signing
/// fails.
pub fn mint(claims: &TicketClaims, kid: &str, secret: &[u8]) -> Result<String, TicketError> {
    if secret.is_empty() {
        return Err(TicketError::EmptySecret);
    }
    if claims.app.is_empty() || claims.user.is_empty() || claims.room.is_empty() {
        return Err(TicketError::InvalidClaims(
            "app, user and room must not be empty",
        ));
    }
    if claims.exp <= claims.nbf {
        return Err(TicketError::InvalidClaims("exp must be after nbf"));
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let wire = WireClaims {
        app: claims.app.clone(),
        sub: claims.user.clone(),
        room: claims.room.clone(),
        nbf: claims.nbf,
        exp: claims.exp,
        iat: Some(claims.nbf),
        grants: claims.grants,
    };
    let key = EncodingKey::from_secret(secret).map_err(|err| TicketError::Sign(err.to_string()))?;
    jsonwebtoken::encode(&header, &wire, &key).map_err(|err| TicketError::Sign(err.to_string()))
}

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
}

impl VerifyError {
    /// The control-protocol reason sent to the client.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::Malformed => ErrorCode::BadTicket,
            Self::UnknownApp => ErrorCode::UnknownApp,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::Expired => ErrorCode::Expired,
            Self::NotYetValid => ErrorCode::NotYetValid,
        }
    }
}

/// Largest ticket the relay looks at; anything longer is malformed.
pub const MAX_TICKET_LEN: usize = 8 * 1024;

/// Verifies tickets against the configured apps' secrets.
pub struct TicketVerifier {
    apps: HashMap<String, Vec<(String, DecodingKey)>>,
    leeway_secs: u64,
    validation: Validation,
}

impl fmt::Debug for TicketVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketVerifier")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("leeway_secs", &self.leeway_secs)
            .finish_non_exhaustive()
    }
}

impl TicketVerifier {
    /// A verifier for `apps`, tolerating `leeway_secs` of clock skew on `nbf` and `exp`.
    /// Empty secrets are skipped (they could never verify anything).
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
            validation,
        }
    }

    /// Whether `app` is served.
    pub fn serves(&self, app: &str) -> bool {
        self.apps.contains_key(app)
    }

    /// Verify `ticket` at `now` (seconds since the Unix epoch) and return its claims.
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first check that failed, in this order: shape, app,
    /// signature, expiry, not-before.
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
