//! The manifest of a recording: `manifest.json` under the recording's prefix.
//!
//! It names the recording (id, app, room, when it started), lists its recorder sessions and
//! every segment stored so far, and every segment the recorder had to drop. The recorder
//! rewrites it after each upload; a reader trusts the segments themselves over it (a
//! segment stored just before a crash may be missing from it) and reports any difference.

use serde::{Deserialize, Serialize};

use super::ARCHIVE_VERSION;

/// The `format` value of every manifest.
pub const MANIFEST_FORMAT: &str = "sealroom-recording";

/// Largest manifest a reader accepts, in bytes.
pub const MAX_MANIFEST_LEN: usize = 16 * 1024 * 1024;

/// A recording's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The archive version ([`ARCHIVE_VERSION`]).
    pub version: u8,
    /// The recording id, 32 hexadecimal digits (as in every segment header).
    pub recording: String,
    /// The app id the room belongs to.
    pub app: String,
    /// The room id.
    pub room: String,
    /// When the recording started, microseconds since the Unix epoch.
    pub started_us: u64,
    /// Recorder sessions (one per run of the recorder), in order.
    #[serde(default)]
    pub sessions: Vec<SessionEntry>,
    /// Segments stored, in recording order.
    #[serde(default)]
    pub segments: Vec<SegmentEntry>,
    /// Segments dropped before they could be stored (the spool was full).
    #[serde(default)]
    pub dropped: Vec<SegmentEntry>,
}

/// One run of the recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The session number (1, 2, ...).
    pub session: u32,
    /// When it started, microseconds since the Unix epoch.
    pub started_us: u64,
}

/// A segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// The object name under the recording's prefix (`segments/SSSSSS-IIIIII.srs`).
    pub name: String,
    /// Its recorder session.
    pub session: u32,
    /// Its number in the session.
    pub index: u32,
    /// Time of its first record, microseconds since the Unix epoch.
    pub first_us: u64,
    /// Time of its last record.
    pub last_us: u64,
    /// Records it holds.
    pub records: u64,
    /// Of those, frames.
    #[serde(default)]
    pub frames: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether it was closed in order (false for a segment recovered after a crash).
    #[serde(default = "yes")]
    pub complete: bool,
}

const fn yes() -> bool {
    true
}

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_LEN`].
    #[error("manifest of {0} bytes is over the {MAX_MANIFEST_LEN}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the manifest's shape.
    #[error("manifest is not valid: {0}")]
    Malformed(String),
    /// Another `format` value.
    #[error("not a sealroom recording manifest (format {0:?})")]
    WrongFormat(String),
    /// A version this reader does not know.
    #[error(
        "manifest version {0} is not supported by this reader (it reads version {ARCHIVE_VERSION}); use a newer sealroom"
    )]
    UnsupportedVersion(u8),
    /// A segment name that is not of the form the recorder writes.
    #[error("manifest names a segment {0:?} outside `segments/`")]
    BadSegmentName(String),
}

impl Manifest {
    /// A new manifest for a recording.
    pub fn new(recording: &[u8; 16], app: &str, room: &str, started_us: u64) -> Self {
        Self {
            format: MANIFEST_FORMAT.to_owned(),
            version: ARCHIVE_VERSION,
            recording: hex::encode(recording),
            app: app.to_owned(),
            room: room.to_owned(),
            started_us,
            sessions: Vec::new(),
            segments: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// The recording id as bytes, when it is 32 hexadecimal digits.
    pub fn recording_id(&self) -> Option<[u8; 16]> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(&self.recording, &mut id).ok()?;
        Some(id)
    }

    /// The encoded manifest (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parse and check a manifest.
    ///
    /// # Errors
    /// [`ManifestError`] naming the problem.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let manifest: Self =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::WrongFormat(manifest.format));
        }
        if manifest.version != ARCHIVE_VERSION {
            return Err(ManifestError::UnsupportedVersion(manifest.version));
        }
        if manifest.recording_id().is_none() {
            return Err(ManifestError::Malformed(String::from(
                "the recording id is not 32 hexadecimal digits",
            )));
        }
        for entry in manifest.segments.iter().chain(&manifest.dropped) {
            if !is_segment_name(&entry.name) {
                return Err(ManifestError::BadSegmentName(entry.name.clone()));
            }
        }
        Ok(manifest)
    }

    /// The next session number: one more than any listed.
    pub fn next_session(&self) -> u32 {
        self.sessions
            .iter()
            .map(|s| s.session)
            .chain(self.segments.iter().map(|s| s.session))
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }
}

/// Whether `name` is a segment name the recorder writes: `segments/` then digits, a dash,
/// digits and `.srs`, nothing that could climb out of a directory.
pub fn is_segment_name(name: &str) -> bool {
    let Some(file) = name.strip_prefix("segments/") else {
        return false;
    };
    let Some(stem) = file.strip_suffix(".srs") else {
        return false;
    };
    let Some((session, index)) = stem.split_once('-') else {
        return false;
    };
    !session.is_empty()
        && !index.is_empty()
        && session.len() <= 10
        && index.len() <= 10
        && session.bytes().all(|b| b.is_ascii_digit())
        && index.bytes().all(|b| b.is_ascii_digit())
}
