//! The sender of the Python receive-rate figure (docs/PERFORMANCE.md): joins a room,
//! waits for another member, then publishes frames of one kind and size as fast as its
//! queue takes them for a number of seconds, and prints how many it queued.
//!
//! ```sh
//! SEALROOM_ROOM_SECRET=<64 hex> cargo run --release -p sealroom-ffi --example flood -- \
//!     <relay host:port> <pin> <ticket> <audio|video> <frame bytes> <seconds>
//! ```

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_client::{Client, ClientConfig, PublishError, RoomSecret, Trust};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [relay, pin, ticket, kind, size, seconds] = &args[..] else {
        bail!("usage: flood <relay> <pin> <ticket> <audio|video> <frame bytes> <seconds>");
    };
    let size: usize = size.parse()?;
    let seconds: f64 = seconds.parse()?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(std::env::var("SEALROOM_ROOM_SECRET")?.trim(), &mut secret)
        .context("SEALROOM_ROOM_SECRET: 64 hex digits")?;
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
    while room.members().is_empty() {
        if events.recv().await.is_none() {
            bail!("the session ended before another member joined");
        }
    }
    // Drain our own events in the background (their queue is bounded).
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let audio = room.publish_audio(1).await?;
    let video = room.publish_video(2).await?;
    let payload = vec![0x5a; size];
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut queued = 0u64;
    let mut n = 0u64;
    while tokio::time::Instant::now() < deadline {
        let sent = match kind.as_str() {
            "audio" => audio.send(payload.clone()),
            _ => video.send(payload.clone(), n.is_multiple_of(30)),
        };
        n += 1;
        match sent {
            Ok(()) => queued += 1,
            Err(PublishError::QueueFull) => tokio::time::sleep(Duration::from_micros(200)).await,
            Err(err) => return Err(err.into()),
        }
    }
    println!("queued {queued}");
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    room.leave().await;
    Ok(())
}
