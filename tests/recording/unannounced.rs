//! Recordings written record by record, to pin how the opener names a sender the recording
//! has not announced yet. The relay does not order control messages and media
//! (docs/TRANSPORT.md, Ordering), so a member's first frames can be recorded before the
//! `MemberJoined` that gives its user; member ids start again with every relay session.

use std::path::Path;

use anyhow::Context;
use bytes::BytesMut;
use sealroom_crypto::{CipherSuite, KeySchedule, RoomSecret, Sealer};
use sealroom_frame::control::{ControlMessage, MemberInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId};
use sealroom_record::archive::{Manifest, Record, SegmentHeader, SegmentWriter};

use crate::support::*;

const RECORDER: MemberId = 1;
const TRACK: u32 = 3;

/// One recorder session's records, sealed as members seal them, stored as one segment.
pub(crate) struct Recording {
    secret: RoomSecret,
    sealer: Sealer,
    records: Vec<Record>,
    at_us: u64,
}

impl Recording {
    pub(crate) fn new() -> Self {
        let secret = RoomSecret::generate();
        let sealer = KeySchedule::new(&secret, CipherSuite::default()).sealer(0);
        Self {
            secret,
            sealer,
            records: Vec::new(),
            at_us: 1_700_000_000_000_000,
        }
    }

    fn tick(&mut self) -> u64 {
        self.at_us += 1_000;
        self.at_us
    }

    /// The recorder (re)joined a relay session; `roster` follows as `MemberJoined`.
    pub(crate) fn joined(&mut self, rejoin: bool, roster: &[(MemberId, &str)]) {
        let at_us = self.tick();
        self.records.push(Record::Joined {
            at_us,
            member: RECORDER,
            rejoin,
        });
        for (member, user) in roster {
            self.member_joined(*member, user);
        }
    }

    pub(crate) fn member_joined(&mut self, member: MemberId, user: &str) {
        let at_us = self.tick();
        self.records.push(Record::Control {
            at_us,
            message: ControlMessage::MemberJoined(MemberInfo {
                member,
                user: user.to_owned(),
                tracks: Vec::new(),
            }),
        });
    }

    /// A data message from `sender` on track [`TRACK`].
    pub(crate) fn message(&mut self, sender: MemberId, seq: u32, text: &str) -> anyhow::Result<()> {
        let envelope = Envelope {
            kind: MediaKind::Data,
            flags: Flags::empty(),
            sender,
            track: TRACK,
            group: 0,
            seq,
            timestamp_us: 0,
        };
        self.frame(envelope, text.as_bytes())
    }

    /// A frame sealed under `envelope`, captured when it is recorded.
    pub(crate) fn frame(&mut self, mut envelope: Envelope, plain: &[u8]) -> anyhow::Result<()> {
        let at_us = self.tick();
        envelope.timestamp_us = at_us;
        let sealed_len = self.sealer.sealed_len(plain.len());
        let mut frame = BytesMut::new();
        envelope.encode_header(sealed_len, &mut frame)?;
        self.sealer.seal(&envelope.metadata(), plain, &mut frame)?;
        self.records.push(Record::frame(at_us, frame.freeze())?);
        Ok(())
    }

    /// Store the records as recording `call-1` under `store`, with its manifest.
    fn store(&self, store: &Path) -> anyhow::Result<()> {
        let prefix = store.join("call-1");
        let segments = prefix.join("segments");
        std::fs::create_dir_all(&segments)?;
        let id = [7u8; 16];
        let header = SegmentHeader {
            recording: id,
            session: 1,
            index: 1,
            created_us: 1_700_000_000_000_000,
        };
        let mut writer = SegmentWriter::create(&segments, header)?;
        for record in &self.records {
            writer.append(record, self.at_us)?;
        }
        let sealed = writer.finish(self.at_us + 1)?;
        let mut manifest = Manifest::new(&id, APP.app, ROOM, header.created_us);
        manifest.segments.push(sealed.entry());
        std::fs::write(prefix.join("manifest.json"), manifest.to_json())?;
        Ok(())
    }

    /// Store and open the recording; the report and the output directory.
    pub(crate) fn open(
        &self,
        name: &str,
        options: &[&str],
    ) -> anyhow::Result<(serde_json::Value, TempDir)> {
        let store = TempDir::new(&format!("rec-store-{name}"));
        self.store(store.path())?;
        let out = TempDir::new(&format!("rec-open-{name}"));
        let url = file_url(store.path());
        let mut args = vec!["--storage", &url];
        args.extend_from_slice(options);
        let report = open(&args, &self.secret, out.path(), "raw")?;
        Ok((report, out))
    }
}

/// The texts of `user`'s data track, or nothing when the report names no such track.
pub(crate) fn texts(
    report: &serde_json::Value,
    out: &Path,
    user: &str,
) -> anyhow::Result<Vec<String>> {
    let Ok((file, frames, _)) = track_file(report, user, "data", u64::from(TRACK)) else {
        return Ok(Vec::new());
    };
    let texts = data_texts(&out.join(file))?;
    assert_eq!(
        texts.len() as u64,
        frames,
        "the report counts what the file holds"
    );
    Ok(texts)
}

pub(crate) fn problems(report: &serde_json::Value) -> anyhow::Result<Vec<String>> {
    Ok(report["problems"]
        .as_array()
        .context("problems")?
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect())
}

#[test]
fn frames_recorded_before_their_members_announcement_go_to_the_users_file() -> anyhow::Result<()> {
    let mut rec = Recording::new();
    rec.joined(false, &[]);
    rec.message(2, 0, "first")?;
    rec.message(2, 1, "second")?;
    rec.member_joined(2, "alice");
    rec.message(2, 2, "third")?;
    let (report, out) = rec.open("early", &[])?;
    assert_eq!(
        texts(&report, out.path(), "alice")?,
        ["first", "second", "third"],
        "{report:#}"
    );
    assert_eq!(
        report["tracks"].as_array().context("tracks")?.len(),
        1,
        "{report:#}"
    );
    assert_eq!(report["frames_opened"], 3);
    assert_eq!(problems(&report)?, Vec::<String>::new());
    Ok(())
}

#[test]
fn a_sender_never_announced_in_its_relay_session_is_exported_under_its_member_id()
-> anyhow::Result<()> {
    let mut rec = Recording::new();
    rec.joined(false, &[(4, "carol")]);
    rec.message(4, 0, "carol before the restart")?;
    rec.message(5, 0, "from 5 before the restart")?;
    // The relay restarted: member ids start again, and 4 and 5 name other members now.
    rec.joined(true, &[(5, "bob")]);
    rec.message(5, 0, "bob after the restart")?;
    rec.message(4, 0, "from 4 after the restart")?;
    let (report, out) = rec.open("never", &[])?;
    assert_eq!(
        texts(&report, out.path(), "carol")?,
        ["carol before the restart"],
        "{report:#}"
    );
    assert_eq!(
        texts(&report, out.path(), "bob")?,
        ["bob after the restart"]
    );
    assert_eq!(
        texts(&report, out.path(), "member5")?,
        ["from 5 before the restart"]
    );
    assert_eq!(
        texts(&report, out.path(), "member4")?,
        ["from 4 after the restart"]
    );
    assert_eq!(report["frames_opened"], 4);
    let problems = problems(&report)?;
    assert!(
        problems.iter().any(|p| p.starts_with("member 5:"))
            && problems.iter().any(|p| p.starts_with("member 4:")),
        "each unannounced sender is reported: {problems:#?}"
    );
    Ok(())
}

#[test]
fn frames_held_past_the_bound_are_exported_under_the_member_id_and_said_so() -> anyhow::Result<()> {
    let mut rec = Recording::new();
    rec.joined(false, &[]);
    let sent: Vec<String> = (0..12)
        .map(|i| format!("{i:02} {}", "x".repeat(200)))
        .collect();
    for (seq, text) in (0..).zip(&sent[..8]) {
        rec.message(2, seq, text)?;
    }
    rec.member_joined(2, "alice");
    for (seq, text) in (8..).zip(&sent[8..]) {
        rec.message(2, seq, text)?;
    }
    let (report, out) = rec.open("bound", &["--hold-max-bytes", "1000"])?;
    let early = texts(&report, out.path(), "member2")?;
    let late = texts(&report, out.path(), "alice")?;
    assert_eq!(
        early,
        sent[..8],
        "past the bound, the frames before the announcement are exported under the member \
         id, in order: {report:#}"
    );
    assert_eq!(
        late,
        sent[8..],
        "announced, the member's frames go to its user"
    );
    assert_eq!(report["frames_opened"], 12);
    let problems = problems(&report)?;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("member 2:") && p.contains("--hold-max-bytes")),
        "the bound is named: {problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("announced as alice after 8 of its frames")),
        "the split is named: {problems:#?}"
    );
    Ok(())
}
