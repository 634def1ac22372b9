//! The MLS mode across a restart of the relay process (`sealroom relay` stopped with
//! SIGTERM and started again on the same port and certificate): the members that come
//! back keep their group (no rejoin), and a member that stays away while the group moves
//! on catches up by itself on its return, as `docs/MLS.md` says: it finds the relay at
//! another position and rejoins by external commit. Afterwards every member opens every
//! other member's frames.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_client::{
    Client, ClientConfig, Event, JoinConfig, KeyMode, MlsConfig, MlsEvent, Trust,
};
use sealroom_test_support::{Member, poll_until};

use crate::support::{Node, TempDir, sealroom, ticket};

const APP: &str = "acme";
const KID: &str = "k1";
const SECRET: &[u8] = b"acme-mls-restart-ticket-secret";
const ROOM: &str = "mls-restart";

fn config(port: u16, tls: &TempDir) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
internal_listen = "127.0.0.1:0"
drain_secs = 1

[tls]
cert = "{cert}"
key = "{key}"

[[apps]]
app = "{APP}"
secrets = [{{ kid = "{KID}", secret = "{secret}" }}]
"#,
        cert = tls.path().join("cert.pem").display(),
        key = tls.path().join("key.pem").display(),
        secret = std::str::from_utf8(SECRET).expect("utf-8 secret"),
    )
}

async fn join(node: &Node, user: &str, backoff: Duration) -> anyhow::Result<Member> {
    let config = ClientConfig::new(Trust::pinned_hex(&node.cert_sha256)?)
        .reconnect_backoff(backoff, backoff)
        .reconnect_attempts(100);
    let client = Client::new(config)?;
    let (room, events) = client
        .join_with_mode(
            node.listen,
            "localhost",
            ticket(APP, KID, SECRET, user, ROOM),
            KeyMode::Mls(MlsConfig::new(user)),
            JoinConfig::default(),
        )
        .await
        .with_context(|| format!("{user} joins"))?;
    Ok(Member::collecting(client, room, events).named(user))
}

/// Wait until `members` share one epoch whose group is exactly their users.
async fn wait_same_group(members: &[&Member], what: &str) -> anyhow::Result<u64> {
    let mut users: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    users.sort_unstable();
    poll_until(
        what,
        || {
            let epochs: Vec<Option<u64>> = members.iter().map(|m| m.room.mls_epoch()).collect();
            epochs[0].is_some()
                && epochs.iter().all(|e| *e == epochs[0])
                && members.iter().all(|m| {
                    let mut group: Vec<String> = m
                        .room
                        .mls_members()
                        .into_iter()
                        .map(|c| c.member.user)
                        .collect();
                    group.sort_unstable();
                    group == users
                })
        },
        || {
            members
                .iter()
                .map(|m| format!("{}: {:?}", m.name, m.room.mls_epoch()))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
    .await?;
    members[0].room.mls_epoch().context("an epoch")
}

fn rejoins(member: &Member) -> usize {
    member
        .log
        .count(|e| matches!(e, Event::Mls(MlsEvent::Rejoining)))
}

fn recovered(member: &Member) -> bool {
    member.log.count(|e| matches!(e, Event::Recovered { .. })) > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_keep_their_group_across_a_relay_restart_and_a_late_member_catches_up()
-> anyhow::Result<()> {
    let tls = TempDir::new("mls-restart-tls");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(tls.path().join("cert.pem"), certified.cert.pem())?;
    std::fs::write(
        tls.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )?;
    // A free UDP port for both runs of the node.
    let port = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?
        .local_addr()?
        .port();
    let dir = TempDir::new("mls-restart");
    let path = dir.write("relay.toml", &config(port, &tls));

    let mut node = Node::start(sealroom(), &dir, &path)?;
    let quick = Duration::from_millis(200);
    let alice = join(&node, "alice", quick).await?;
    let bob = join(&node, "bob", quick).await?;
    // Carol waits long before she reconnects: the group moves on without her.
    let carol = join(&node, "carol", Duration::from_secs(20)).await?;
    let before = wait_same_group(&[&alice, &bob, &carol], "three members in one group").await?;

    node.terminate();
    assert!(node.wait()?.success());
    let node = Node::start(sealroom(), &dir, &path)?;

    // Alice and Bob come back and keep their group: the first offers its state to the
    // empty relay, the other finds it at its own position. Carol, still away, is no
    // longer in the room, so they remove her leaf: one new epoch, no rejoin.
    let after = wait_same_group(&[&alice, &bob], "alice and bob, back, without carol").await?;
    assert!(after > before);
    assert_eq!(rejoins(&alice), 0, "alice kept her group");
    assert_eq!(rejoins(&bob), 0, "bob kept his group");
    // A newcomer joins the group while Carol is away.
    let dave = join(&node, "dave", quick).await?;
    wait_same_group(&[&alice, &bob, &dave], "dave joins while carol is away").await?;
    if recovered(&carol) {
        bail!("carol came back before the group moved on; the test needs her away longer");
    }

    // Carol returns: she missed the commits, finds another position and rejoins by
    // herself.
    wait_same_group(&[&alice, &bob, &carol, &dave], "carol catches up").await?;
    assert!(rejoins(&carol) >= 1, "carol rejoined by external commit");
    let carol_epochs: Vec<u64> = carol
        .log
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Event::Mls(MlsEvent::EpochChanged { epoch, .. }) => Some(*epoch),
            _ => None,
        })
        .collect();
    assert!(
        !carol_epochs.contains(&after),
        "carol was away for epoch {after}: {carol_epochs:?}"
    );

    // Every member opens every other member's frames in the final epoch.
    let members = [&alice, &bob, &carol, &dave];
    for (i, sender) in members.iter().enumerate() {
        let track = sender.room.publish_data(u32::try_from(i)? + 1).await?;
        track
            .send(format!("after the restart from {}", sender.name))
            .await?;
    }
    for receiver in members {
        for sender in members {
            if sender.name == receiver.name {
                continue;
            }
            let text = format!("after the restart from {}", sender.name);
            receiver
                .log
                .wait_for(&format!("{} opens {text}", receiver.name), |events| {
                    events.iter().any(
                        |e| matches!(e, Event::Frame(f) if f.payload.as_ref() == text.as_bytes()),
                    )
                })
                .await?;
        }
    }
    for member in members {
        assert_eq!(
            member.log.count(|e| matches!(e, Event::CouldNotOpen(_))),
            0,
            "{} failed to open a frame",
            member.name
        );
    }
    Ok(())
}
