//! The segment header and the writer that appends records to a segment file.
//!
//! A segment is written under a `.part` name; records are buffered and written to the file
//! at every [`SegmentWriter::flush`] (the recorder flushes on a short interval), so a
//! process killed at any moment leaves a file that reads up to its last complete record.
//! [`SegmentWriter::finish`] appends the `End` record, syncs the file and renames it to its
//! final name.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::BufMut;

use super::SegmentEntry;
use super::record::{Record, RecordError};
use super::{ARCHIVE_VERSION, SEGMENT_MAGIC};

/// Bytes of the segment header.
pub const HEADER_LEN: usize = 44;

/// The fixed header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The recording this segment belongs to.
    pub recording: [u8; 16],
    /// The recorder session (1 for the first run, one more for each restart).
    pub session: u32,
    /// The segment's number within its session, from 1.
    pub index: u32,
    /// When the segment was started, microseconds since the Unix epoch.
    pub created_us: u64,
}

impl SegmentHeader {
    /// The encoded header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.put_slice(&SEGMENT_MAGIC);
        out.put_u8(ARCHIVE_VERSION);
        out.put_slice(&[0, 0, 0]);
        out.put_slice(&self.recording);
        out.put_u32(self.session);
        out.put_u32(self.index);
        out.put_u64(self.created_us);
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&out);
        header
    }

    /// The object name of this segment under a recording's prefix:
    /// `segments/SSSSSS-IIIIII.srs`, so names sort in recording order.
    pub fn object_name(&self) -> String {
        format!("segments/{:06}-{:06}.srs", self.session, self.index)
    }
}

/// Appends records to one segment file.
#[derive(Debug)]
pub struct SegmentWriter {
    header: SegmentHeader,
    file: File,
    part: PathBuf,
    buffer: Vec<u8>,
    records: u64,
    frames: u64,
    bytes: u64,
    first_us: Option<u64>,
    last_us: u64,
}

/// What a finished segment holds, for the manifest and the uploader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// The header it was written with.
    pub header: SegmentHeader,
    /// Its file, under its final name.
    pub path: PathBuf,
    /// Records, the `End` record included.
    pub records: u64,
    /// Frame records.
    pub frames: u64,
    /// Bytes, header included.
    pub bytes: u64,
    /// Time of its first record (or its creation when empty).
    pub first_us: u64,
    /// Time of its last record.
    pub last_us: u64,
}

impl SealedSegment {
    /// The manifest's entry for this segment, closed in order.
    #[must_use]
    pub fn entry(&self) -> SegmentEntry {
        SegmentEntry {
            name: self.header.object_name(),
            session: self.header.session,
            index: self.header.index,
            first_us: self.first_us,
            last_us: self.last_us,
            records: self.records,
            frames: self.frames,
            bytes: self.bytes,
            complete: true,
        }
    }
}

impl SegmentWriter {
    /// Start a segment in `dir`, as `<session>-<index>.srs.part`.
    ///
    /// # Errors
    /// The I/O error when the file cannot be created or written.
    pub fn create(dir: &Path, header: SegmentHeader) -> std::io::Result<Self> {
        let part = dir.join(format!(
            "{:06}-{:06}.srs.part",
            header.session, header.index
        ));
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&part)?;
        file.write_all(&header.encode())?;
        Ok(Self {
            header,
            file,
            part,
            buffer: Vec::with_capacity(64 * 1024),
            records: 0,
            frames: 0,
            bytes: HEADER_LEN as u64,
            first_us: None,
            last_us: header.created_us,
        })
    }

    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Bytes written or buffered so far, header included.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes buffered and not yet written to the file.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Append a record at time `at_us` (buffered until the next flush).
    ///
    /// # Errors
    /// [`RecordError`] when the record cannot be encoded; nothing is appended then.
    pub fn append(&mut self, record: &Record, at_us: u64) -> Result<(), RecordError> {
        let before = self.buffer.len();
        record.encode(&mut self.buffer)?;
        self.bytes += (self.buffer.len() - before) as u64;
        self.records += 1;
        if matches!(record, Record::Frame { .. }) {
            self.frames += 1;
        }
        self.first_us.get_or_insert(at_us);
        self.last_us = self.last_us.max(at_us);
        Ok(())
    }

    /// Write what is buffered to the file (not synced: a killed process keeps it, a lost
    /// machine may not).
    ///
    /// # Errors
    /// The I/O error; the buffer is kept for a retry.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.file.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Close the segment: append `End`, write, sync, and rename it to `<...>.srs`.
    ///
    /// # Errors
    /// The I/O error; the `.part` file stays and reads up to its last complete record.
    pub fn finish(mut self, at_us: u64) -> std::io::Result<SealedSegment> {
        let end = Record::End {
            at_us,
            records: self.records,
        };
        self.append(&end, at_us)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.flush()?;
        self.file.sync_all()?;
        let path = self.part.with_extension("");
        std::fs::rename(&self.part, &path)?;
        Ok(SealedSegment {
            header: self.header,
            path,
            records: self.records,
            frames: self.frames,
            bytes: self.bytes,
            first_us: self.first_us.unwrap_or(self.header.created_us),
            last_us: self.last_us,
        })
    }
}
