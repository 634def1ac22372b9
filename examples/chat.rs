//! A terminal chat over a sealroom relay: lines you type are sealed and sent to the room,
//! lines the others type are opened and printed with their user names. The relay only ever
//! sees ciphertext.
//!
//! ```sh
//! cargo run --release -- relay                  # prints the certificate hash and a token command
//! cargo run --release -- token --app dev --kid dev --secret <from the relay> --user alice --room demo
//! export SEALROOM_ROOM_SECRET=$(openssl rand -hex 32)   # the same for every member
//! cargo run --release --example chat -- 127.0.0.1:4433 <cert-sha256> demo <ticket>
//! ```
//!
//! The room argument is the room you mean to enter: a ticket for another room is refused
//! (`WrongRoom`) rather than putting you alone in the room it names.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};
use sealroom_client::{
    Client, ClientConfig, Event, JoinConfig, Member, MemberId, RoomSecret, Trust,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [relay, pin, room_name, ticket] = args.as_slice() else {
        bail!("usage: chat <relay address> <relay cert sha256> <room> <ticket>");
    };
    let relay = resolve(relay)?;
    let secret = room_secret()?;

    let client = Client::new(ClientConfig::new(Trust::pinned_hex(pin)?))?;
    let (room, mut events) = client
        .join_with(
            relay,
            "localhost",
            ticket.clone(),
            &secret,
            JoinConfig::default().room(room_name.clone()),
        )
        .await
        .with_context(|| format!("cannot join room {room_name} at {relay}"))?;
    // Who is who: member ids are the relay's, user names come from the tickets.
    let mut names: HashMap<MemberId, String> = HashMap::new();
    let others = roster(&mut names, room.members());
    println!(
        "joined room {room_name} as member {} ({}); type a line to send it",
        room.member_id(),
        if others.is_empty() {
            String::from("nobody else here yet")
        } else {
            format!("here: {others}")
        }
    );
    let chat = room.publish_data(1).await?;

    // Lines from stdin, on a thread of their own (stdin blocks).
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    loop {
        tokio::select! {
            line = lines.recv() => match line {
                // While reconnecting the line waits in the track's queue and goes out after.
                Some(line) => chat.send(line).await?,
                None => break, // end of input: leave
            },
            event = events.recv() => match event {
                Some(Event::Frame(frame)) => {
                    let name = names.get(&frame.sender).map_or("?", String::as_str);
                    println!("[{name}] {}", String::from_utf8_lossy(&frame.payload));
                }
                Some(Event::MemberJoined(member)) => {
                    println!("* {} joined", member.user);
                    names.insert(member.id, member.user);
                }
                Some(Event::MemberLeft { member, user, reason }) => {
                    let user = user.or_else(|| names.remove(&member)).unwrap_or_default();
                    println!("* {user} left ({reason:?})");
                }
                Some(Event::CouldNotOpen(frame)) => {
                    let name = names.get(&frame.sender).map_or("?", String::as_str);
                    println!(
                        "* a message from {name} did not open ({}): is SEALROOM_ROOM_SECRET the same for everyone?",
                        frame.reason
                    );
                }
                Some(Event::ConnectionLost(reason)) => {
                    println!("* connection lost ({reason}); reconnecting, your lines will wait");
                }
                Some(Event::Reconnecting { attempt }) => {
                    println!("* reconnecting to {relay} (attempt {attempt})");
                }
                Some(Event::Recovered { member, members }) => {
                    names.clear();
                    let others = roster(&mut names, members);
                    println!(
                        "* reconnected to room {room_name} as member {member}{}",
                        if others.is_empty() { String::new() } else { format!("; here: {others}") }
                    );
                }
                Some(Event::Disconnected(reason)) => {
                    println!("* disconnected: {reason}");
                    return Ok(());
                }
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
    room.leave().await;
    Ok(())
}

/// Remember the members' user names; return them as a list.
fn roster(names: &mut HashMap<MemberId, String>, members: Vec<Member>) -> String {
    let mut users = Vec::with_capacity(members.len());
    for member in members {
        users.push(member.user.clone());
        names.insert(member.id, member.user);
    }
    users.join(", ")
}

/// `IP:port`, or `host:port` resolved (its first address).
fn resolve(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| {
            format!("`{text}` is not a relay address: give IP:port, such as 127.0.0.1:4433")
        })
}

/// The room secret from `SEALROOM_ROOM_SECRET` (64 hex digits), or a fresh one to share.
fn room_secret() -> anyhow::Result<RoomSecret> {
    let Ok(text) = std::env::var("SEALROOM_ROOM_SECRET") else {
        let secret = RoomSecret::generate();
        println!("new room secret; give it to the other members (never to the relay):");
        println!(
            "  export SEALROOM_ROOM_SECRET={}",
            hex::encode(secret.expose())
        );
        return Ok(secret);
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .context("SEALROOM_ROOM_SECRET must be 64 hexadecimal digits")?;
    Ok(RoomSecret::from_bytes(bytes))
}
