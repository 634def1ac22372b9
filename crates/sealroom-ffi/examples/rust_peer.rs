//! A Rust member for the Python tests (`python/tests`): joins a room, waits for another
//! member, publishes audio, video and chat frames whose payloads say who sent which, then
//! a "bye" chat message, and counts what the other member sends until its "bye". Prints
//! `joined <member id>` when in the room and one `summary ...` line at the end.
//!
//! ```sh
//! SEALROOM_ROOM_SECRET=<64 hex digits> cargo run -p sealroom-ffi --example rust_peer -- \
//!     <relay host:port> <pin sha256 hex> <ticket> <frames per kind>
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_client::{Client, ClientConfig, Event, MediaKind, RoomSecret, Trust};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [relay, pin, ticket, frames] = &args[..] else {
        bail!("usage: rust_peer <relay host:port> <pin sha256 hex> <ticket> <frames per kind>");
    };
    let frames: u32 = frames.parse().context("frames per kind")?;
    let secret_hex = std::env::var("SEALROOM_ROOM_SECRET").context("SEALROOM_ROOM_SECRET")?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(secret_hex.trim(), &mut secret).context("room secret: 64 hex digits")?;

    let client = Client::new(ClientConfig::new(Trust::pinned_hex(pin)?))?;
    let (room, mut events) = client
        .join(
            relay.parse()?,
            "localhost",
            ticket.clone(),
            &RoomSecret::from_bytes(secret),
        )
        .await?;
    println!("joined {}", room.member_id());
    std::io::stdout().flush()?;

    let audio = room.publish_audio(1).await?;
    let video = room.publish_video(2).await?;
    let chat = room.publish_data(3).await?;

    // Wait for the other member before sending, so nothing is sent to an empty room.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while room.members().is_empty() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => bail!("no other member joined within 60 s"),
        }
    }

    let mut received: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut bad_payloads = 0u32;
    let mut heard_bye = false;
    let mut sent = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            _ = tick.tick(), if sent <= frames => {
                if sent < frames {
                    audio.send(format!("rust audio {sent}").into_bytes())?;
                    video.send(format!("rust video {sent}").into_bytes(), sent.is_multiple_of(10))?;
                    chat.send(format!("rust chat {sent}")).await?;
                } else {
                    chat.send("bye").await?;
                }
                sent += 1;
            }
            event = tokio::time::timeout_at(deadline, events.recv()) => match event {
                Ok(Some(Event::Frame(frame))) => {
                    let text = String::from_utf8_lossy(&frame.payload).into_owned();
                    let kind = match frame.kind {
                        MediaKind::Audio => "audio",
                        MediaKind::Video => "video",
                        MediaKind::Data => "chat",
                    };
                    if text == "bye" {
                        heard_bye = true;
                    } else if text.starts_with(&format!("python {kind} ")) {
                        *received.entry(kind).or_default() += 1;
                    } else {
                        bad_payloads += 1;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
        }
        if heard_bye && sent > frames {
            break;
        }
    }
    // Stragglers on other streams than the chat: a moment to land.
    let linger = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(event)) = tokio::time::timeout_at(linger, events.recv()).await {
        if let Event::Frame(frame) = event {
            let kind = match frame.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
                MediaKind::Data => "chat",
            };
            *received.entry(kind).or_default() += 1;
        }
    }
    let stats = room.stats();
    println!(
        "summary audio={} video={} chat={} bye={} bad_payloads={} open_failures={}",
        received.get("audio").copied().unwrap_or(0),
        received.get("video").copied().unwrap_or(0),
        received.get("chat").copied().unwrap_or(0),
        heard_bye,
        bad_payloads,
        stats.open_failures,
    );
    std::io::stdout().flush()?;
    room.leave().await;
    client.close().await;
    Ok(())
}
