//! One member's view of the room's MLS group: its signing key and basic credential, the
//! group state, and the operations the delivery service orders (external joins,
//! removals, updates) as opaque bytes in and out.
//!
//! Every operation that changes the group is two-phase: it returns a [`Commit`] to send to
//! the relay and keeps it pending; the relay's answer then either confirms it
//! ([`MlsMember::confirm_commit`]) or refuses it because another commit won the position
//! ([`MlsMember::discard_commit`]), after which the winner arrives and is applied with
//! [`MlsMember::handle_commit`].
//!
//! openmls keeps a group's state in the provider's storage under the group id, and
//! sealroom derives that id from the room, so a member that leaves a group (forgets it,
//! is removed, joins another) deletes its state there: otherwise creating or joining the
//! room's group again is refused (`GroupAlreadyExists`), and the old group's secrets
//! would stay behind.

use openmls::messages::group_info::{GroupInfo, VerifiableGroupInfo};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::storage::StorageProvider as _;

use crate::error::MlsError;
use crate::keys::{BASE_KEY_LEN, EXPORTER_LABEL, EpochKeys};
use crate::storage::{MlsProvider, ZeroizingStorage};

/// The one MLS ciphersuite of this mode.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Longest user id a credential carries, in bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// A commit to hand to the delivery service, with the group info of the epoch it creates
/// (what a newcomer needs to join by external commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The MLS epoch the commit applies to (the group moves to `epoch + 1`).
    pub epoch: u64,
    /// The encoded MLS commit message.
    pub commit: Vec<u8>,
    /// The encoded group info of the new epoch, with the ratchet tree.
    pub group_info: Vec<u8>,
}

/// A member of the group as its credential names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupMember {
    /// The leaf index (what the KID carries).
    pub leaf: u32,
    /// The user id in the member's basic credential (the ticket's user id for honest
    /// members; the client checks it against the relay's roster).
    pub user: String,
}

/// What applying a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochChange {
    /// The new epoch.
    pub epoch: u64,
    /// Whether this member is still in the group (false: it was removed).
    pub still_member: bool,
}

/// One member's MLS state: provider (in-memory storage that zeroizes what it drops),
/// signing key, credential and, once created or joined, the group.
pub struct MlsMember {
    provider: MlsProvider,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    user: String,
    group: Option<MlsGroup>,
    pending: Pending,
}

/// A commit waiting for the relay's answer.
enum Pending {
    /// Nothing pending.
    None,
    /// A commit of the current group, staged inside it.
    Member,
    /// An external join: the group it creates, installed only once the relay accepts.
    External(Box<MlsGroup>),
}

impl std::fmt::Debug for MlsMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsMember")
            .field("user", &self.user)
            .field("epoch", &self.epoch())
            .field("leaf", &self.leaf_index())
            .field("pending", &self.has_pending_commit())
            .finish_non_exhaustive()
    }
}

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

/// The group info in `bytes` (an encoded MLS message), not yet verified.
fn parse_group_info(bytes: &[u8]) -> Result<VerifiableGroupInfo, MlsError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| MlsError::Malformed(e.to_string()))?;
    let MlsMessageBodyIn::GroupInfo(info) = message.extract() else {
        return Err(MlsError::Malformed("not a group info".into()));
    };
    Ok(info)
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

/// [`MlsMember::forget_group`] on its fields, for a caller that borrows the provider.
fn forget(storage: &ZeroizingStorage, group: &mut Option<MlsGroup>, pending: &mut Pending) {
    if let Pending::External(mut joined) = std::mem::replace(pending, Pending::None) {
        // Only storage can fail here, and it is in memory; what is left behind is
        // deleted again before the id is used ([`erase_stored`]).
        let _ = delete(storage, &mut joined);
    }
    if let Some(mut group) = group.take() {
        let _ = delete(storage, &mut group);
    }
}

/// Delete `group`'s state from `storage`: what `MlsGroup::delete` deletes, and the HPKE
/// key pairs of a member removed from it.
fn delete(storage: &ZeroizingStorage, group: &mut MlsGroup) -> Result<(), MlsError> {
    // A commit that removes this member moves its group to the next epoch, but openmls
    // merges it as an outsider would and keeps this member's key pairs (its leaf's and
    // path's private keys) stored under the epoch before, where `MlsGroup::delete` does
    // not look. For a member still in the group that merge deleted them already.
    if let Some(previous) = group.epoch().as_u64().checked_sub(1) {
        storage
            .delete_encryption_epoch_key_pairs(
                group.group_id(),
                &GroupEpoch::from(previous),
                group.own_leaf_index().u32(),
            )
            .map_err(MlsError::library)?;
    }
    group.delete(storage).map_err(MlsError::library)
}

/// Delete whatever state `storage` still holds for `group_id` (a group dropped on an
/// error path before its state was deleted), so that creating or joining a group under
/// that id neither is refused nor leaves the old group's entries beside it.
fn erase_stored(storage: &ZeroizingStorage, group_id: &GroupId) -> Result<(), MlsError> {
    if let Some(mut stale) = MlsGroup::load(storage, group_id).map_err(MlsError::library)? {
        delete(storage, &mut stale)?;
    }
    Ok(())
}

impl MlsMember {
    /// A member with a fresh Ed25519 signing key and a basic credential naming `user` (the
    /// user id of its ticket).
    ///
    /// # Errors
    /// [`MlsError::BadUserId`] for an empty or over-long user id, [`MlsError::Library`]
    /// if key generation fails.
    pub fn new(user: &str) -> Result<Self, MlsError> {
        if user.is_empty() || user.len() > MAX_USER_ID_LEN {
            return Err(MlsError::BadUserId(user.len()));
        }
        let provider = MlsProvider::default();
        let signer =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(MlsError::library)?;
        signer
            .store(provider.storage())
            .map_err(MlsError::library)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(user.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Ok(Self {
            provider,
            signer,
            credential,
            user: user.to_owned(),
            group: None,
            pending: Pending::None,
        })
    }

    /// The user id this member's credential names.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether this member is in a group.
    pub fn in_group(&self) -> bool {
        self.group.as_ref().is_some_and(MlsGroup::is_active)
    }

    /// Whether a commit waits for the relay's answer.
    pub fn has_pending_commit(&self) -> bool {
        !matches!(self.pending, Pending::None)
    }

    fn group(&self) -> Result<&MlsGroup, MlsError> {
        self.group
            .as_ref()
            .filter(|g| g.is_active())
            .ok_or(MlsError::NoGroup)
    }

    /// The current epoch, or `None` outside a group.
    pub fn epoch(&self) -> Option<u64> {
        self.group().ok().map(|g| g.epoch().as_u64())
    }

    /// This member's leaf index, or `None` outside a group.
    pub fn leaf_index(&self) -> Option<u32> {
        self.group().ok().map(|g| g.own_leaf_index().u32())
    }

    /// The group's members, by leaf index. A credential that is not valid UTF-8 is shown
    /// with replacement characters (and matches no roster user).
    pub fn members(&self) -> Vec<GroupMember> {
        let Ok(group) = self.group() else {
            return Vec::new();
        };
        let mut members: Vec<GroupMember> = group
            .members()
            .map(|m| GroupMember {
                leaf: m.index.u32(),
                user: String::from_utf8_lossy(m.credential.serialized_content()).into_owned(),
            })
            .collect();
        members.sort();
        members
    }

    /// Start a new group at epoch 0 with this member alone in it; returns its group info
    /// for the relay to keep. Any group this member held is forgotten first
    /// ([`Self::forget_group`]), whatever its id.
    ///
    /// # Errors
    /// [`MlsError::Library`] if the MLS library fails.
    pub fn create_group(&mut self, group_id: &[u8]) -> Result<Vec<u8>, MlsError> {
        let group_id = GroupId::from_slice(group_id);
        self.forget_group();
        erase_stored(self.provider.storage(), &group_id)?;
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &create_config(),
            group_id,
            self.credential.clone(),
        )
        .map_err(MlsError::library)?;
        self.group = Some(group);
        self.group_info()
    }

    /// Drop the group state and any pending commit or external join, and delete them
    /// from storage: this member will join again, or create the group anew under the same
    /// id.
    ///
    /// openmls's `MlsGroup::delete` removes every entry of the group (tree, context, epoch
    /// and message secrets, resumption PSKs, this member's HPKE key pairs of the epoch, a
    /// pending commit), and the key pairs a removed member keeps under the epoch before
    /// are deleted besides; only the signing key, which is this member's and not the
    /// group's, stays. The group's secrets held in memory are `SecretVLBytes` and HPKE
    /// private keys, which zeroize on drop, and the storage zeroizes the serialized copy
    /// of every entry it deletes, here or when each epoch overwrites the last (what it
    /// cannot reach is in the `storage` module's docs).
    pub fn forget_group(&mut self) {
        forget(self.provider.storage(), &mut self.group, &mut self.pending);
    }

    /// The current epoch's group info with the ratchet tree, signed by this member.
    ///
    /// # Errors
    /// [`MlsError::NoGroup`] outside a group.
    pub fn group_info(&self) -> Result<Vec<u8>, MlsError> {
        let group = self.group()?;
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .map_err(MlsError::library)?;
        info.tls_serialize_detached().map_err(MlsError::library)
    }

    /// Whether `group_info` (as [`Self::group_info`] and [`Commit::group_info`] encode
    /// it, and the relay keeps it) describes the group state this member holds now: the
    /// same group context, that is the same group id and epoch, the same ratchet tree
    /// (tree hash) and the same commits behind it (confirmed transcript hash). A group
    /// created anew with the same group id, or this group at another epoch, does not
    /// match; every member of this group at this epoch does. A commit still pending does
    /// not count: the state held is the one before it.
    ///
    /// False outside a group and for bytes that are not a group info. The signature is
    /// not verified: only the group info's public context is compared with this member's
    /// own state, so a forged one that matches describes what this member already holds.
    pub fn holds_state_of(&self, group_info: &[u8]) -> bool {
        let (Ok(group), Ok(info)) = (self.group(), parse_group_info(group_info)) else {
            return false;
        };
        info.group_context() == group.public_group().group_context()
    }

    /// Join the group whose group info the relay keeps, by external commit. The joined
    /// state stays aside until the relay accepts the commit ([`Self::confirm_commit`]);
    /// refused, it is dropped and the member joins again from the newer group info. Any
    /// older group state of this member is forgotten now ([`Self::forget_group`]): if its
    /// signing key still holds a leaf (a rejoin after missed commits), the commit removes
    /// that leaf.
    ///
    /// # Errors
    /// [`MlsError::Malformed`] for bytes that are not a group info,
    /// [`MlsError::Refused`] for one that does not verify or is of another ciphersuite.
    pub fn join_external(&mut self, group_info: &[u8]) -> Result<Commit, MlsError> {
        let info = parse_group_info(group_info)?;
        if info.ciphersuite() != CIPHERSUITE {
            return Err(MlsError::Refused("another ciphersuite".into()));
        }
        self.forget_group();
        // openmls does not check for a group under this id here: without this, the new
        // group would overwrite the old one's entries and leave the rest (its epoch's HPKE
        // key pairs) beside it.
        erase_stored(self.provider.storage(), info.group_id())?;
        let (mut group, bundle) = MlsGroup::external_commit_builder()
            .with_config(join_config())
            .build_group(&self.provider, info, self.credential.clone())
            .map_err(MlsError::refused)?
            .load_psks(self.provider.storage())
            .map_err(MlsError::library)?
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(MlsError::refused)?
            .finalize(&self.provider)
            .map_err(MlsError::refused)?;
        // The joined group is in storage already: delete it again if it cannot be sent.
        let encoded = (|| {
            let info = group
                .export_group_info(self.provider.crypto(), &self.signer, true)
                .map_err(MlsError::library)?
                .tls_serialize_detached()
                .map_err(MlsError::library)?;
            let (commit, _, _) = bundle.into_contents();
            let commit = commit.tls_serialize_detached().map_err(MlsError::library)?;
            Ok((commit, info))
        })();
        let (commit, group_info) = encoded.inspect_err(|_| {
            let _ = delete(self.provider.storage(), &mut group);
        })?;
        let epoch = group.epoch().as_u64().saturating_sub(1);
        self.pending = Pending::External(Box::new(group));
        Ok(Commit {
            epoch,
            commit,
            group_info,
        })
    }

    /// A key package of this member (its credential and a fresh init key), encoded as an
    /// MLS message, for a member of a group to add it with [`Self::add`].
    ///
    /// # Errors
    /// [`MlsError::Library`] if the MLS library fails.
    pub fn key_package(&self) -> Result<Vec<u8>, MlsError> {
        let bundle = KeyPackage::builder()
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(MlsError::library)?;
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .map_err(MlsError::library)
    }

    /// Commit the addition of the members whose key packages ([`Self::key_package`]) are
    /// given; returns the commit (pending until the relay answers, as every commit) and the
    /// Welcome for the added members. Members of a room join by external commit by
    /// themselves (`docs/MLS.md`); adding is for building a group out of band, as the
    /// tests and benchmarks of large groups do, in one commit.
    ///
    /// # Errors
    /// [`MlsError::Malformed`] for bytes that are not a key package, [`MlsError::Refused`]
    /// for one that does not verify or cannot be added, [`MlsError::NoGroup`],
    /// [`MlsError::CommitPending`].
    pub fn add(&mut self, key_packages: &[Vec<u8>]) -> Result<(Commit, Vec<u8>), MlsError> {
        let mut packages = Vec::with_capacity(key_packages.len());
        for bytes in key_packages {
            let message = MlsMessageIn::tls_deserialize_exact(bytes)
                .map_err(|e| MlsError::Malformed(e.to_string()))?;
            let MlsMessageBodyIn::KeyPackage(package) = message.extract() else {
                return Err(MlsError::Malformed("not a key package".into()));
            };
            packages.push(
                package
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(MlsError::refused)?,
            );
        }
        let mut welcome = Vec::new();
        let commit = self.stage(|group, provider, signer| {
            let (commit, message, info) = group
                .add_members(provider, signer, &packages)
                .map_err(MlsError::refused)?;
            welcome = message
                .tls_serialize_detached()
                .map_err(MlsError::library)?;
            Ok((commit, info))
        })?;
        Ok((commit, welcome))
    }

    /// Enter the group from a Welcome that a member's [`Self::add`] made for this
    /// member's key package (the ratchet tree comes in the Welcome). Once the Welcome
    /// opens with this member's key package, any group it held is forgotten
    /// ([`Self::forget_group`]), whatever its id.
    ///
    /// # Errors
    /// [`MlsError::Malformed`] for bytes that are not a Welcome, [`MlsError::Refused`]
    /// for one that is not for this member's key package or does not verify.
    pub fn join_welcome(&mut self, welcome: &[u8]) -> Result<(), MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(welcome)
            .map_err(|e| MlsError::Malformed(e.to_string()))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(MlsError::Malformed("not a welcome".into()));
        };
        let Self {
            provider,
            group,
            pending,
            ..
        } = self;
        let provider = &*provider;
        let join = StagedWelcome::build_from_welcome(provider, &join_config(), welcome)
            .map_err(MlsError::refused)?;
        // Staging refuses a group id that storage holds (`GroupAlreadyExists`); the id is
        // known only now that the Welcome is open.
        let group_id = join.processed_welcome().unverified_group_info().group_id();
        forget(provider.storage(), group, pending);
        erase_stored(provider.storage(), group_id)?;
        let joined = join
            .build()
            .map_err(MlsError::refused)?
            .into_group(provider)
            .map_err(MlsError::refused)?;
        *group = Some(joined);
        Ok(())
    }

    /// Commit the removal of the members at `leaves` (members that left the room). The
    /// commit is pending until the relay answers.
    ///
    /// # Errors
    /// [`MlsError::NoGroup`], [`MlsError::CommitPending`], [`MlsError::Refused`] for a
    /// leaf that is not in the group or is this member's own.
    pub fn remove(&mut self, leaves: &[u32]) -> Result<Commit, MlsError> {
        self.stage(|group, provider, signer| {
            let leaves: Vec<LeafNodeIndex> =
                leaves.iter().map(|&l| LeafNodeIndex::new(l)).collect();
            let (commit, _, info) = group
                .remove_members(provider, signer, &leaves)
                .map_err(MlsError::refused)?;
            Ok((commit, info))
        })
    }

    /// Commit a fresh leaf key for this member (post-compromise security, or to move the
    /// group to a new epoch for any other reason).
    ///
    /// # Errors
    /// [`MlsError::NoGroup`], [`MlsError::CommitPending`].
    pub fn update(&mut self) -> Result<Commit, MlsError> {
        self.stage(|group, provider, signer| {
            let bundle = group
                .self_update(provider, signer, LeafNodeParameters::default())
                .map_err(MlsError::refused)?;
            let (commit, _, info) = bundle.into_contents();
            Ok((commit, info))
        })
    }

    fn stage(
        &mut self,
        build: impl FnOnce(
            &mut MlsGroup,
            &MlsProvider,
            &SignatureKeyPair,
        ) -> Result<(MlsMessageOut, Option<GroupInfo>), MlsError>,
    ) -> Result<Commit, MlsError> {
        if self.has_pending_commit() {
            return Err(MlsError::CommitPending);
        }
        let Self {
            provider,
            signer,
            group,
            ..
        } = self;
        let group = group
            .as_mut()
            .filter(|g| g.is_active())
            .ok_or(MlsError::NoGroup)?;
        let epoch = group.epoch().as_u64();
        let (commit, info) = build(group, provider, signer)?;
        let commit = commit.tls_serialize_detached().map_err(MlsError::library)?;
        // The group config asks for the ratchet tree extension, so every commit comes
        // with the signed group info of the epoch it creates (with the external public
        // key a newcomer needs).
        let Some(info) = info else {
            let _ = group.clear_pending_commit(provider.storage());
            return Err(MlsError::Library("commit without a group info".into()));
        };
        let group_info = MlsMessageOut::from(info)
            .tls_serialize_detached()
            .map_err(MlsError::library)?;
        self.pending = Pending::Member;
        Ok(Commit {
            epoch,
            commit,
            group_info,
        })
    }

    /// The relay accepted the pending commit: the group moves to the new epoch.
    ///
    /// # Errors
    /// [`MlsError::NoGroup`] when nothing is pending, [`MlsError::Library`] if merging
    /// fails.
    pub fn confirm_commit(&mut self) -> Result<EpochChange, MlsError> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => Err(MlsError::NoGroup),
            Pending::External(group) => {
                self.group = Some(*group);
                self.change()
            }
            Pending::Member => {
                let Self {
                    provider, group, ..
                } = self;
                let group = group.as_mut().ok_or(MlsError::NoGroup)?;
                group
                    .merge_pending_commit(provider)
                    .map_err(MlsError::library)?;
                self.change()
            }
        }
    }

    /// The relay refused the pending commit (another commit won its position): drop it.
    /// The winner arrives through [`Self::handle_commit`]; the caller then decides again
    /// whether its change is still needed. A pending external join is dropped with its
    /// group, deleted from storage as by [`Self::forget_group`].
    pub fn discard_commit(&mut self) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::Member => {
                if let Some(group) = self.group.as_mut() {
                    // Only storage can fail here, and it is in memory.
                    let _ = group.clear_pending_commit(self.provider.storage());
                }
            }
            Pending::External(mut joined) => {
                let _ = delete(self.provider.storage(), &mut joined);
            }
        }
    }

    /// Apply a commit another member sent (as the relay forwarded it). A pending commit of
    /// this member for the same epoch lost the race: it is dropped first.
    ///
    /// # Errors
    /// [`MlsError::NoGroup`] outside a group, [`MlsError::Malformed`] for bytes that are
    /// not an MLS commit, [`MlsError::Refused`] for a commit that does not apply to this
    /// epoch or does not verify. Every honest member refuses the same commit, so a
    /// refused commit leaves the group as it was for all of them.
    pub fn handle_commit(&mut self, commit: &[u8]) -> Result<EpochChange, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(commit)
            .map_err(|e| MlsError::Malformed(e.to_string()))?;
        let message = message
            .try_into_protocol_message()
            .map_err(|e| MlsError::Malformed(e.to_string()))?;
        if self.has_pending_commit() {
            self.discard_commit();
        }
        let Self {
            provider, group, ..
        } = self;
        let group = group
            .as_mut()
            .filter(|g| g.is_active())
            .ok_or(MlsError::NoGroup)?;
        let processed = group
            .process_message(provider, message)
            .map_err(MlsError::refused)?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(MlsError::Malformed("not a commit".into()));
        };
        group
            .merge_staged_commit(provider, *staged)
            .map_err(MlsError::library)?;
        self.change()
    }

    fn change(&self) -> Result<EpochChange, MlsError> {
        let group = self.group.as_ref().ok_or(MlsError::NoGroup)?;
        Ok(EpochChange {
            epoch: group.epoch().as_u64(),
            still_member: group.is_active(),
        })
    }

    /// The SFrame base key of the current epoch (RFC 9605 section 5.2).
    ///
    /// # Errors
    /// [`MlsError::NoGroup`] outside a group (or after removal).
    pub fn epoch_keys(&self) -> Result<EpochKeys, MlsError> {
        let group = self.group()?;
        let exported = group
            .export_secret(self.provider.crypto(), EXPORTER_LABEL, &[], BASE_KEY_LEN)
            .map_err(MlsError::library)?;
        let base_key: [u8; BASE_KEY_LEN] = exported
            .as_slice()
            .try_into()
            .map_err(|_| MlsError::Library("exporter returned a short secret".into()))?;
        let mut exported = exported;
        zeroize::Zeroize::zeroize(&mut exported[..]);
        Ok(EpochKeys::from_exported(group.epoch().as_u64(), base_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alice` alone in a group `room`, and `bob` joined by external commit: both at
    /// epoch 1. Returns them with the group info of epoch 1 that Bob's commit carries.
    fn pair() -> (MlsMember, MlsMember, Vec<u8>) {
        let mut alice = MlsMember::new("alice").expect("member");
        let info = alice.create_group(b"room").expect("group");
        let mut bob = MlsMember::new("bob").expect("member");
        let commit = bob.join_external(&info).expect("joins");
        bob.confirm_commit().expect("accepted");
        alice.handle_commit(&commit.commit).expect("applies");
        (alice, bob, commit.group_info)
    }

    #[test]
    fn a_member_holds_the_state_of_its_own_group_info_and_of_its_peers_at_the_epoch() {
        let mut alice = MlsMember::new("alice").expect("member");
        let info = alice.create_group(b"room").expect("group");
        assert!(alice.holds_state_of(&info));
        assert!(alice.holds_state_of(&alice.group_info().expect("info")));

        let (alice, bob, joined) = pair();
        assert_eq!(alice.epoch(), Some(1));
        assert!(alice.holds_state_of(&joined));
        assert!(bob.holds_state_of(&joined));
        assert!(bob.holds_state_of(&alice.group_info().expect("info")));
        assert!(alice.holds_state_of(&bob.group_info().expect("info")));
    }

    #[test]
    fn a_group_info_of_another_epoch_of_the_group_is_not_the_members_state() {
        let (mut alice, mut bob, joined) = pair();
        let commit = alice.update().expect("update");
        // Pending, the commit has not moved the group yet.
        assert!(alice.holds_state_of(&joined));
        assert!(!alice.holds_state_of(&commit.group_info));
        alice.confirm_commit().expect("accepted");
        assert!(!alice.holds_state_of(&joined));
        assert!(alice.holds_state_of(&commit.group_info));
        // Bob, a commit behind, holds the old state and not the new one.
        assert!(bob.holds_state_of(&joined));
        assert!(!bob.holds_state_of(&commit.group_info));
        bob.handle_commit(&commit.commit).expect("applies");
        assert!(bob.holds_state_of(&commit.group_info));
        assert!(!bob.holds_state_of(&joined));
    }

    #[test]
    fn a_group_created_anew_with_the_same_id_and_epoch_is_not_the_members_state() {
        let mut alice = MlsMember::new("alice").expect("member");
        let mut bob = MlsMember::new("bob").expect("member");
        let first = alice.create_group(b"room").expect("group");
        let other = bob.create_group(b"room").expect("group");
        assert_eq!(alice.epoch(), bob.epoch());
        assert!(!alice.holds_state_of(&other));
        assert!(!bob.holds_state_of(&first));
        assert!(alice.holds_state_of(&first));
        assert!(bob.holds_state_of(&other));
    }

    #[test]
    fn garbage_and_a_member_without_a_group_hold_no_state() {
        let (alice, _, joined) = pair();
        let package = alice.key_package().expect("key package");
        let truncated = &joined[..joined.len() - 1];
        for garbage in [
            &b""[..],
            b"\x00\x01",
            &[0xff; 300][..],
            &package[..],
            truncated,
        ] {
            assert!(!alice.holds_state_of(garbage));
        }
        assert!(alice.holds_state_of(&joined));
        let outsider = MlsMember::new("carol").expect("member");
        assert!(!outsider.holds_state_of(&joined));
    }

    #[test]
    fn a_removed_or_forgetful_member_holds_no_state() {
        let (mut alice, mut bob, _) = pair();
        let leaf = bob.leaf_index().expect("leaf");
        let removal = alice.remove(&[leaf]).expect("remove");
        alice.confirm_commit().expect("accepted");
        let before = bob.group_info().expect("info");
        assert!(bob.holds_state_of(&before));
        assert!(
            !bob.handle_commit(&removal.commit)
                .expect("applies")
                .still_member
        );
        assert!(!bob.holds_state_of(&before));
        assert!(!bob.holds_state_of(&removal.group_info));
        assert!(alice.holds_state_of(&removal.group_info));
        alice.forget_group();
        assert!(!alice.holds_state_of(&removal.group_info));
    }

    /// `committer` moves its group (with `other`) on an epoch; returns the commit.
    fn moved_on_by(committer: &mut MlsMember, other: &mut MlsMember) -> Commit {
        let update = committer.update().expect("update");
        committer.confirm_commit().expect("accepted");
        other.handle_commit(&update.commit).expect("applies");
        update
    }

    /// `creator` creates the room's group anew and `joiner` joins it by external commit.
    fn joins_anew(joiner: &mut MlsMember, creator: &mut MlsMember) {
        let info = creator.create_group(b"room").expect("group");
        let commit = joiner.join_external(&info).expect("joins");
        joiner.confirm_commit().expect("accepted");
        creator.handle_commit(&commit.commit).expect("applies");
        assert!(joiner.holds_state_of(&creator.group_info().expect("info")));
    }

    /// Whether `member`'s storage holds a group under `id`.
    fn stores_group(member: &MlsMember, id: &[u8]) -> bool {
        MlsGroup::load(member.provider.storage(), &GroupId::from_slice(id))
            .expect("storage")
            .is_some()
    }

    /// How many entries `member`'s storage holds (its signing key alone, outside a group).
    fn stored_entries(member: &MlsMember) -> usize {
        member.provider.storage().len()
    }

    #[test]
    fn a_new_epoch_and_a_forgotten_group_leave_only_zeroized_bytes_in_freed_memory() {
        use crate::storage::{Label, witness};

        let epoch_secrets = |member: &MlsMember| {
            member
                .provider
                .storage()
                .stored_bytes(Label::EpochSecrets, &GroupId::from_slice(b"room"))
        };
        let assert_zeroized = |dropped: &[Vec<u8>]| {
            for bytes in dropped {
                assert!(bytes.iter().all(|&b| b == 0), "dropped unzeroized");
            }
        };
        let (mut alice, _bob, _) = pair();
        let old = epoch_secrets(&alice).expect("stored");
        witness::take();

        alice.update().expect("update");
        alice.confirm_commit().expect("accepted");
        let new = epoch_secrets(&alice).expect("stored");
        assert_ne!(new, old);
        // The old epoch's secrets were overwritten: their buffer, among others, was
        // zeroized as it was dropped.
        let dropped = witness::take();
        assert!(dropped.iter().any(|bytes| bytes.len() == old.len()));
        assert_zeroized(&dropped);

        let entries = stored_entries(&alice);
        alice.forget_group();
        let dropped = witness::take();
        assert_eq!(dropped.len(), entries - stored_entries(&alice));
        assert!(dropped.iter().any(|bytes| bytes.len() == new.len()));
        assert_zeroized(&dropped);
    }

    #[test]
    fn a_member_creates_a_group_again_under_the_id_of_one_it_forgot() {
        let mut alice = MlsMember::new("alice").expect("member");
        let empty = stored_entries(&alice);
        let first = alice.create_group(b"room").expect("group");
        assert!(stores_group(&alice, b"room"));
        alice.update().expect("update");
        alice.confirm_commit().expect("accepted");
        alice.forget_group();
        assert!(!stores_group(&alice, b"room"));
        assert_eq!(stored_entries(&alice), empty);

        let second = alice.create_group(b"room").expect("a group again");
        assert_eq!(alice.epoch(), Some(0));
        assert!(alice.holds_state_of(&second));
        assert!(!alice.holds_state_of(&first));
        // Another member joins the new group: it works as any group.
        let mut bob = MlsMember::new("bob").expect("member");
        let commit = bob.join_external(&second).expect("joins");
        bob.confirm_commit().expect("accepted");
        alice.handle_commit(&commit.commit).expect("applies");
        assert!(alice.holds_state_of(&commit.group_info));
    }

    #[test]
    fn a_removed_member_that_forgets_its_group_creates_one_under_its_id() {
        let (mut alice, mut bob, _) = pair();
        let empty = stored_entries(&MlsMember::new("carol").expect("member"));
        let removal = alice
            .remove(&[bob.leaf_index().expect("leaf")])
            .expect("remove");
        alice.confirm_commit().expect("accepted");
        bob.handle_commit(&removal.commit).expect("applies");
        assert!(!bob.in_group());
        bob.forget_group();
        assert!(!stores_group(&bob, b"room"));
        assert_eq!(stored_entries(&bob), empty);
        let info = bob.create_group(b"room").expect("a group again");
        assert!(bob.holds_state_of(&info));
    }

    #[test]
    fn a_member_that_forgot_its_group_joins_another_under_the_same_id_by_external_commit() {
        // Bob joined Alice's group by external commit and moved it on an epoch.
        let (mut alice, mut bob, _) = pair();
        let update = moved_on_by(&mut bob, &mut alice);
        let empty = stored_entries(&MlsMember::new("dave").expect("member"));
        bob.forget_group();
        assert!(!stores_group(&bob, b"room"));
        assert_eq!(stored_entries(&bob), empty);

        // Carol created the room's group anew (a relay that lost the room's state).
        let mut carol = MlsMember::new("carol").expect("member");
        joins_anew(&mut bob, &mut carol);
        assert!(!bob.holds_state_of(&update.group_info));
        let users: Vec<String> = carol.members().into_iter().map(|m| m.user).collect();
        assert_eq!(users, ["carol", "bob"]);
    }

    #[test]
    fn a_member_joining_another_group_under_its_groups_id_keeps_nothing_of_the_old_one() {
        // Bob holds Alice's group at epoch 2 and joins Carol's group of the same id at
        // epoch 1 without forgetting first (a resume shown another group): once he
        // forgets that one too, his storage holds no state of either.
        let (mut alice, mut bob, _) = pair();
        moved_on_by(&mut bob, &mut alice);
        let empty = stored_entries(&MlsMember::new("dave").expect("member"));
        let mut carol = MlsMember::new("carol").expect("member");
        joins_anew(&mut bob, &mut carol);
        bob.forget_group();
        assert_eq!(stored_entries(&bob), empty);
    }

    #[test]
    fn an_external_join_dropped_before_the_relay_answers_leaves_no_state() {
        // The relay refused the join (it lost the room): the member forgets it, or
        // discards it, and can create the room's group itself.
        let mut alice = MlsMember::new("alice").expect("member");
        let info = alice.create_group(b"room").expect("group");
        for forget in [true, false] {
            let mut bob = MlsMember::new("bob").expect("member");
            let empty = stored_entries(&bob);
            bob.join_external(&info).expect("joins");
            assert!(bob.has_pending_commit());
            if forget {
                bob.forget_group();
            } else {
                bob.discard_commit();
            }
            assert!(!bob.has_pending_commit());
            assert!(!stores_group(&bob, b"room"));
            assert_eq!(stored_entries(&bob), empty);
            let own = bob.create_group(b"room").expect("a group of its own");
            assert!(bob.holds_state_of(&own));
        }
    }

    #[test]
    fn a_member_joins_by_welcome_a_group_under_the_id_of_one_it_holds() {
        let mut bob = MlsMember::new("bob").expect("member");
        let empty = stored_entries(&bob);
        let old = bob.create_group(b"room").expect("group");
        let mut carol = MlsMember::new("carol").expect("member");
        carol.create_group(b"room").expect("group");
        let package = bob.key_package().expect("key package");
        let (_, welcome) = carol.add(&[package]).expect("add");
        carol.confirm_commit().expect("accepted");
        bob.join_welcome(&welcome).expect("joins");
        assert!(bob.holds_state_of(&carol.group_info().expect("info")));
        assert!(!bob.holds_state_of(&old));
        bob.forget_group();
        assert_eq!(stored_entries(&bob), empty);
    }
}
