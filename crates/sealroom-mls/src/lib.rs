//! MLS (RFC 9420) key management for sealroom rooms: the members run an MLS group and
//! derive their SFrame keys from each epoch's exporter, as RFC 9605 section 5.2 lays out.
//!
//! In this mode no application secret exists: every join and every removal is an MLS
//! commit, every commit starts a new epoch with new keys, and a member removed by a
//! commit can derive no key of any later epoch. The relay carries the MLS messages as
//! opaque bytes and orders commits (first commit for a position wins); it links none of
//! this crate. `docs/MLS.md` describes the mode, the ordering rule and the race cases.
//!
//! ```
//! use sealroom_mls::{MlsMember, MlsOpener, MlsOpenerConfig};
//!
//! let mut alice = MlsMember::new("alice")?;
//! let group_info = alice.create_group(b"room-1")?;
//!
//! // Bob joins by external commit from the group info the relay keeps.
//! let mut bob = MlsMember::new("bob")?;
//! let commit = bob.join_external(&group_info)?;
//! // ... the relay accepts it (first commit for epoch 0) and forwards it to Alice.
//! bob.confirm_commit()?;
//! alice.handle_commit(&commit.commit)?;
//! assert_eq!(alice.epoch(), Some(1));
//!
//! // Both derive the same epoch keys; Bob seals, Alice opens.
//! let bob_keys = bob.epoch_keys()?;
//! let mut sealer = bob_keys.sealer(bob.leaf_index().unwrap_or(0), 0).expect("fits");
//! let mut frame = Vec::new();
//! sealer.seal(b"envelope", b"hello", &mut frame)?;
//! let mut opener = MlsOpener::new(alice.epoch_keys()?, MlsOpenerConfig::default());
//! let mut plain = Vec::new();
//! let opened = opener.open(b"envelope", &frame, &mut plain)?;
//! assert_eq!(&plain[opened.plaintext], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent;
mod error;
mod keys;
pub mod kid;
mod member;
mod storage;

pub use agent::{AgentConfig, CheckedMember, MlsAgent, MlsEvent};
pub use error::MlsError;
pub use keys::{
    BASE_KEY_LEN, EXPORTER_LABEL, EpochKeys, MlsOpened, MlsOpener, MlsOpenerConfig, MlsSealer,
    SUITE,
};
pub use kid::MlsKid;
pub use member::{CIPHERSUITE, Commit, EpochChange, GroupMember, MAX_USER_ID_LEN, MlsMember};
