//! The local spool: closed segments waiting to be stored, bounded in bytes.
//!
//! The recorder writes each segment into the spool directory and closes it there; the
//! uploader stores the oldest first and deletes the local file once storage has it. When
//! storage is away long enough for the closed segments to exceed the bound, the oldest one
//! not being uploaded is deleted unstored and reported, so the recorder's disk use stays
//! bounded: at most `max_bytes`, plus the segment being uploaded, plus the one being
//! written.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::archive::manifest::SegmentEntry;
use crate::archive::reader::read_segment;
use crate::archive::record::Record;

/// A closed segment in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spooled {
    /// Its file.
    pub(crate) path: PathBuf,
    /// What the manifest will say of it.
    pub(crate) entry: SegmentEntry,
}

/// Closed segments not yet stored, oldest first.
#[derive(Debug)]
pub(crate) struct Spool {
    queue: VecDeque<Spooled>,
    bytes: u64,
    max_bytes: u64,
    /// The name of the segment the uploader is storing, which is never dropped.
    in_flight: Option<String>,
}

impl Spool {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
            in_flight: None,
        }
    }

    /// Bytes of closed segments waiting.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segments waiting.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Add a closed segment; returns the segments dropped to stay within the bound (their
    /// files are deleted), oldest first.
    pub(crate) fn push(&mut self, segment: Spooled) -> Vec<Spooled> {
        self.bytes += segment.entry.bytes;
        self.queue.push_back(segment);
        let mut dropped = Vec::new();
        while self.bytes > self.max_bytes {
            let victim = self
                .queue
                .iter()
                .position(|s| Some(&s.entry.name) != self.in_flight.as_ref());
            // Never the newest: it is what was just closed and is kept if it alone is over.
            let Some(index) = victim.filter(|i| *i + 1 < self.queue.len()) else {
                break;
            };
            let Some(segment) = self.queue.remove(index) else {
                break;
            };
            self.bytes -= segment.entry.bytes;
            let _ = std::fs::remove_file(&segment.path);
            dropped.push(segment);
        }
        dropped
    }

    /// The oldest segment, marked as being uploaded.
    pub(crate) fn next_upload(&mut self) -> Option<Spooled> {
        let next = self.queue.front()?.clone();
        self.in_flight = Some(next.entry.name.clone());
        Some(next)
    }

    /// The segment `name` is stored: forget it and delete its file.
    pub(crate) fn stored(&mut self, name: &str) {
        self.in_flight = None;
        if let Some(index) = self.queue.iter().position(|s| s.entry.name == name)
            && let Some(segment) = self.queue.remove(index)
        {
            self.bytes -= segment.entry.bytes;
            let _ = std::fs::remove_file(&segment.path);
        }
    }
}

/// Segments a previous run left in the spool directory, closed (`.srs`) or not
/// (`.srs.part`, a run that was killed), oldest first, each renamed to its final name and
/// described from its own records. Files that are not segments are left alone.
pub(crate) fn recover(dir: &Path) -> std::io::Result<Vec<Spooled>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let final_name = if let Some(stem) = name.strip_suffix(".srs.part") {
            format!("{stem}.srs")
        } else if name.ends_with(".srs") {
            name.to_owned()
        } else {
            continue;
        };
        if !crate::archive::manifest::is_segment_name(&format!("segments/{final_name}")) {
            continue;
        }
        let data = Bytes::from(std::fs::read(&path)?);
        let contents = read_segment(&final_name, data.clone());
        let Some(header) = contents.header else {
            // Not even a header: nothing of it can be read, so there is nothing to store.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let times = contents.records.iter().map(|(_, r)| record_time(r));
        let first_us = times.clone().min().unwrap_or(header.created_us);
        let last_us = times.max().unwrap_or(header.created_us);
        let target = dir.join(&final_name);
        if target != path {
            std::fs::rename(&path, &target)?;
        }
        found.push(Spooled {
            path: target,
            entry: SegmentEntry {
                name: format!("segments/{final_name}"),
                session: header.session,
                index: header.index,
                first_us,
                last_us,
                records: contents.records.len() as u64,
                frames: contents
                    .records
                    .iter()
                    .filter(|(_, r)| matches!(r, Record::Frame { .. }))
                    .count() as u64,
                bytes: data.len() as u64,
                complete: contents.complete,
            },
        });
    }
    found.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(found)
}

/// The time a record carries.
pub(crate) fn record_time(record: &Record) -> u64 {
    match record {
        Record::Frame { arrival_us, .. } => *arrival_us,
        Record::Control { at_us, .. }
        | Record::Joined { at_us, .. }
        | Record::Loss { at_us, .. }
        | Record::End { at_us, .. } => *at_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(n: u32, bytes: u64) -> Spooled {
        Spooled {
            path: PathBuf::from(format!("/nonexistent/{n}")),
            entry: SegmentEntry {
                name: format!("segments/000001-{n:06}.srs"),
                session: 1,
                index: n,
                first_us: u64::from(n),
                last_us: u64::from(n),
                records: 1,
                frames: 1,
                bytes,
                complete: true,
            },
        }
    }

    #[test]
    fn a_full_spool_drops_the_oldest_segment_not_being_uploaded() {
        let mut spool = Spool::new(250);
        assert!(spool.push(segment(1, 100)).is_empty());
        assert!(spool.push(segment(2, 100)).is_empty());
        let uploading = spool.next_upload().expect("one waits");
        assert_eq!(uploading.entry.index, 1);
        let dropped = spool.push(segment(3, 100));
        assert_eq!(
            dropped.iter().map(|s| s.entry.index).collect::<Vec<_>>(),
            vec![2],
            "the oldest not in flight"
        );
        assert_eq!((spool.len(), spool.bytes()), (2, 200));
        spool.stored(&uploading.entry.name);
        assert_eq!((spool.len(), spool.bytes()), (1, 100));
        // A single segment over the bound is still kept.
        let mut tiny = Spool::new(10);
        assert!(tiny.push(segment(1, 100)).is_empty());
        assert_eq!(tiny.push(segment(2, 100)).len(), 1);
        assert_eq!(tiny.len(), 1);
    }
}
