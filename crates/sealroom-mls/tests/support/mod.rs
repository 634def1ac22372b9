//! Members' agents talking to the relay's I/O-free core in memory, deterministically, in
//! the manner of quinn-proto's `Pair::drive()`: every message is delivered in order until
//! nothing moves.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sealroom_frame::control::{ControlMessage, JoinOptions, LeaveReason};
use sealroom_frame::envelope::MemberId;
use sealroom_mls::{
    AgentConfig, EpochKeys, MlsAgent, MlsEvent, MlsOpener, MlsOpenerConfig, MlsSealer,
};
use sealroom_relay::config::{AppConfig, Limits};
use sealroom_relay::engine::{ConnId, JoinOutcome, Now, Output, RelayCore};
use sealroom_relay::{Grants, TicketClaims, mint};

const SECRET: &[u8] = b"mls-test-ticket-secret";

/// One member: its agent, its opener and sealer for the current epoch, and what it saw.
pub struct Peer {
    pub user: String,
    pub agent: MlsAgent,
    pub member: MemberId,
    pub opener: Option<MlsOpener>,
    pub sealer: Option<MlsSealer>,
    pub events: Vec<MlsEvent>,
    /// Whether the member is in the room (a departed one keeps its state and keys).
    pub in_room: bool,
}

pub struct Net {
    pub core: RelayCore,
    pub now: Now,
    pub peers: BTreeMap<ConnId, Peer>,
    next: u64,
    /// Every control message the relay sent, for the tap checks.
    pub tap: Vec<ControlMessage>,
}

fn limits() -> Limits {
    Limits {
        control_messages_per_sec: 100_000,
        ..Limits::default()
    }
}

impl Net {
    pub fn new() -> Self {
        let now = Now {
            instant: Instant::now(),
            unix_secs: 1_800_000_000,
        };
        let apps = [AppConfig::new("app", "k", SECRET.to_vec())];
        Self {
            core: RelayCore::new(&apps, limits(), now.instant),
            now,
            peers: BTreeMap::new(),
            next: 1,
            tap: Vec::new(),
        }
    }

    /// A relay restart: a new core, every connection gone, each member reconnects (new
    /// connection, new member id) with its agent's state intact.
    pub fn restart_relay(&mut self) {
        let apps = [AppConfig::new("app", "k", SECRET.to_vec())];
        self.core = RelayCore::new(&apps, limits(), self.now.instant);
        let peers = std::mem::take(&mut self.peers);
        for (_, peer) in peers {
            if peer.in_room {
                self.connect(peer);
            }
        }
        self.drive();
    }

    fn ticket(&self, user: &str) -> String {
        let claims =
            TicketClaims::new("app", user, "room", self.now.unix_secs, 3600, Grants::all());
        mint(&claims, "k", SECRET).expect("mint")
    }

    /// A new member `user` joins the room (and the group, by itself).
    pub fn join(&mut self, user: &str) -> ConnId {
        let agent = MlsAgent::new(
            user,
            b"app/room",
            AgentConfig::default().removal_backoff(Duration::from_secs(2)),
        )
        .expect("agent");
        let peer = Peer {
            user: user.to_owned(),
            agent,
            member: 0,
            opener: None,
            sealer: None,
            events: Vec::new(),
            in_room: true,
        };
        let conn = self.connect(peer);
        self.drive();
        conn
    }

    fn connect(&mut self, peer: Peer) -> ConnId {
        let conn = ConnId(self.next);
        self.next += 1;
        self.core.handle_connect(conn, self.now);
        let ticket = self.ticket(&peer.user);
        self.peers.insert(conn, peer);
        let options = JoinOptions {
            auto_subscribe: true,
            room: None,
        };
        assert_eq!(
            self.core.handle_join(conn, &ticket, &options, self.now),
            JoinOutcome::Joined
        );
        conn
    }

    /// `conn` leaves the room (it keeps its agent and keys, as an attacker would).
    pub fn leave(&mut self, conn: ConnId, reason: LeaveReason) {
        self.core.handle_disconnect(conn, reason);
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.in_room = false;
        }
        self.drive();
    }

    /// Deliver everything until nothing moves; fire removal timers by moving time on.
    pub fn drive(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(output) = self.core.poll_output() {
                moved = true;
                if let Output::Send { conn, message } = output {
                    self.tap.push(message.clone());
                    self.deliver(conn, &message);
                }
            }
            let conns: Vec<ConnId> = self.peers.keys().copied().collect();
            for conn in conns {
                self.settle(conn);
                let Some(peer) = self.peers.get_mut(&conn) else {
                    continue;
                };
                if !peer.in_room {
                    continue;
                }
                while let Some(message) = peer.agent.poll_transmit() {
                    moved = true;
                    self.core.handle_control(conn, message, self.now);
                }
            }
            if !moved {
                // Nothing in flight: let the next due timer fire, if any.
                let due = self
                    .peers
                    .values()
                    .filter(|p| p.in_room)
                    .filter_map(|p| p.agent.poll_timeout())
                    .min();
                let Some(due) = due else { return };
                let step = due.saturating_duration_since(self.now.instant);
                self.now.instant += step;
                self.now.unix_secs += step.as_secs();
                for peer in self.peers.values_mut().filter(|p| p.in_room) {
                    peer.agent.handle_timeout(self.now.instant);
                }
            }
        }
        panic!("the group did not settle in 64 rounds");
    }

    fn deliver(&mut self, conn: ConnId, message: &ControlMessage) {
        let now = self.now.instant;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        match message {
            ControlMessage::Joined { member, roster, .. } => {
                peer.member = *member;
                peer.agent.handle_joined(*member, roster, now);
            }
            ControlMessage::MemberJoined(info) => peer.agent.handle_member_joined(info),
            ControlMessage::MemberLeft { member, .. } => {
                peer.agent.handle_member_left(*member, now);
            }
            other => peer.agent.handle_control(other, now),
        }
    }

    /// Follow the agent's events: a new epoch rotates the opener and takes a new sealer.
    fn settle(&mut self, conn: ConnId) {
        let now = self.now.instant;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        while let Some(event) = peer.agent.poll_event() {
            if let MlsEvent::EpochChanged { .. } = event
                && let Ok(keys) = peer.agent.epoch_keys()
            {
                peer.sealer = keys.sealer(peer.agent.member().leaf_index().unwrap_or(0), 0);
                match peer.opener.as_mut() {
                    Some(opener) => opener.rotate(keys, now),
                    None => {
                        peer.opener = Some(MlsOpener::new(keys, MlsOpenerConfig::default()));
                    }
                }
            }
            peer.events.push(event);
        }
    }

    /// Members in the room.
    pub fn present(&self) -> Vec<ConnId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.in_room)
            .map(|(c, _)| *c)
            .collect()
    }

    /// The epoch every present member is at; panics if they differ.
    pub fn common_epoch(&self) -> u64 {
        let epochs: Vec<Option<u64>> = self
            .present()
            .iter()
            .map(|c| self.peers[c].agent.member().epoch())
            .collect();
        assert!(
            epochs.iter().all(|e| e.is_some() && *e == epochs[0]),
            "members diverged: {epochs:?}"
        );
        epochs[0].expect("in a group")
    }

    /// `conn` seals one frame (its plaintext names it) in its current epoch.
    pub fn seal(&mut self, conn: ConnId, text: &str) -> Vec<u8> {
        let peer = self.peers.get_mut(&conn).expect("peer");
        let sealer = peer.sealer.as_mut().expect("a sealer once in the group");
        let mut out = Vec::new();
        sealer
            .seal(b"envelope", text.as_bytes(), &mut out)
            .expect("sealed");
        out
    }

    /// Whether `conn` opens `frame` (and gets `text` back).
    pub fn opens(&mut self, conn: ConnId, frame: &[u8], text: &str) -> bool {
        let peer = self.peers.get_mut(&conn).expect("peer");
        let Some(opener) = peer.opener.as_mut() else {
            return false;
        };
        let mut out = Vec::new();
        match opener.open(b"envelope", frame, &mut out) {
            Ok(opened) => &out[opened.plaintext] == text.as_bytes(),
            Err(_) => false,
        }
    }

    /// Keys of the epoch `conn` is in.
    pub fn keys(&self, conn: ConnId) -> Option<EpochKeys> {
        self.peers[&conn].agent.epoch_keys().ok()
    }
}
