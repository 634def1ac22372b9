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
pub const MAX_LINK_MESSAGE: usize = 64 * 1024;

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

/// Decode one cascade event (a frame's payload), as a link reads its peer's.
///
/// # Errors
/// [`WireError`] when the bytes are not exactly one event of this version.
pub fn decode_event(bytes: &Bytes) -> Result<crate::engine::CascadeEvent, WireError> {
    decode(bytes)
}

/// Append `event`, framed, to `buf`, as a link writes it.
///
/// # Errors
/// [`WireError::Malformed`] if the event cannot be encoded.
pub fn encode_event(
    event: &crate::engine::CascadeEvent,
    buf: &mut BytesMut,
) -> Result<(), WireError> {
    encode(event, buf)
}

/// Decode `bytes` as a link's first message (the `Hello`), as the link does, and return
/// its encoding again: for the fuzz target and tests, the `Hello`'s type being private.
///
/// # Errors
/// [`WireError`] when the bytes are not exactly one `Hello`.
#[cfg(feature = "testing")]
pub fn hello_reencoded(bytes: &Bytes) -> Result<Bytes, WireError> {
    let hello: Hello = decode(bytes)?;
    let body = postcard::to_allocvec(&hello).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(Bytes::from(body))
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
