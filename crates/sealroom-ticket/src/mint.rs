//! Minting: what an app backend does to hand a user a ticket.

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::claims::{TicketClaims, WireClaims};

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
