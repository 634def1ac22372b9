//! A terminal chat over a sealroom relay: lines you type are sealed and sent to the room,
//! lines the others type are opened and printed. The relay only ever sees ciphertext.
//!
//! ```sh
//! cargo run --release -- relay                  # prints the certificate hash and a token command
//! cargo run --release -- token --app dev --kid dev --secret <from the relay> --user alice --room demo
//! export SEALROOM_ROOM_SECRET=$(openssl rand -hex 32)   # the same for every member
//! cargo run --example chat -- 127.0.0.1:4433 <cert-sha256> <ticket>
//! ```

use std::net::SocketAddr;

use anyhow::{Context, bail};
use sealroom_client::{Client, ClientConfig, Event, RoomSecret, Trust};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [relay, pin, ticket] = args.as_slice() else {
        bail!("usage: chat <relay address> <relay cert sha256> <ticket>");
    };
    let relay: SocketAddr = relay.parse().context("relay address")?;
    let secret = room_secret()?;

    let client = Client::new(ClientConfig::new(Trust::pinned_hex(pin)?))?;
    let (room, mut events) = client
        .join(relay, "localhost", ticket.clone(), &secret)
        .await?;
    println!(
        "joined as member {}; type a line to send it",
        room.member_id()
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
                Some(line) => chat.send(line).await?,
                None => break, // end of input: leave
            },
            event = events.recv() => match event {
                Some(Event::Frame(frame)) => {
                    println!("[{}] {}", frame.sender, String::from_utf8_lossy(&frame.payload));
                }
                Some(Event::MemberJoined(member)) => println!("* {} joined", member.user),
                Some(Event::MemberLeft { user, reason, .. }) => {
                    println!("* {} left ({reason:?})", user.unwrap_or_default());
                }
                Some(Event::CouldNotOpen(frame)) => {
                    println!("* a frame from {} did not open: {}", frame.sender, frame.reason);
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
