//! The client: join a room, publish tracks, receive events, read stats, leave.

#![allow(unsafe_code)] // UniFFI's export macros expand to unsafe extern functions.

use std::sync::Arc;

use sealroom_client::{self as client, ClientConfig, JoinConfig, Trust};
use tokio::sync::Mutex;

use crate::crypto::room_secret;
use crate::error::{ClientError, JoinError, PublishError};
use crate::event::{Event, Member};
use crate::runtime::{run, runtime};
use crate::ticket::{FixedTicket, ProviderSource, TicketProvider};

/// A client endpoint: one UDP socket and the relay's TLS trust, from which rooms are
/// joined.
#[derive(Debug, uniffi::Object)]
pub struct Client {
    inner: client::Client,
}

#[uniffi::export]
impl Client {
    /// A client that trusts the relay whose certificate has SHA-256 `pin_sha256` (64 hex
    /// digits, as `sealroom relay` prints it), or the system's trust store when it is
    /// null (then the relay's name is checked).
    ///
    /// # Errors
    /// [`ClientError`] for a malformed pin, or when TLS or the socket cannot be set up.
    #[uniffi::constructor]
    pub fn new(pin_sha256: Option<String>) -> Result<Arc<Self>, ClientError> {
        let trust = match pin_sha256 {
            Some(pin) => Trust::pinned_hex(&pin).map_err(|_| ClientError::InvalidPin)?,
            None => Trust::SystemRoots,
        };
        // quinn binds its socket to the runtime it is created in.
        let _entered = runtime().enter();
        let inner =
            client::Client::new(ClientConfig::new(trust)).map_err(|err| ClientError::Setup {
                message: err.to_string(),
            })?;
        Ok(Arc::new(Self { inner }))
    }

    /// Join the room `ticket` names through the relay at `relay` (`host:port`), sealing
    /// everything this member publishes with keys from `room_secret` (32 bytes the app
    /// gives every member; the relay never sees it). `server_name` is the relay's TLS
    /// name (checked with the system trust store). With `room`, a ticket for another
    /// room is refused.
    ///
    /// # Errors
    /// [`JoinError`]; a refusal carries the relay's [`RefusalCode`](crate::RefusalCode).
    pub async fn join(
        &self,
        relay: String,
        server_name: String,
        ticket: String,
        room_secret: Vec<u8>,
        room: Option<String>,
    ) -> Result<Arc<Room>, JoinError> {
        let provider: Arc<dyn TicketProvider> = Arc::new(FixedTicket(ticket));
        self.join_with_provider(relay, server_name, provider, room_secret, room)
            .await
    }

    /// [`join`](Self::join) with tickets from `provider`, which the client asks again to
    /// rejoin after a lost connection and to refresh the session before its ticket
    /// expires.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub async fn join_with_provider(
        &self,
        relay: String,
        server_name: String,
        provider: Arc<dyn TicketProvider>,
        room_secret: Vec<u8>,
        room: Option<String>,
    ) -> Result<Arc<Room>, JoinError> {
        self.join_any(vec![relay], server_name, provider, room_secret, room)
            .await
    }

    /// Join through any node of a cluster at `relays` (each `host:port`; the same room
    /// whichever node takes the member): the first that admits the join is used, the next
    /// ones are tried when one does not answer or is shutting down or overloaded, and a
    /// node's redirect to another node is followed. After a lost connection the session
    /// rejoins at the next node of the list first, so a member outlives the loss of its
    /// node. Tickets come from `provider`, as in
    /// [`join_with_provider`](Self::join_with_provider).
    ///
    /// # Errors
    /// As [`join`](Self::join) (the last node's refusal);
    /// [`JoinError::InvalidAddress`] for an address that does not resolve, or no address.
    pub async fn join_any(
        &self,
        relays: Vec<String>,
        server_name: String,
        provider: Arc<dyn TicketProvider>,
        room_secret: Vec<u8>,
        room: Option<String>,
    ) -> Result<Arc<Room>, JoinError> {
        let secret = self::room_secret(&room_secret).ok_or(JoinError::InvalidSecret {
            len: room_secret.len() as u64,
        })?;
        let client = self.inner.clone();
        run(async move {
            if relays.is_empty() {
                return Err(JoinError::InvalidAddress {
                    message: String::from("no relay address given: give at least one host:port"),
                });
            }
            let mut addrs = Vec::with_capacity(relays.len());
            for relay in &relays {
                addrs.push(resolve(relay).await?);
            }
            let mut options = JoinConfig::default();
            if let Some(room) = room {
                options = options.room(room);
            }
            let (room, events) = client
                .join_any(
                    &addrs,
                    &server_name,
                    ProviderSource(provider),
                    &secret,
                    options,
                )
                .await?;
            Ok(Arc::new(Room {
                room,
                events: Arc::new(Mutex::new(events)),
            }))
        })
        .await
    }

    /// Close every connection of this client and wait until the relay acknowledged.
    pub async fn close(&self) {
        let client = self.inner.clone();
        run(async move { client.close().await }).await;
    }
}

/// A counters snapshot of a room session.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RoomStats {
    /// Frames sealed and handed to QUIC.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Frames received from the relay.
    pub frames_received: u64,
    /// Received frames that opened and verified.
    pub frames_opened: u64,
    /// Received frames that could not be opened.
    pub open_failures: u64,
    /// Received bytes that were not a well-formed frame.
    pub malformed: u64,
    /// Datagram frames dropped because the event queue was full (drain events faster).
    pub events_dropped: u64,
    /// Frames that could not be sent.
    pub frames_not_sent: u64,
    /// Frames dropped while reconnecting.
    pub frames_dropped_offline: u64,
    /// Connections lost and recovered.
    pub reconnects: u64,
}

impl From<client::RoomStats> for RoomStats {
    fn from(stats: client::RoomStats) -> Self {
        Self {
            frames_sent: stats.frames_sent,
            bytes_sent: stats.bytes_sent,
            frames_received: stats.frames_received,
            frames_opened: stats.frames_opened,
            open_failures: stats.open_failures,
            malformed: stats.malformed,
            events_dropped: stats.events_dropped,
            frames_not_sent: stats.frames_not_sent,
            frames_dropped_offline: stats.frames_dropped_offline,
            reconnects: stats.reconnects,
        }
    }
}

/// A joined room.
#[derive(Debug, uniffi::Object)]
pub struct Room {
    room: client::Room,
    events: Arc<Mutex<client::Events>>,
}

#[uniffi::export]
impl Room {
    /// This member's id (the relay may assign a new one on a reconnect).
    pub fn member_id(&self) -> u32 {
        self.room.member_id()
    }

    /// The other members in the room now.
    pub fn members(&self) -> Vec<Member> {
        self.room.members().into_iter().map(Into::into).collect()
    }

    /// The user id of a member in the room, or of one that left during this session (its
    /// last frames may arrive after its `MemberLeft`); `None` for a member never known.
    pub fn user_of(&self, member: u32) -> Option<String> {
        self.room.user_of(member)
    }

    /// Counters of what this session sent and received.
    pub fn stats(&self) -> RoomStats {
        self.room.stats().into()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.room.is_closed()
    }

    /// The next event, waiting for one; null once the session is over (after a
    /// `Disconnected` event). Drain events steadily: the queue is bounded, and when it is
    /// full the client stops reading from the relay.
    pub async fn next_event(&self) -> Option<Event> {
        let events = self.events.clone();
        run(async move { events.lock().await.recv().await.map(Into::into) }).await
    }

    /// Up to `max` events: waits for the first, then takes those already queued (fewer
    /// crossings of the language boundary when frames arrive fast). Empty once the
    /// session is over.
    pub async fn next_events(&self, max: u32) -> Vec<Event> {
        let events = self.events.clone();
        run(async move {
            let mut events = events.lock().await;
            let mut batch = Vec::new();
            if let Some(first) = events.recv().await {
                batch.push(first.into());
                while batch.len() < max as usize {
                    match events.try_recv() {
                        Some(event) => batch.push(event.into()),
                        None => break,
                    }
                }
            }
            batch
        })
        .await
    }

    /// Publish an audio track with id `track`.
    ///
    /// # Errors
    /// [`PublishError::TrackInUse`], [`PublishError::Closed`].
    pub async fn publish_audio(&self, track: u32) -> Result<Arc<AudioTrack>, PublishError> {
        let room = self.room.clone();
        let inner = run(async move { room.publish_audio(track).await }).await?;
        Ok(Arc::new(AudioTrack { inner }))
    }

    /// Publish a video track with id `track`.
    ///
    /// # Errors
    /// [`PublishError::TrackInUse`], [`PublishError::Closed`].
    pub async fn publish_video(&self, track: u32) -> Result<Arc<VideoTrack>, PublishError> {
        let room = self.room.clone();
        let inner = run(async move { room.publish_video(track).await }).await?;
        Ok(Arc::new(VideoTrack { inner }))
    }

    /// Publish a data track with id `track` (chat, signalling).
    ///
    /// # Errors
    /// [`PublishError::TrackInUse`], [`PublishError::Closed`].
    pub async fn publish_data(&self, track: u32) -> Result<Arc<DataTrack>, PublishError> {
        let room = self.room.clone();
        let inner = run(async move { room.publish_data(track).await }).await?;
        Ok(Arc::new(DataTrack {
            inner: Arc::new(inner),
        }))
    }

    /// Receive `member`'s track `track` (needed only when joined without automatic
    /// subscription).
    ///
    /// # Errors
    /// [`PublishError::Closed`].
    pub async fn subscribe(&self, member: u32, track: u32) -> Result<(), PublishError> {
        let room = self.room.clone();
        Ok(run(async move { room.subscribe(member, track).await }).await?)
    }

    /// Ask `member` for a keyframe on its video track `track`.
    ///
    /// # Errors
    /// [`PublishError::Closed`].
    pub async fn request_keyframe(&self, member: u32, track: u32) -> Result<(), PublishError> {
        let room = self.room.clone();
        Ok(run(async move { room.request_keyframe(member, track).await }).await?)
    }

    /// Ask the ticket provider for a fresh ticket and hand it to the relay now.
    ///
    /// # Errors
    /// [`PublishError::Seal`] with the provider's reason, or [`PublishError::Closed`].
    pub async fn refresh_ticket(&self) -> Result<(), PublishError> {
        let room = self.room.clone();
        Ok(run(async move { room.refresh_ticket().await }).await?)
    }

    /// Leave the room and wait until the relay knows; a `Disconnected` event ends the
    /// event stream.
    pub async fn leave(&self) {
        let room = self.room.clone();
        run(async move { room.leave().await }).await;
    }
}

/// A published audio track; dropping it unpublishes the track.
#[derive(Debug, uniffi::Object)]
pub struct AudioTrack {
    inner: client::AudioTrack,
}

#[uniffi::export]
impl AudioTrack {
    /// The track id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Queue one encoded audio frame (for example 20 ms of Opus); it is sealed and sent
    /// as a datagram. Never waits.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] (the frame is dropped), [`PublishError::TooLarge`],
    /// [`PublishError::Closed`].
    pub fn send(&self, frame: Vec<u8>) -> Result<(), PublishError> {
        Ok(self.inner.send(frame)?)
    }
}

/// A published video track; dropping it unpublishes the track.
#[derive(Debug, uniffi::Object)]
pub struct VideoTrack {
    inner: client::VideoTrack,
}

#[uniffi::export]
impl VideoTrack {
    /// The track id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Queue one encoded video frame; `keyframe` starts a new group (a new stream). Never
    /// waits.
    ///
    /// # Errors
    /// As [`AudioTrack::send`].
    pub fn send(&self, frame: Vec<u8>, keyframe: bool) -> Result<(), PublishError> {
        Ok(self.inner.send(frame, keyframe)?)
    }
}

/// A published data track: reliable, ordered messages (or unreliable ones).
#[derive(Debug, uniffi::Object)]
pub struct DataTrack {
    inner: Arc<client::DataTrack>,
}

#[uniffi::export]
impl DataTrack {
    /// The track id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Send a reliable message, waiting while the track's queue is full.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`], [`PublishError::Closed`].
    pub async fn send(&self, message: Vec<u8>) -> Result<(), PublishError> {
        let track = self.inner.clone();
        Ok(run(async move { track.send(message).await }).await?)
    }

    /// Send a message as a datagram: it may be lost, and must fit one.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`], [`PublishError::TooLarge`], [`PublishError::Closed`].
    pub fn send_unreliable(&self, message: Vec<u8>) -> Result<(), PublishError> {
        Ok(self.inner.send_unreliable(message)?)
    }
}

/// The first address `relay` (`host:port`) resolves to.
async fn resolve(relay: &str) -> Result<std::net::SocketAddr, JoinError> {
    tokio::net::lookup_host(relay)
        .await
        .map_err(|err| JoinError::InvalidAddress {
            message: format!("{relay}: {err} (give host:port, for example 127.0.0.1:4433)"),
        })?
        .next()
        .ok_or_else(|| JoinError::InvalidAddress {
            message: format!("{relay} resolves to no address"),
        })
}
