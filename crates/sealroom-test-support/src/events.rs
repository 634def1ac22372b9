//! Members joined through `sealroom-client` whose events a task collects into an
//! [`EventLog`]; a test waits on the log, which wakes it whenever an event is added.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use sealroom_client::{
    Client, ClientConfig, Event, Events, MemberId, ReceivedFrame, Room, RoomSecret, TicketSource,
};

use crate::SAFETY;

/// Every event a member received, in order.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<Vec<Event>>,
    /// Woken whenever an event is added.
    added: tokio::sync::Notify,
}

impl EventLog {
    /// Add an event and wake every waiter.
    pub fn push(&self, event: Event) {
        self.events.lock().expect("log").push(event);
        self.added.notify_waiters();
    }

    /// A copy of the events so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("log").clone()
    }

    /// How many events satisfy `pick`.
    pub fn count(&self, pick: impl Fn(&Event) -> bool) -> usize {
        self.events
            .lock()
            .expect("log")
            .iter()
            .filter(|e| pick(e))
            .count()
    }

    /// The opened frames so far.
    pub fn frames(&self) -> Vec<ReceivedFrame> {
        self.snapshot()
            .into_iter()
            .filter_map(|event| match event {
                Event::Frame(frame) => Some(frame),
                _ => None,
            })
            .collect()
    }

    /// The opened frames from `sender`.
    pub fn frames_from(&self, sender: MemberId) -> Vec<ReceivedFrame> {
        self.frames()
            .into_iter()
            .filter(|frame| frame.sender == sender)
            .collect()
    }

    /// Whether an opened frame carried `payload`.
    pub fn received(&self, payload: &str) -> bool {
        self.frames()
            .iter()
            .any(|f| f.payload == payload.as_bytes())
    }

    /// Wait until the events satisfy `cond` (which sees them under the log's lock: it must
    /// not call back into the log); fails after [`SAFETY`] listing the events.
    pub async fn wait_for(
        &self,
        what: &str,
        cond: impl Fn(&[Event]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SAFETY;
        loop {
            // Registered before the check, so an event added in between still wakes it.
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if cond(&self.events.lock().expect("log")) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                bail!("never saw: {what}; events: {:#?}", self.summary());
            }
        }
    }

    /// Wait until an opened frame carried `payload`; fails after [`SAFETY`] as
    /// [`EventLog::wait_for`] does.
    pub async fn wait_for_payload(&self, what: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.wait_for(what, |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.payload[..] == *payload))
        })
        .await
    }

    fn summary(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|event| match event {
                Event::Frame(frame) => format!(
                    "frame from {} track {} {:?} group {} seq {} {} bytes: {:?}",
                    frame.sender,
                    frame.track,
                    frame.kind,
                    frame.envelope.group,
                    frame.envelope.seq,
                    frame.payload.len(),
                    String::from_utf8_lossy(&frame.payload)
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

/// The first event matching `pick`, if any.
pub fn find<T>(events: &[Event], pick: impl Fn(&Event) -> Option<T>) -> Option<T> {
    events.iter().find_map(pick)
}

/// A joined member: its client, room and the log its event task fills.
pub struct Member {
    /// A name for failure messages (empty when the test gave none).
    pub name: String,
    /// Keeps the member's endpoint open.
    pub client: Client,
    /// The joined room.
    pub room: Room,
    /// Every event the member received.
    pub log: Arc<EventLog>,
    /// The member's id in the room.
    pub id: MemberId,
}

impl Member {
    /// Join the room at `relay` as `name` with `tickets` and `config`.
    pub async fn join(
        name: &str,
        relay: SocketAddr,
        config: ClientConfig,
        tickets: impl TicketSource,
        secret: &RoomSecret,
    ) -> anyhow::Result<Self> {
        let client = Client::new(config).context("client")?;
        let (room, events) = client
            .join(relay, "localhost", tickets, secret)
            .await
            .with_context(|| format!("{name} joins"))?;
        Ok(Self::collecting(client, room, events).named(name))
    }

    /// A joined member whose events a task drains into its log.
    pub fn collecting(client: Client, room: Room, mut events: Events) -> Self {
        let log = Arc::new(EventLog::default());
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                sink.push(event);
            }
        });
        let id = room.member_id();
        Self {
            name: String::new(),
            client,
            room,
            log,
            id,
        }
    }

    /// The same member, named `name` in failure messages.
    pub fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// Opened frames from `sender`.
    pub fn frames_from(&self, sender: MemberId) -> Vec<ReceivedFrame> {
        self.log.frames_from(sender)
    }
}
