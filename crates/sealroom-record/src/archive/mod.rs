//! The archive format: segment objects made of self-delimiting records, and a manifest
//! per recording. docs/RECORDING.md draws every byte; this module is its one
//! implementation, and its tests pin the examples given there.
//!
//! - [`record`]: one record's layout, encoding and decoding;
//! - [`segment`]: the segment header and the writer that appends records to a file;
//! - [`reader`]: reading a segment back, up to its last complete record, resuming after
//!   damage and reporting every problem with the object and the offset;
//! - [`manifest`]: the JSON manifest of a recording.

pub mod manifest;
pub mod reader;
pub mod record;
pub mod segment;

pub use manifest::{Manifest, ManifestError, SegmentEntry};
pub use reader::{ArchiveProblem, SegmentContents, read_segment};
pub use record::{LossKind, Record, RecordError};
pub use segment::{SegmentHeader, SegmentWriter};

/// The archive format version this crate writes and reads (segment header and manifest).
pub const ARCHIVE_VERSION: u8 = 1;

/// The eight bytes every segment starts with.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SEALREC\n";

/// Largest record body a reader accepts: a whole frame of the largest payload the envelope
/// allows, its header and the record's own fields.
pub const MAX_RECORD_BODY: usize = sealroom_frame::envelope::MAX_PAYLOAD_LEN + 64;

#[cfg(test)]
mod tests;
