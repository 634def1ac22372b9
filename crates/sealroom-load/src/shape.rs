//! The traffic shapes a publisher can send: what each frame is, how often, and how it crosses
//! QUIC (the same mapping `docs/TRANSPORT.md` gives for real clients).

use std::time::Duration;

use sealroom_frame::envelope::MediaKind;

/// A selectable shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShapeName {
    /// 160 B audio frames at 50 frames/s (one 20 ms Opus frame), as QUIC datagrams.
    Audio,
    /// 10 kB video frames at 30 frames/s in 60-frame groups, one stream per group.
    Video10k,
    /// 50 kB video frames at 50 frames/s in 50-frame groups, one stream per group.
    Video50k,
    /// 1 KiB reliable data messages at 30/s on one long-lived stream.
    Data,
    /// 64 B audio-sized frames at 10 frames/s: the tiny shape CI runs.
    Tiny,
}

/// How a shape's frames cross QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Transport {
    /// One frame per QUIC datagram.
    Datagram,
    /// One unidirectional stream per group of pictures.
    StreamPerGroup,
    /// One long-lived unidirectional stream per track.
    Stream,
}

/// A shape's parameters.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Shape {
    /// Its name.
    pub(crate) name: ShapeName,
    /// Payload bytes per frame (what the SFrame ciphertext would be); the envelope adds 32.
    pub(crate) payload_len: usize,
    /// Frames per second per publisher.
    pub(crate) fps: u32,
    /// Frames per group (video); 0 for shapes without groups.
    pub(crate) group_len: u32,
    /// The envelope's media kind.
    #[serde(skip)]
    pub(crate) kind: MediaKind,
    /// The QUIC mapping.
    pub(crate) transport: Transport,
}

impl Shape {
    pub(crate) fn of(name: ShapeName) -> Self {
        let (payload_len, fps, group_len, kind, transport) = match name {
            ShapeName::Audio => (160, 50, 0, MediaKind::Audio, Transport::Datagram),
            ShapeName::Video10k => (10_000, 30, 60, MediaKind::Video, Transport::StreamPerGroup),
            ShapeName::Video50k => (50_000, 50, 50, MediaKind::Video, Transport::StreamPerGroup),
            ShapeName::Data => (1024, 30, 0, MediaKind::Data, Transport::Stream),
            ShapeName::Tiny => (64, 10, 0, MediaKind::Audio, Transport::Datagram),
        };
        Self {
            name,
            payload_len,
            fps,
            group_len,
            kind,
            transport,
        }
    }

    /// Time between two frames of one publisher.
    pub(crate) fn period(&self) -> Duration {
        Duration::from_secs(1) / self.fps.max(1)
    }

    /// Bytes of one frame on the wire inside QUIC (envelope header and payload).
    pub(crate) fn frame_len(&self) -> usize {
        sealroom_frame::envelope::Envelope::HEADER_LEN + self.payload_len
    }

    /// A one-line description for reports.
    pub(crate) fn describe(&self) -> String {
        let how = match self.transport {
            Transport::Datagram => "datagrams".to_owned(),
            Transport::StreamPerGroup => format!("{}-frame groups, a stream each", self.group_len),
            Transport::Stream => "one reliable stream".to_owned(),
        };
        format!("{} B payload at {}/s, {how}", self.payload_len, self.fps)
    }
}
