//! A large MLS group changing over a real relay: its group info (the ratchet tree, about
//! 260 bytes per member) is far past what one control message holds, so it travels in
//! pieces (`MlsGroupInfoPart`) both ways, within the relay's `max_mls_group_info_len`.
//!
//! The group is built out of band (one member adds the others' key packages in one
//! commit), then its holder offers it to the relay and two newcomers join by external
//! commit over QUIC, the holder commits an update and a removal, and every member that
//! is online ends on the same epoch with keys that open each other's frames. The agents
//! are driven directly over raw QUIC connections so that the roster they follow can name
//! every member of the group, not only the three that are online.

use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_frame::control::{ControlMessage, MemberInfo};
use sealroom_frame::envelope::MemberId;
use sealroom_mls::{AgentConfig, MlsAgent, MlsEvent, MlsMember, MlsOpener, MlsOpenerConfig};
use sealroom_relay::{Grants, Limits};
use sealroom_test_support::raw::Raw;

use crate::support::TestRelay;

/// Group size: 500 (`SEALROOM_MLS_MEMBERS` sets another, for trying larger groups).
fn group_size() -> usize {
    std::env::var("SEALROOM_MLS_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

const GROUP_ID: &[u8] = b"sealroom";

/// One member online: its raw connection and its agent.
pub(crate) struct WireAgent {
    pub(crate) raw: Raw,
    pub(crate) agent: MlsAgent,
    seen: usize,
    pub(crate) events: Vec<MlsEvent>,
    /// The largest MLS message this member sent (bytes of the encoded control message).
    largest_sent: usize,
    pieces_sent: usize,
}

impl WireAgent {
    async fn join(relay: &TestRelay, user: &str, agent: MlsAgent) -> anyhow::Result<Self> {
        let ticket = relay.ticket("app-a", user, "big-room", Grants::all());
        let raw = Raw::join(&relay.relay, &ticket).await?;
        Ok(Self::new(raw, agent))
    }

    pub(crate) fn new(raw: Raw, agent: MlsAgent) -> Self {
        Self {
            raw,
            agent,
            seen: 1,
            events: Vec::new(),
            largest_sent: 0,
            pieces_sent: 0,
        }
    }

    /// How many of the relay's control messages this member has taken in.
    pub(crate) fn seen(&self) -> usize {
        self.seen
    }

    /// Send what the agent queued, take in what the relay sent since last time.
    pub(crate) async fn step(&mut self) -> anyhow::Result<()> {
        while let Some(message) = self.agent.poll_transmit() {
            let len = message.to_bytes()?.len();
            self.largest_sent = self.largest_sent.max(len);
            if matches!(message, ControlMessage::MlsGroupInfoPart { .. }) {
                self.pieces_sent += 1;
            }
            self.raw.send_control(&message).await?;
        }
        let messages = self.raw.messages_since(self.seen);
        for message in &messages {
            self.agent
                .handle_control(message, std::time::Instant::now());
        }
        self.seen += messages.len();
        self.events
            .extend(std::iter::from_fn(|| self.agent.poll_event()));
        Ok(())
    }
}

/// Step every member until `done` holds (a generous deadline only turns a hang into a
/// failure: a debug build verifies a tree of hundreds of leaves slowly).
async fn drive(
    members: &mut [&mut WireAgent],
    what: &str,
    done: impl Fn(&[&mut WireAgent]) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        for member in members.iter_mut() {
            member.step().await?;
        }
        if done(members) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let state: Vec<String> = members
                .iter()
                .map(|m| {
                    let events: Vec<String> = m
                        .events
                        .iter()
                        .map(|e| match e {
                            MlsEvent::EpochChanged { epoch, members } => {
                                format!("epoch {epoch} of {}", members.len())
                            }
                            other => format!("{other:?}"),
                        })
                        .collect();
                    format!(
                        "{}: epoch {:?}, events {events:?}",
                        m.agent.member().user(),
                        m.agent.member().epoch(),
                    )
                })
                .collect();
            bail!("never reached: {what}; {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The roster every online member follows: every user of the group and the newcomers.
pub(crate) fn roster(users: &[String]) -> Vec<MemberInfo> {
    users
        .iter()
        .enumerate()
        .map(|(i, user)| MemberInfo {
            member: 10_000 + MemberId::try_from(i).unwrap_or(0),
            user: user.clone(),
            tracks: Vec::new(),
        })
        .collect()
}

fn at_epoch(members: &[&mut WireAgent], epoch: u64, size: usize) -> bool {
    members.iter().all(|m| {
        m.agent.is_ready()
            && m.agent.member().epoch() == Some(epoch)
            && m.agent.member().members().len() == size
    })
}

/// Every member seals a frame with its current keys and every other opens it.
fn frames_open_across(members: &[&mut WireAgent]) -> anyhow::Result<usize> {
    let mut opened = 0;
    for sender in members {
        let keys = sender.agent.epoch_keys()?;
        let leaf = sender.agent.member().leaf_index().context("a leaf")?;
        let mut sealer = keys.sealer(leaf, 0).context("a sealer")?;
        let text = format!("from {}", sender.agent.member().user());
        let mut frame = Vec::new();
        sealer.seal(b"envelope", text.as_bytes(), &mut frame)?;
        for receiver in members {
            if std::ptr::eq(*sender, *receiver) {
                continue;
            }
            let mut opener =
                MlsOpener::new(receiver.agent.epoch_keys()?, MlsOpenerConfig::default());
            let mut out = Vec::new();
            let done = opener.open(b"envelope", &frame, &mut out)?;
            assert_eq!(&out[done.plaintext], text.as_bytes());
            opened += 1;
        }
    }
    Ok(opened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_500_changes_over_the_wire_with_its_group_info_in_pieces() -> anyhow::Result<()>
{
    let size = group_size();
    // The holder and size - 3 others are built out of band; two newcomers join over the
    // wire and bring the group to `size`.
    let mut users: Vec<String> = (0..size - 2).map(|i| format!("user-{i}")).collect();
    users.push("newcomer-b".into());
    users.push("newcomer-c".into());
    let mut holder = MlsMember::new(&users[0])?;
    holder.create_group(GROUP_ID)?;
    let packages = users[1..size - 2]
        .iter()
        .map(|user| MlsMember::new(user)?.key_package())
        .collect::<Result<Vec<_>, _>>()?;
    holder.add(&packages)?;
    holder.confirm_commit()?;
    assert_eq!(holder.members().len(), size - 2);

    let relay = TestRelay::with_limits(Limits::default()).await?;
    let roster = roster(&users);
    let config = AgentConfig::default();
    let mut a = WireAgent::join(
        &relay,
        &users[0],
        MlsAgent::with_member(holder, GROUP_ID, config),
    )
    .await?;
    a.agent
        .handle_joined(a.raw.member, &roster, std::time::Instant::now());
    drive(&mut [&mut a], "the holder offers the group", |m| {
        m[0].agent.is_ready()
    })
    .await?;
    let epoch = a.agent.member().epoch().context("an epoch")?;

    // Newcomers join by external commit, one after the other.
    let mut b = WireAgent::join(
        &relay,
        "newcomer-b",
        MlsAgent::new("newcomer-b", GROUP_ID, config)?,
    )
    .await?;
    b.agent
        .handle_joined(b.raw.member, &roster, std::time::Instant::now());
    drive(&mut [&mut a, &mut b], "b joins", |m| {
        at_epoch(m, epoch + 1, size - 1)
    })
    .await?;
    let mut c = WireAgent::join(
        &relay,
        "newcomer-c",
        MlsAgent::new("newcomer-c", GROUP_ID, config)?,
    )
    .await?;
    c.agent
        .handle_joined(c.raw.member, &roster, std::time::Instant::now());
    drive(&mut [&mut a, &mut b, &mut c], "c joins", |m| {
        at_epoch(m, epoch + 2, size)
    })
    .await?;
    let group_info = a.agent.member().group_info()?;
    assert!(
        group_info.len() > Limits::default().max_mls_message_len,
        "the group info ({} bytes) needs pieces",
        group_info.len()
    );

    // The holder commits an update of the full group: its group info goes in pieces.
    a.agent.update()?;
    drive(&mut [&mut a, &mut b, &mut c], "the update lands", |m| {
        at_epoch(m, epoch + 3, size)
    })
    .await?;
    assert_eq!(frames_open_across(&[&mut a, &mut b, &mut c])?, 6);

    // Every message stayed within one control message, and pieces were needed both ways:
    // the newcomers fetched the group info in pieces and sent theirs in pieces.
    for member in [&a, &b, &c] {
        assert!(member.largest_sent <= sealroom_frame::control::MAX_CONTROL_LEN);
        assert!(
            member.pieces_sent > 0,
            "{} sent no pieces",
            member.agent.member().user()
        );
        assert!(
            member
                .events
                .iter()
                .all(|e| matches!(e, MlsEvent::EpochChanged { .. }))
        );
    }
    for member in [&b, &c] {
        assert!(
            member
                .raw
                .messages()
                .iter()
                .any(|m| matches!(m, ControlMessage::MlsGroupInfoPart { .. }))
        );
    }

    // c leaves the room: the holder (lowest leaf) removes it at once; a and b move on.
    let c_member = roster.len() - 1;
    a.agent
        .handle_member_left(roster[c_member].member, std::time::Instant::now());
    b.agent
        .handle_member_left(roster[c_member].member, std::time::Instant::now());
    drive(&mut [&mut a, &mut b], "c's removal lands", |m| {
        at_epoch(m, epoch + 4, size - 1)
    })
    .await?;
    assert_eq!(frames_open_across(&[&mut a, &mut b])?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_info_past_the_bounds_is_refused_with_a_typed_reason() -> anyhow::Result<()> {
    // 150 members: some 27 KB of group info, two pieces.
    let mut holder = MlsMember::new("holder")?;
    holder.create_group(GROUP_ID)?;
    let packages = (1..150)
        .map(|i| MlsMember::new(&format!("user-{i}"))?.key_package())
        .collect::<Result<Vec<_>, _>>()?;
    holder.add(&packages)?;
    holder.confirm_commit()?;
    let users: Vec<String> = holder.members().into_iter().map(|m| m.user).collect();
    let roster = roster(&users);
    let info_len = holder.group_info()?.len();
    assert!(info_len > sealroom_frame::control::MLS_PART_LEN);

    // A relay that keeps one byte less than the group info refuses the holder's offer.
    let small = Limits {
        max_mls_message_len: 17 * 1024,
        max_mls_group_info_len: info_len - 1,
        ..Limits::default()
    };
    let relay = TestRelay::with_limits(small).await?;
    let mut a = WireAgent::join(
        &relay,
        "holder",
        MlsAgent::with_member(holder, GROUP_ID, AgentConfig::default()),
    )
    .await?;
    a.agent
        .handle_joined(a.raw.member, &roster, std::time::Instant::now());
    drive(&mut [&mut a], "the offer is refused", |m| {
        m[0].raw.messages().iter().any(|m| {
            matches!(
                m,
                ControlMessage::MlsRefused {
                    reason: sealroom_frame::control::MlsRefusal::TooLarge,
                    ..
                }
            )
        })
    })
    .await?;

    // With room for it, the relay keeps it; a member bounded to one byte less refuses to
    // take it, says so, and stays out of the group.
    let relay = TestRelay::with_limits(Limits::default()).await?;
    let holder = a.agent;
    let mut a = WireAgent::join(&relay, "holder", holder).await?;
    a.agent
        .handle_joined(a.raw.member, &roster, std::time::Instant::now());
    drive(&mut [&mut a], "the holder offers the group", |m| {
        m[0].agent.is_ready()
    })
    .await?;
    let bounded = AgentConfig::default().max_group_info_len(info_len - 1);
    let mut b = WireAgent::join(
        &relay,
        "user-1",
        MlsAgent::new("user-1", GROUP_ID, bounded)?,
    )
    .await?;
    b.agent
        .handle_joined(b.raw.member, &roster, std::time::Instant::now());
    drive(&mut [&mut a, &mut b], "b refuses the group info", |m| {
        m[1].events.iter().any(|e| {
            matches!(e, MlsEvent::CommitIgnored { reason, .. } if reason.contains("max_group_info_len"))
        })
    })
    .await?;
    assert!(!b.agent.is_ready());
    Ok(())
}
