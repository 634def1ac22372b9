//! Reading a segment back.
//!
//! A reader never panics and never gives up on a whole segment for one bad record: it keeps
//! every record that checks out, reports every problem with the object name and the byte
//! offset, and after damage looks for the next record that checks out (its marker, a
//! length that fits and a matching CRC-32). A segment cut short reads up to its last
//! complete record. The work spent looking for records after damage is bounded, so a
//! hostile segment costs time linear in its size.

use std::fmt;

use bytes::Bytes;

use super::record::{RECORD_MARKER, RECORD_OVERHEAD, Record, RecordError, kind};
use super::segment::{HEADER_LEN, SegmentHeader};
use super::{ARCHIVE_VERSION, MAX_RECORD_BODY, SEGMENT_MAGIC};

/// What is wrong at one place of a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The object is shorter than the segment header.
    #[error("shorter than a segment header ({len} of {HEADER_LEN} bytes): not a complete segment")]
    TruncatedHeader {
        /// The object's length.
        len: usize,
    },
    /// The object does not start with the segment magic.
    #[error("not a sealroom segment (no `SEALREC` magic)")]
    BadMagic,
    /// The segment was written by an archive version this reader does not know.
    #[error(
        "archive version {0} is not supported by this reader (it reads version {ARCHIVE_VERSION}); use a newer sealroom"
    )]
    UnsupportedVersion(u8),
    /// The header's reserved bytes are not zero.
    #[error("reserved header bytes are not zero")]
    Reserved,
    /// The segment ends inside a record: the writer stopped (a crash, a kill, a full disk)
    /// while writing it. Everything before it was read.
    #[error(
        "cut short inside a record ({available} of {needed} bytes); the records before it were read"
    )]
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes left in the object.
        available: usize,
    },
    /// Bytes that are not a record where one should start.
    #[error("damaged: {0}; reading resumed at the next intact record")]
    Damaged(&'static str),
    /// No intact record follows damage.
    #[error("damaged: {0}; no intact record follows, the rest of the object is skipped")]
    DamagedToEnd(&'static str),
    /// A record whose checksum matches but whose body does not decode (skipped).
    #[error("record skipped: {0}")]
    BadRecord(RecordError),
    /// The `End` record counts a different number of records than were read.
    #[error("the closing record counts {said} records but {found} were found before it")]
    CountMismatch {
        /// What `End` says.
        said: u64,
        /// What was read.
        found: u64,
    },
    /// Bytes follow the closing record.
    #[error("{0} bytes follow the closing record (ignored)")]
    AfterEnd(usize),
    /// The segment has no closing record: its writer was stopped before closing it.
    #[error("not closed: the recorder stopped while writing it (everything complete was read)")]
    Unfinished,
}

/// A problem found in an archive object, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveProblem {
    /// The object (segment name).
    pub object: String,
    /// The byte offset in the object.
    pub offset: u64,
    /// What is wrong.
    pub error: SegmentError,
}

impl fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: {}", self.object, self.offset, self.error)
    }
}

impl std::error::Error for ArchiveProblem {}

/// Everything read from one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentContents {
    /// The object's name.
    pub object: String,
    /// Its header, when it had a valid one.
    pub header: Option<SegmentHeader>,
    /// The records that checked out, with their byte offsets, in order (the closing `End`
    /// record is not included).
    pub records: Vec<(u64, Record)>,
    /// Every problem found.
    pub problems: Vec<ArchiveProblem>,
    /// Whether the segment ended with its closing record.
    pub complete: bool,
}

/// Read one segment, `data` being the whole object named `object`.
pub fn read_segment(object: &str, data: Bytes) -> SegmentContents {
    let mut out = SegmentContents {
        object: object.to_owned(),
        header: None,
        records: Vec::new(),
        problems: Vec::new(),
        complete: false,
    };
    match parse_header(&data) {
        Ok(header) => out.header = Some(header),
        Err(error) => {
            out.problems.push(problem(object, 0, error));
            return out;
        }
    }
    let mut reader = Reader {
        data: &data,
        // Looking for records after damage may hash each byte a few times, no more.
        resync_budget: data.len().saturating_mul(4).saturating_add(1 << 20),
    };
    let mut pos = HEADER_LEN;
    let mut found: u64 = 0;
    while pos < data.len() {
        match reader.record_at(pos) {
            Ok((type_byte, body_len)) => {
                let body = data.slice(pos + 8..pos + 8 + body_len);
                let next = pos + RECORD_OVERHEAD + body_len;
                match Record::decode_body(type_byte, &body) {
                    Ok(Record::End { records, .. }) if type_byte == kind::END => {
                        if records != found {
                            out.problems.push(problem(
                                object,
                                pos,
                                SegmentError::CountMismatch {
                                    said: records,
                                    found,
                                },
                            ));
                        }
                        out.complete = true;
                        if next < data.len() {
                            out.problems.push(problem(
                                object,
                                next,
                                SegmentError::AfterEnd(data.len() - next),
                            ));
                        }
                        return out;
                    }
                    Ok(record) => {
                        out.records.push((pos as u64, record));
                    }
                    Err(err) => {
                        out.problems
                            .push(problem(object, pos, SegmentError::BadRecord(err)));
                    }
                }
                found += 1;
                pos = next;
            }
            Err(Damage::Truncated { needed }) => {
                // A cut-short record at the very end, unless an intact record follows
                // (then it was damage, not a cut).
                if let Some(next) = reader.resync(pos + 1) {
                    out.problems.push(problem(
                        object,
                        pos,
                        SegmentError::Damaged("a record length runs past the end"),
                    ));
                    pos = next;
                } else {
                    out.problems.push(problem(
                        object,
                        pos,
                        SegmentError::Truncated {
                            needed,
                            available: data.len() - pos,
                        },
                    ));
                    return out;
                }
            }
            Err(Damage::Bad(what)) => {
                if let Some(next) = reader.resync(pos + 1) {
                    out.problems
                        .push(problem(object, pos, SegmentError::Damaged(what)));
                    pos = next;
                } else {
                    out.problems
                        .push(problem(object, pos, SegmentError::DamagedToEnd(what)));
                    return out;
                }
            }
        }
    }
    out.problems
        .push(problem(object, data.len(), SegmentError::Unfinished));
    out
}

fn problem(object: &str, offset: usize, error: SegmentError) -> ArchiveProblem {
    ArchiveProblem {
        object: object.to_owned(),
        offset: offset as u64,
        error,
    }
}

fn parse_header(data: &[u8]) -> Result<SegmentHeader, SegmentError> {
    let n = data.len().min(SEGMENT_MAGIC.len());
    if data[..n] != SEGMENT_MAGIC[..n] {
        return Err(SegmentError::BadMagic);
    }
    if data.len() <= SEGMENT_MAGIC.len() {
        return Err(SegmentError::TruncatedHeader { len: data.len() });
    }
    if data[8] != ARCHIVE_VERSION {
        return Err(SegmentError::UnsupportedVersion(data[8]));
    }
    if data.len() < HEADER_LEN {
        return Err(SegmentError::TruncatedHeader { len: data.len() });
    }
    if data[9..12] != [0, 0, 0] {
        return Err(SegmentError::Reserved);
    }
    let mut recording = [0u8; 16];
    recording.copy_from_slice(&data[12..28]);
    let u32_at =
        |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let mut created = [0u8; 8];
    created.copy_from_slice(&data[36..44]);
    Ok(SegmentHeader {
        recording,
        session: u32_at(28),
        index: u32_at(32),
        created_us: u64::from_be_bytes(created),
    })
}

enum Damage {
    Truncated { needed: usize },
    Bad(&'static str),
}

struct Reader<'a> {
    data: &'a [u8],
    resync_budget: usize,
}

impl Reader<'_> {
    /// Check the record at `pos`: its type byte and body length when it is intact.
    fn record_at(&self, pos: usize) -> Result<(u8, usize), Damage> {
        let data = self.data;
        let rest = data.len() - pos;
        if rest < 8 {
            let n = rest.min(2);
            if data[pos..pos + n] != RECORD_MARKER[..n] {
                return Err(Damage::Bad("no record marker"));
            }
            return Err(Damage::Truncated {
                needed: RECORD_OVERHEAD,
            });
        }
        if data[pos..pos + 2] != RECORD_MARKER {
            return Err(Damage::Bad("no record marker"));
        }
        if data[pos + 3] != 0 {
            return Err(Damage::Bad("reserved record byte is not zero"));
        }
        let len = u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_RECORD_BODY {
            return Err(Damage::Bad("a record length over the limit"));
        }
        let total = RECORD_OVERHEAD + len;
        if total > rest {
            return Err(Damage::Truncated { needed: total });
        }
        let crc_at = pos + 8 + len;
        let stored = u32::from_be_bytes([
            data[crc_at],
            data[crc_at + 1],
            data[crc_at + 2],
            data[crc_at + 3],
        ]);
        if crc32fast::hash(&data[pos..crc_at]) != stored {
            return Err(Damage::Bad("checksum mismatch"));
        }
        Ok((data[pos + 2], len))
    }

    /// The next position at or after `from` where an intact record starts, within the
    /// work budget.
    fn resync(&mut self, from: usize) -> Option<usize> {
        let data = self.data;
        let mut pos = from;
        while pos + RECORD_OVERHEAD <= data.len() {
            let at = data[pos..].windows(2).position(|w| w == RECORD_MARKER)?;
            pos += at;
            if pos + RECORD_OVERHEAD > data.len() {
                return None;
            }
            let len =
                u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            let cost = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(8);
            if cost > self.resync_budget {
                return None;
            }
            if self.record_at(pos).is_ok() {
                return Some(pos);
            }
            self.resync_budget -= cost.min(self.resync_budget);
            pos += 1;
        }
        None
    }
}
