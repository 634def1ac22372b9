//! Rooms are keyed by (app, room id): the same room id in two apps, and two room ids in one
//! app, never see each other's members or frames.

use bytes::Bytes;
use sealroom_client::{Event, RoomSecret};

use crate::support::{Member, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_rooms_are_isolated() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    // One secret for everyone: isolation must come from the relay, not from the keys.
    let secret = RoomSecret::generate();
    let rooms = [("app-a", "x"), ("app-b", "x"), ("app-a", "y")];
    let mut members: Vec<(&str, &str, Member)> = Vec::new();
    for (app, room) in rooms {
        for user in ["u1", "u2"] {
            members.push((app, room, relay.join(app, user, room, &secret).await?));
        }
    }
    let mut tracks = Vec::new();
    for (app, room, member) in &members {
        let data = member.room.publish_data(1).await?;
        for i in 0..5 {
            data.send(Bytes::from(format!("{app}/{room}/{i}"))).await?;
        }
        tracks.push(data);
    }
    // Everyone has the five messages of its room mate...
    for (_, _, member) in &members {
        member
            .log
            .wait_for("the room mate's messages", |events| {
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Frame(_)))
                    .count()
                    >= 5
            })
            .await?;
    }
    // ...and everything the relay forwarded is accounted for by room mates: 6 members,
    // each message to exactly one other member.
    assert_eq!(relay.relay.stats().data.frames_forwarded, 6 * 5);
    for (app, room, member) in &members {
        let prefix = format!("{app}/{room}/");
        for frame in member.log.frames() {
            assert!(
                frame.payload.starts_with(prefix.as_bytes()),
                "{app}/{room} received {:?}",
                frame.payload
            );
        }
        let joined = member
            .log
            .snapshot()
            .iter()
            .filter(|e| matches!(e, Event::MemberJoined(_)))
            .count();
        let roster = member.room.members().len();
        assert_eq!(roster, 1, "{app}/{room} sees one other member");
        assert!(joined <= 1);
    }
    Ok(())
}
