//! What travels on a link's cascade stream: a [`Hello`] each way (the node index and its
//! proof), then [`CascadeEvent`]s, each postcard-encoded behind the stream framing's length
//! prefix. Media travels as it does towards members: datagrams and unidirectional streams
//! carrying envelope frames.

use bytes::{Bytes, BytesMut};
use sealroom_frame::stream::write_frame;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::Proof;

/// The ALPN of node links, apart from the members' `sealroom/1`.
pub const LINK_ALPN: &[u8] = b"sealroom-cascade/1";

/// Largest message on a cascade stream.
pub(crate) const MAX_LINK_MESSAGE: usize = 64 * 1024;

/// The first message each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The sender's node index.
    pub(crate) node: u16,
    /// The sender's proof of the cluster secret for this session.
    pub(crate) proof: Proof,
}

/// Why a message from a peer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a message of this version.
    #[error("malformed cascade message: {0}")]
    Malformed(String),
    /// Bytes follow the message.
    #[error("trailing bytes after a cascade message")]
    TrailingBytes,
}

/// Append `message`, framed, to `buf`.
pub(crate) fn encode<T: Serialize>(message: &T, buf: &mut BytesMut) -> Result<(), WireError> {
    let body = postcard::to_allocvec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
    write_frame(&body, buf);
    Ok(())
}

/// Decode one message (the frame's payload).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, WireError> {
    let (message, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use sealroom_frame::control::{LeaveReason, MemberInfo};
    use sealroom_frame::stream::Deframer;

    use super::*;
    use crate::engine::{CascadeEvent, RoomKey};

    #[test]
    fn events_round_trip_and_garbage_is_a_typed_error() {
        let event = CascadeEvent::MemberJoined {
            room: RoomKey::new("app", "r"),
            member: MemberInfo {
                member: 1 << 20 | 5,
                user: "alice".to_owned(),
                tracks: Vec::new(),
            },
            subscribes: true,
        };
        let left = CascadeEvent::MemberLeft {
            room: RoomKey::new("app", "r"),
            member: 9,
            reason: LeaveReason::TimedOut,
        };
        let mut buf = BytesMut::new();
        encode(&event, &mut buf).expect("encodes");
        encode(&left, &mut buf).expect("encodes");
        let mut deframer = Deframer::new(MAX_LINK_MESSAGE);
        deframer.push(buf.freeze());
        let a = deframer.next_frame().expect("framed").expect("a frame");
        let b = deframer.next_frame().expect("framed").expect("a frame");
        assert_eq!(decode::<CascadeEvent>(&a), Ok(event));
        assert_eq!(decode::<CascadeEvent>(&b), Ok(left));
        assert!(matches!(
            decode::<CascadeEvent>(&Bytes::from_static(&[0xff, 0xff, 0xff])),
            Err(WireError::Malformed(_))
        ));
        let mut long = a.to_vec();
        long.push(0);
        assert_eq!(
            decode::<CascadeEvent>(&Bytes::from(long)),
            Err(WireError::TrailingBytes)
        );
    }
}
