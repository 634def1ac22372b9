//! The room session as the client sees it, without I/O: the roster, this member's id and
//! limits, and what each control message from the relay means for the application.
//!
//! The connection driver feeds it decoded control messages and acts on what it returns, so
//! the rules (which errors end the session, what a roster change looks like) are tested
//! here without a network.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sealroom_frame::control::{ControlMessage, MemberInfo, SessionLimits};
use sealroom_frame::envelope::MemberId;

use crate::event::{DisconnectReason, Event, Member};

/// What the driver should do after a control message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Nothing to tell the application.
    Nothing,
    /// Tell the application.
    Event(Event),
    /// The relay announced the end of the session; it will close the connection.
    Ending(DisconnectReason),
    /// The relay asked this member to go away (it is draining); reconnect after the delay.
    GoAway {
        /// The relay's reason.
        reason: DisconnectReason,
        /// The relay's suggested delay before reconnecting.
        retry_after: Duration,
    },
    /// The relay broke the protocol; end the session.
    Violation(String),
}

/// The client's view of one joined room.
#[derive(Debug)]
pub(crate) struct Session {
    me: MemberId,
    limits: SessionLimits,
    roster: HashMap<MemberId, Member>,
    /// Members that left, oldest first, with their user ids: a member's last frames travel
    /// on streams and datagrams of their own and may arrive after its `MemberLeft`, which
    /// comes on the control stream, and they must still name their user. At most
    /// `max_roster` entries; a member id that joins again leaves this list.
    departed: VecDeque<(MemberId, String)>,
    max_roster: usize,
}

impl Session {
    /// The session the relay's `Joined` message describes.
    pub(crate) fn new(
        me: MemberId,
        roster: Vec<MemberInfo>,
        limits: SessionLimits,
        max_roster: usize,
    ) -> Self {
        let mut session = Self {
            me,
            limits,
            roster: HashMap::new(),
            departed: VecDeque::new(),
            max_roster,
        };
        for info in roster {
            session.insert(info);
        }
        session
    }

    /// This member's id.
    pub(crate) fn me(&self) -> MemberId {
        self.me
    }

    /// The limits the relay announced.
    pub(crate) fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// The other members, in id order.
    pub(crate) fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.roster.values().cloned().collect();
        members.sort_by_key(|member| member.id);
        members
    }

    /// The user id of member `id`: a member in the room, or one of the last `max_roster`
    /// that left this session (its frames may arrive after its `MemberLeft`).
    pub(crate) fn user_of(&self, id: MemberId) -> Option<String> {
        if let Some(member) = self.roster.get(&id) {
            return Some(member.user.clone());
        }
        self.departed
            .iter()
            .rev()
            .find(|(member, _)| *member == id)
            .map(|(_, user)| user.clone())
    }

    fn insert(&mut self, info: MemberInfo) -> Option<Member> {
        if info.member == self.me {
            return None;
        }
        if !self.roster.contains_key(&info.member) && self.roster.len() >= self.max_roster {
            tracing::warn!(member = info.member, "roster full, member not tracked");
            return None;
        }
        self.departed.retain(|(member, _)| *member != info.member);
        let member = Member {
            id: info.member,
            user: info.user,
            tracks: info.tracks,
        };
        self.roster.insert(member.id, member.clone());
        Some(member)
    }

    /// Apply a control message from the relay.
    pub(crate) fn handle_control(&mut self, message: ControlMessage) -> Outcome {
        match message {
            ControlMessage::MemberJoined(info) => match self.insert(info) {
                Some(member) => Outcome::Event(Event::MemberJoined(member)),
                None => Outcome::Nothing,
            },
            ControlMessage::MemberLeft { member, reason } => {
                let user = self.roster.remove(&member).map(|m| m.user);
                if let Some(user) = &user {
                    if self.departed.len() >= self.max_roster {
                        self.departed.pop_front();
                    }
                    if self.max_roster > 0 {
                        self.departed.push_back((member, user.clone()));
                    }
                }
                Outcome::Event(Event::MemberLeft {
                    member,
                    user,
                    reason,
                })
            }
            ControlMessage::TrackPublished { member, track } => {
                if member == self.me {
                    return Outcome::Nothing;
                }
                if let Some(known) = self.roster.get_mut(&member) {
                    known.tracks.retain(|t| t.track != track.track);
                    known.tracks.push(track);
                }
                Outcome::Event(Event::TrackPublished { member, track })
            }
            ControlMessage::TrackUnpublished { member, track } => {
                if member == self.me {
                    return Outcome::Nothing;
                }
                if let Some(known) = self.roster.get_mut(&member) {
                    known.tracks.retain(|t| t.track != track);
                }
                Outcome::Event(Event::TrackUnpublished { member, track })
            }
            ControlMessage::KeyframeRequest { member, track } => {
                Outcome::Event(Event::KeyframeRequested { track, by: member })
            }
            ControlMessage::TicketRefreshed { expires_in_secs } => {
                self.limits.ticket_expires_in_secs = expires_in_secs;
                Outcome::Event(Event::TicketRefreshed { expires_in_secs })
            }
            ControlMessage::Error { code, message } if code.ends_session() => {
                Outcome::Ending(DisconnectReason::Relay { code, message })
            }
            ControlMessage::Error { code, message } => {
                Outcome::Event(Event::Refused { code, message })
            }
            ControlMessage::GoAway {
                code,
                reconnect_after_ms,
            } => Outcome::GoAway {
                reason: DisconnectReason::Relay {
                    code,
                    message: String::from("relay is going away"),
                },
                retry_after: Duration::from_millis(u64::from(reconnect_after_ms)),
            },
            ControlMessage::RecorderPresent { member } => {
                if member == self.me {
                    return Outcome::Nothing;
                }
                let user = self.roster.get(&member).map(|m| m.user.clone());
                Outcome::Event(Event::RecorderPresent { member, user })
            }
            ControlMessage::Joined { .. } => Outcome::Violation(String::from("second joined")),
            // The MLS delivery service's answers: a room-secret session has no group and
            // ignores them.
            ControlMessage::MlsState { .. }
            | ControlMessage::MlsCommitted { .. }
            | ControlMessage::MlsAccepted { .. }
            | ControlMessage::MlsRefused { .. }
            | ControlMessage::MlsGroupInfoPart { .. } => Outcome::Nothing,
            ControlMessage::Redirect { .. } => {
                Outcome::Violation(String::from("redirect after joined"))
            }
            ControlMessage::Join { .. }
            | ControlMessage::Subscribe { .. }
            | ControlMessage::Unsubscribe { .. }
            | ControlMessage::RefreshTicket { .. }
            | ControlMessage::Leave
            | ControlMessage::MlsSync
            | ControlMessage::MlsPublish { .. }
            | ControlMessage::MlsCommit { .. } => {
                Outcome::Violation(String::from("client-to-relay message from the relay"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sealroom_frame::control::{ErrorCode, LeaveReason, TrackInfo};
    use sealroom_frame::envelope::MediaKind;

    use super::*;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_frame_len: 65536,
            data_messages_per_sec: 30,
            data_bytes_per_sec: 16384,
            ticket_expires_in_secs: 600,
        }
    }

    fn info(member: MemberId, user: &str) -> MemberInfo {
        MemberInfo {
            member,
            user: user.into(),
            tracks: Vec::new(),
        }
    }

    #[test]
    fn roster_follows_joins_leaves_and_tracks() {
        let mut session = Session::new(1, vec![info(1, "me"), info(2, "bob")], limits(), 16);
        assert_eq!(
            session.members().len(),
            1,
            "this member is not in its own roster"
        );
        let outcome = session.handle_control(ControlMessage::MemberJoined(info(3, "carol")));
        assert!(matches!(outcome, Outcome::Event(Event::MemberJoined(ref m)) if m.user == "carol"));
        let track = TrackInfo {
            track: 7,
            kind: MediaKind::Video,
        };
        session.handle_control(ControlMessage::TrackPublished { member: 3, track });
        assert_eq!(session.members()[1].tracks, vec![track]);
        let outcome = session.handle_control(ControlMessage::MemberLeft {
            member: 2,
            reason: LeaveReason::Replaced,
        });
        assert_eq!(
            outcome,
            Outcome::Event(Event::MemberLeft {
                member: 2,
                user: Some("bob".into()),
                reason: LeaveReason::Replaced
            })
        );
        assert_eq!(session.members().len(), 1);
    }

    #[test]
    fn a_member_that_left_keeps_its_user_for_its_late_frames() {
        let left = |member| ControlMessage::MemberLeft {
            member,
            reason: LeaveReason::Left,
        };
        let mut session = Session::new(1, vec![info(2, "bob"), info(3, "carol")], limits(), 2);
        session.handle_control(left(2));
        session.handle_control(left(3));
        session.handle_control(ControlMessage::MemberJoined(info(4, "dave")));
        session.handle_control(left(4));
        assert!(session.members().is_empty());
        // The last `max_roster` (2) that left still name their user; the oldest is forgotten.
        assert_eq!(session.user_of(2), None);
        assert_eq!(session.user_of(3).as_deref(), Some("carol"));
        assert_eq!(session.user_of(4).as_deref(), Some("dave"));
        // An id that joins again is the new member's, not the departed one's.
        session.handle_control(ControlMessage::MemberJoined(info(4, "erin")));
        assert_eq!(session.user_of(4).as_deref(), Some("erin"));
        session.handle_control(left(4));
        assert_eq!(session.user_of(4).as_deref(), Some("erin"));
        assert_eq!(
            session.departed.len(),
            2,
            "the list stays within max_roster"
        );
        // A member the client never knew leaves no entry.
        session.handle_control(left(9));
        assert_eq!(session.user_of(9), None);
        assert_eq!(session.user_of(3).as_deref(), Some("carol"));
    }

    #[test]
    fn a_recorder_is_announced_with_its_user() {
        let mut session = Session::new(1, vec![info(1, "me"), info(4, "rec")], limits(), 16);
        match session.handle_control(ControlMessage::RecorderPresent { member: 4 }) {
            Outcome::Event(Event::RecorderPresent { member, user }) => {
                assert_eq!((member, user.as_deref()), (4, Some("rec")));
            }
            _ => panic!("a recorder event"),
        }
        assert!(matches!(
            session.handle_control(ControlMessage::RecorderPresent { member: 1 }),
            Outcome::Nothing
        ));
    }

    #[test]
    fn roster_is_bounded() {
        let mut session = Session::new(1, Vec::new(), limits(), 2);
        for member in 2..10 {
            session.handle_control(ControlMessage::MemberJoined(info(member, "x")));
        }
        assert_eq!(session.members().len(), 2);
    }

    #[test]
    fn refusals_continue_and_removals_end() {
        let mut session = Session::new(1, Vec::new(), limits(), 2);
        let refused = session.handle_control(ControlMessage::Error {
            code: ErrorCode::NotPermitted,
            message: "no video grant".into(),
        });
        assert!(matches!(
            refused,
            Outcome::Event(Event::Refused {
                code: ErrorCode::NotPermitted,
                ..
            })
        ));
        let replaced = session.handle_control(ControlMessage::Error {
            code: ErrorCode::Replaced,
            message: "replaced".into(),
        });
        assert!(matches!(
            replaced,
            Outcome::Ending(DisconnectReason::Relay {
                code: ErrorCode::Replaced,
                ..
            })
        ));
        let wrong_room = session.handle_control(ControlMessage::Error {
            code: ErrorCode::WrongRoom,
            message: "the fresh ticket names another room".into(),
        });
        assert!(matches!(
            wrong_room,
            Outcome::Event(Event::Refused {
                code: ErrorCode::WrongRoom,
                ..
            })
        ));
        let violation = session.handle_control(ControlMessage::Leave);
        assert!(matches!(violation, Outcome::Violation(_)));
    }

    #[test]
    fn go_away_means_reconnect_and_removals_are_final() {
        let mut session = Session::new(1, Vec::new(), limits(), 2);
        let outcome = session.handle_control(ControlMessage::GoAway {
            code: ErrorCode::ShuttingDown,
            reconnect_after_ms: 1500,
        });
        let Outcome::GoAway {
            reason,
            retry_after,
        } = outcome
        else {
            panic!("go away not recognised: {outcome:?}");
        };
        assert!(reason.is_recoverable());
        assert_eq!(retry_after, Duration::from_millis(1500));
        for code in [
            ErrorCode::Kicked,
            ErrorCode::Replaced,
            ErrorCode::RoomDismissed,
            ErrorCode::TicketExpired,
            ErrorCode::SlowConsumer,
            ErrorCode::ProtocolViolation,
        ] {
            let ending = session.handle_control(ControlMessage::Error {
                code,
                message: String::new(),
            });
            let Outcome::Ending(reason) = ending else {
                panic!("{code:?} does not end the session");
            };
            assert!(!reason.is_recoverable(), "{code:?} must not reconnect");
        }
        let shutdown = DisconnectReason::Relay {
            code: ErrorCode::ShuttingDown,
            message: String::new(),
        };
        assert!(shutdown.is_recoverable(), "a restarting relay is rejoined");
        assert!(!DisconnectReason::Left.is_recoverable());
    }
}
