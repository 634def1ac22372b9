//! Agents and the relay's core together: the group follows the room, frames open for
//! exactly the members of their epoch, concurrent commits resolve first-wins, a relay
//! restart keeps the group, members that fall behind rejoin, and nothing the relay sees
//! holds a key or a plaintext.

mod support;

use sealroom_frame::control::{ControlMessage, LeaveReason};
use sealroom_mls::MlsEvent;
use sealroom_relay::engine::ConnId;
use support::Net;

/// A tiny deterministic generator for the random order of joins and leaves.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        usize::try_from((self.0 >> 33) % below as u64).unwrap_or(0)
    }
}

#[test]
fn ten_members_join_and_leave_at_random_and_frames_open_for_exactly_their_epochs_members() {
    let mut net = Net::new();
    let mut rng = Lcg(7);
    let mut departed: Vec<(ConnId, u64)> = Vec::new();
    let mut user = 0;
    let (mut opened, mut refused, mut largest) = (0usize, 0usize, 0usize);
    for step in 0..40 {
        let present = net.present();
        largest = largest.max(present.len());
        if present.len() < 2 || (present.len() < 10 && rng.next(3) != 0) {
            user += 1;
            net.join(&format!("user-{user}"));
        } else {
            let conn = present[rng.next(present.len())];
            let reason = [
                LeaveReason::Left,
                LeaveReason::TimedOut,
                LeaveReason::Kicked,
            ][step % 3];
            let epoch = net.common_epoch();
            net.leave(conn, reason);
            departed.push((conn, epoch));
        }
        let epoch = net.common_epoch();
        let present = net.present();
        let group: Vec<String> = net.peers[&present[0]]
            .agent
            .member()
            .members()
            .into_iter()
            .map(|m| m.user)
            .collect();
        let mut room: Vec<String> = present.iter().map(|c| net.peers[c].user.clone()).collect();
        room.sort();
        let mut sorted = group.clone();
        sorted.sort();
        assert_eq!(sorted, room, "the group is the room at step {step}");
        // Everyone publishes in this epoch; every present member opens every frame, no
        // departed member opens any.
        for &sender in &present {
            let text = format!("step {step} epoch {epoch} from {}", sender.0);
            let frame = net.seal(sender, &text);
            for &receiver in &present {
                if receiver != sender {
                    assert!(net.opens(receiver, &frame, &text), "member failed to open");
                    opened += 1;
                }
            }
            for &(gone, left_at) in &departed {
                assert!(epoch > left_at);
                assert!(!net.opens(gone, &frame, &text), "a removed member opened");
                refused += 1;
            }
        }
    }
    assert_eq!(largest, 10, "the room reached ten members");
    assert!(
        opened > 500 && refused > 500,
        "{opened} opened, {refused} refused"
    );
}

#[test]
fn concurrent_commits_one_wins_the_other_rebases_and_nobody_diverges() {
    let mut net = Net::new();
    let conns: Vec<ConnId> = (0..4).map(|i| net.join(&format!("u{i}"))).collect();
    let epoch = net.common_epoch();
    let position = net.peers[&conns[0]].agent.position();
    // Frames sealed just before the race, delivered after it.
    let early = net.seal(conns[3], "in flight");
    // Two members commit for the same position before either hears the other.
    net.peers
        .get_mut(&conns[1])
        .expect("p")
        .agent
        .update()
        .expect("update");
    net.peers
        .get_mut(&conns[2])
        .expect("p")
        .agent
        .update()
        .expect("update");
    net.drive();
    let new_epoch = net.common_epoch();
    // One won, the loser rebased nothing (an update has nothing left to do) or committed
    // again: either way every member is on one epoch, one or two ahead.
    assert!(
        new_epoch == epoch + 1 || new_epoch == epoch + 2,
        "{epoch} -> {new_epoch}"
    );
    assert!(net.peers[&conns[0]].agent.position() > position);
    // The loser heard a typed refusal: the relay counted one stale commit.
    assert!(net.tap.iter().any(|m| matches!(
        m,
        ControlMessage::MlsRefused {
            reason: sealroom_frame::control::MlsRefusal::Stale,
            ..
        }
    )));
    // The in-flight frame still opens within the grace period if one epoch passed.
    if new_epoch == epoch + 1 {
        assert!(net.opens(conns[0], &early, "in flight"));
    }
    for &c in &conns {
        let frame = net.seal(c, "after");
        for &r in &conns {
            if r != c {
                assert!(net.opens(r, &frame, "after"));
            }
        }
    }
}

#[test]
fn a_relay_restart_keeps_the_group_and_a_member_that_missed_commits_rejoins() {
    let mut net = Net::new();
    let conns: Vec<ConnId> = (0..3).map(|i| net.join(&format!("u{i}"))).collect();
    let epoch = net.common_epoch();
    net.restart_relay();
    // Every member reconnected with a new connection id and kept its group: same epoch.
    assert_eq!(net.common_epoch(), epoch);
    assert!(
        net.peers
            .values()
            .all(|p| !p.events.contains(&MlsEvent::Rejoining))
    );
    let present = net.present();
    let frame = net.seal(present[0], "after restart");
    assert!(net.opens(present[1], &frame, "after restart"));
    assert_eq!(conns.len(), present.len());

    // A member that misses a commit (its messages are held back) rejoins by itself.
    let laggard = present[2];
    let mut held = Vec::new();
    net.peers
        .get_mut(&present[0])
        .expect("p")
        .agent
        .update()
        .expect("update");
    // Deliver by hand: the laggard loses its copy of the commit.
    while let Some(message) = net
        .peers
        .get_mut(&present[0])
        .expect("p")
        .agent
        .poll_transmit()
    {
        net.core.handle_control(present[0], message, net.now);
    }
    while let Some(output) = net.core.poll_output() {
        if let sealroom_relay::engine::Output::Send { conn, message } = output {
            if conn == laggard {
                held.push(message);
            } else {
                let now = net.now.instant;
                net.peers
                    .get_mut(&conn)
                    .expect("p")
                    .agent
                    .handle_control(&message, now);
            }
        }
    }
    assert_eq!(held.len(), 1);
    net.drive();
    net.peers
        .get_mut(&present[1])
        .expect("p")
        .agent
        .update()
        .expect("update");
    net.drive();
    assert!(net.peers[&laggard].events.contains(&MlsEvent::Rejoining));
    let epoch = net.common_epoch();
    assert_eq!(net.peers[&present[0]].agent.member().members().len(), 3);
    let frame = net.seal(laggard, "back");
    assert!(net.opens(present[0], &frame, "back"));
    assert!(epoch > 0);
}

#[test]
fn the_relay_sees_no_key_and_no_plaintext_and_hostile_commits_disturb_nobody() {
    let mut net = Net::new();
    let conns: Vec<ConnId> = (0..3).map(|i| net.join(&format!("u{i}"))).collect();
    let epoch = net.common_epoch();
    // A hostile member sends garbage as a commit for the right position: the relay cannot
    // tell, accepts it, and every honest member ignores it alike.
    let position = net.peers[&conns[0]].agent.position();
    net.core.handle_control(
        conns[2],
        ControlMessage::MlsCommit {
            position,
            commit: vec![0xde; 500],
            group_info: vec![0xad; 500],
        },
        net.now,
    );
    net.drive();
    for &c in &conns[..2] {
        assert!(
            net.peers[&c]
                .events
                .iter()
                .any(|e| matches!(e, MlsEvent::CommitIgnored { .. })),
            "the garbage commit is counted as ignored"
        );
    }
    // The garbage moved the relay's position, not the group's epoch.
    assert_eq!(net.common_epoch(), epoch);
    let present = net.present();
    let frame = net.seal(present[0], "still fine");
    assert!(net.opens(present[1], &frame, "still fine"));

    // Nothing the relay sent (every control message, MLS bytes included) contains an
    // epoch's base key, a frame key or a plaintext.
    let base_key = net
        .keys(present[0])
        .expect("keys")
        .dangerous_base_key()
        .to_vec();
    assert_eq!(base_key.len(), 32);
    let plaintext = b"still fine";
    assert!(net.tap.len() > 10);
    for message in &net.tap {
        let bytes = message.to_bytes().expect("encodes");
        assert!(!bytes.windows(plaintext.len()).any(|w| w == plaintext));
        assert!(!bytes.windows(16).any(|w| w == &base_key[..16]));
        assert!(!bytes.windows(16).any(|w| w == &base_key[16..]));
    }
}
