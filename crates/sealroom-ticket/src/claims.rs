//! The claims of a ticket, as the Rust types and as the JSON a JWT carries.

use serde::{Deserialize, Serialize};

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
    /// Join as a recorder: receive every track of every member, present and future,
    /// publish nothing, and be announced to the other members as a recorder. A relay
    /// refuses every frame and track a recorder tries to publish, whatever the other
    /// grants say. Absent from older tickets, which therefore never record.
    #[serde(
        rename = "rec",
        alias = "record",
        default,
        skip_serializing_if = "is_false"
    )]
    pub record: bool,
}

/// Serde helper: leave `rec` out of tickets that do not record, so tickets minted
/// without the grant are byte for byte what they were before it existed.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
const fn is_false(value: &bool) -> bool {
    !*value
}

impl Grants {
    /// Everything allowed.
    pub const fn all() -> Self {
        Self {
            publish_audio: true,
            publish_video: true,
            publish_data: true,
            subscribe: true,
            record: false,
        }
    }

    /// Nothing allowed (the member can only see the roster).
    pub const fn none() -> Self {
        Self {
            publish_audio: false,
            publish_video: false,
            publish_data: false,
            subscribe: false,
            record: false,
        }
    }

    /// Only receiving.
    pub const fn subscribe_only() -> Self {
        Self {
            subscribe: true,
            ..Self::none()
        }
    }

    /// Only recording: the grant of a blind recorder.
    pub const fn recorder() -> Self {
        Self {
            record: true,
            ..Self::none()
        }
    }

    /// Whether frames of `kind` may be published (never by a recorder).
    #[cfg(feature = "frame")]
    pub const fn may_publish(&self, kind: sealroom_frame::envelope::MediaKind) -> bool {
        if self.record {
            return false;
        }
        match kind {
            sealroom_frame::envelope::MediaKind::Audio => self.publish_audio,
            sealroom_frame::envelope::MediaKind::Video => self.publish_video,
            sealroom_frame::envelope::MediaKind::Data => self.publish_data,
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
pub(crate) struct WireClaims {
    pub(crate) app: String,
    pub(crate) sub: String,
    pub(crate) room: String,
    pub(crate) nbf: u64,
    pub(crate) exp: u64,
    #[serde(default)]
    pub(crate) iat: Option<u64>,
    #[serde(default)]
    pub(crate) grants: Grants,
}

#[cfg(all(test, feature = "frame"))]
mod tests {
    use sealroom_frame::envelope::MediaKind;

    use super::Grants;

    #[test]
    fn a_recorder_publishes_nothing_whatever_else_it_is_granted() {
        let odd = Grants {
            record: true,
            ..Grants::all()
        };
        for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
            assert!(
                !odd.may_publish(kind),
                "a recorder never publishes {kind:?}"
            );
            assert!(Grants::all().may_publish(kind));
        }
    }
}
