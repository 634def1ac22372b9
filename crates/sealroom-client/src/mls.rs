//! The MLS key mode in the client: the room's members run an MLS group (through
//! `sealroom_mls::MlsAgent`, which speaks the relay's delivery-service messages) and seal
//! with the current epoch's keys. Epoch changes rotate the opener (the previous epoch
//! opens for its grace period) and make every track's sealer take the new epoch's key at
//! its next frame. `docs/MLS.md` describes the mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sealroom_crypto::OpenError;
use sealroom_frame::control::{ControlMessage, MemberInfo};
use sealroom_frame::envelope::{Envelope, MemberId};
use sealroom_mls::{
    AgentConfig, EpochKeys, MlsAgent, MlsError, MlsEvent, MlsOpener, MlsOpenerConfig, MlsSealer,
};

/// What the application passes to choose the MLS mode at join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsConfig {
    pub(crate) user_id: String,
    pub(crate) agent: AgentConfig,
    pub(crate) opener: MlsOpenerConfig,
}

impl MlsConfig {
    /// The MLS mode for a member whose ticket names `user_id`: its basic credential
    /// carries it, and the other members check it against the relay's roster.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            agent: AgentConfig::default(),
            opener: MlsOpenerConfig::default(),
        }
    }

    /// Settings of the group protocol (removal backoff).
    #[must_use]
    pub fn agent(mut self, agent: AgentConfig) -> Self {
        self.agent = agent;
        self
    }

    /// Settings of the opener (grace period, sessions held).
    #[must_use]
    pub fn opener(mut self, opener: MlsOpenerConfig) -> Self {
        self.opener = opener;
        self
    }
}

struct Epoch {
    keys: EpochKeys,
    leaf: u32,
    opener: MlsOpener,
}

/// One member's MLS state for a room session.
pub(crate) struct MlsKeys {
    agent: Mutex<MlsAgent>,
    epoch: Mutex<Option<Epoch>>,
    opener_config: MlsOpenerConfig,
    /// Context ids handed to sending sessions: each is used once per epoch at most.
    next_context: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Messages to send to the relay and events for the application, after an input.
pub(crate) type Effects = (Vec<ControlMessage>, Vec<MlsEvent>);

impl MlsKeys {
    pub(crate) fn new(config: &MlsConfig) -> Result<Self, MlsError> {
        Ok(Self {
            agent: Mutex::new(MlsAgent::new(&config.user_id, b"sealroom", config.agent)?),
            epoch: Mutex::new(None),
            opener_config: config.opener,
            next_context: AtomicU64::new(0),
        })
    }

    /// The room was (re)joined as `me` with `roster`.
    pub(crate) fn joined(&self, me: MemberId, roster: &[MemberInfo]) -> Effects {
        let mut agent = lock(&self.agent);
        agent.handle_joined(me, roster, Instant::now());
        self.drain(&mut agent)
    }

    /// A control message from the relay (roster changes and MLS messages matter).
    pub(crate) fn handle_control(&self, message: &ControlMessage) -> Effects {
        let now = Instant::now();
        let mut agent = lock(&self.agent);
        match message {
            ControlMessage::MemberJoined(info) => agent.handle_member_joined(info),
            ControlMessage::MemberLeft { member, .. } => agent.handle_member_left(*member, now),
            ControlMessage::MlsState { .. }
            | ControlMessage::MlsCommitted { .. }
            | ControlMessage::MlsAccepted { .. }
            | ControlMessage::MlsRefused { .. }
            | ControlMessage::MlsGroupInfoPart { .. } => agent.handle_control(message, now),
            _ => return (Vec::new(), Vec::new()),
        }
        self.drain(&mut agent)
    }

    /// Fire due timers (removal backoff, the previous epoch's grace).
    pub(crate) fn tick(&self) -> Effects {
        let now = Instant::now();
        if let Some(epoch) = lock(&self.epoch).as_mut() {
            epoch.opener.handle_timeout(now);
        }
        let mut agent = lock(&self.agent);
        agent.handle_timeout(now);
        self.drain(&mut agent)
    }

    fn drain(&self, agent: &mut MlsAgent) -> Effects {
        let transmit: Vec<ControlMessage> = std::iter::from_fn(|| agent.poll_transmit()).collect();
        let events: Vec<MlsEvent> = std::iter::from_fn(|| agent.poll_event()).collect();
        for event in &events {
            if let MlsEvent::EpochChanged { .. } = event {
                self.rotate(agent);
            }
        }
        (transmit, events)
    }

    fn rotate(&self, agent: &MlsAgent) {
        let (Ok(keys), Some(leaf)) = (agent.epoch_keys(), agent.member().leaf_index()) else {
            return;
        };
        let mut epoch = lock(&self.epoch);
        match epoch.as_mut() {
            Some(current) => {
                current.opener.rotate(keys.clone(), Instant::now());
                current.keys = keys;
                current.leaf = leaf;
            }
            None => {
                *epoch = Some(Epoch {
                    opener: MlsOpener::new(keys.clone(), self.opener_config),
                    keys,
                    leaf,
                });
            }
        }
    }

    /// Open a received frame's SFrame payload, authenticating `envelope`.
    pub(crate) fn open(&self, envelope: &Envelope, payload: &[u8]) -> Result<Bytes, OpenError> {
        let mut epoch = lock(&self.epoch);
        let Some(epoch) = epoch.as_mut() else {
            // Not in the group yet: nothing can open.
            return Err(OpenError::AuthenticationFailed);
        };
        let mut out = BytesMut::with_capacity(payload.len());
        epoch.opener.open(&envelope.metadata(), payload, &mut out)?;
        Ok(out.freeze())
    }

    /// The current epoch, if in the group.
    pub(crate) fn epoch(&self) -> Option<u64> {
        lock(&self.epoch).as_ref().map(|e| e.keys.epoch())
    }

    /// The group's members with their credentials checked against the roster.
    pub(crate) fn members(&self) -> Vec<sealroom_mls::CheckedMember> {
        lock(&self.agent).checked_members()
    }

    /// A sending session: its own context id, sealing under whatever epoch is current.
    pub(crate) fn sealer(self: &Arc<Self>) -> MlsTrackSealer {
        MlsTrackSealer {
            keys: self.clone(),
            context: self.next_context.fetch_add(1, Ordering::Relaxed),
            sealer: None,
        }
    }
}

/// A track's sending session in the MLS mode.
pub(crate) struct MlsTrackSealer {
    keys: Arc<MlsKeys>,
    context: u64,
    sealer: Option<MlsSealer>,
}

impl MlsTrackSealer {
    /// The sealer of the current epoch, taken anew when the epoch changed; `None` before
    /// this member is in the group.
    pub(crate) fn current(&mut self) -> Option<&mut MlsSealer> {
        {
            let guard = lock(&self.keys.epoch);
            let epoch = guard.as_ref()?;
            let stale = self
                .sealer
                .as_ref()
                .is_none_or(|s| s.epoch() != epoch.keys.epoch());
            if stale {
                self.sealer = epoch.keys.sealer(epoch.leaf, self.context);
            }
        }
        self.sealer.as_mut()
    }
}

/// Send what the agent asked for and tell the application what happened.
pub(crate) async fn apply(
    shared: &crate::room::Shared,
    events: &tokio::sync::mpsc::Sender<crate::event::Event>,
    (transmit, mls_events): Effects,
) {
    for message in transmit {
        if shared.control.send(message).await.is_err() {
            return;
        }
    }
    for event in mls_events {
        if events.send(crate::event::Event::Mls(event)).await.is_err() {
            return;
        }
    }
}

/// Fire the MLS timers (removal backoff, grace) until the session ends.
pub(crate) async fn tick(
    shared: Arc<crate::room::Shared>,
    events: tokio::sync::mpsc::Sender<crate::event::Event>,
) {
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        interval.tick().await;
        if shared.is_ended() {
            return;
        }
        if let Some(mls) = shared.keys.mls() {
            let effects = mls.tick();
            apply(&shared, &events, effects).await;
        }
    }
}
