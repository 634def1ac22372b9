//! The relay's log lines name connections by masked user and room ids unless told to show
//! them. (Its own test binary: it installs the process-wide log subscriber.)

use sealroom_test_support::wire as common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{APP_A, Client, config, ticket};
use sealroom_frame::control::ControlMessage;
use sealroom_frame::envelope::MediaKind;
use sealroom_relay::Relay;
use sealroom_relay::mask::IdMask;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// Returns once the relay has logged `client`'s join. The relay writes that line after it
/// has queued `Joined`, so the client can read `Joined` first; but it handles one
/// connection's control messages in order, so once a ticket refresh sent after the join is
/// answered, the line is written.
async fn join_logged(client: &mut Client, ticket: &str) -> anyhow::Result<()> {
    client
        .send_control(&ControlMessage::RefreshTicket {
            ticket: ticket.to_owned(),
        })
        .await?;
    client
        .expect_control(|m| matches!(m, ControlMessage::TicketRefreshed { .. }))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_room_ids_are_masked_unless_shown() -> anyhow::Result<()> {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("sealroom_relay=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let masked = Relay::start(config(Default::default())).await?;
    let alice = ticket(APP_A, "alice-the-user", "the-secret-room");
    let mut a = Client::join(&masked, &alice).await?;
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 0), b"x")?;
    join_logged(&mut a, &alice).await?;
    let mask_line = capture
        .text()
        .lines()
        .find(|l| l.contains("joined"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(mask_line.contains("user=u:"), "{mask_line}");
    assert!(mask_line.contains("room=app-a/r:"), "{mask_line}");
    let text = capture.text();
    assert!(!text.contains("alice-the-user"));
    assert!(!text.contains("the-secret-room"));

    let shown = Relay::start(config(Default::default()).id_mask(IdMask::show())).await?;
    let bob = ticket(APP_A, "bob-the-user", "open-room");
    let mut b = Client::join(&shown, &bob).await?;
    join_logged(&mut b, &bob).await?;
    let text = capture.text();
    assert!(text.contains("user=bob-the-user"), "{text}");
    assert!(text.contains("room=app-a/open-room"), "{text}");
    Ok(())
}
