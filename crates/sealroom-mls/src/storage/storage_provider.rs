//! openmls's `StorageProvider` contract on [`ZeroizingStorage`]: each method names the
//! kind of entry and its id, and one of the helpers does the rest.

use openmls_traits::storage::{CURRENT_VERSION as V, StorageProvider, traits as t};

use super::{Label, StorageError, ZeroizingStorage};

/// The id of a queued proposal: its group and its reference.
fn proposal_id<'a, G, R>(group_id: &'a G, proposal_ref: &'a R) -> (&'a G, &'a R) {
    (group_id, proposal_ref)
}

/// The id of the HPKE key pairs of an epoch: group, epoch and this member's leaf.
fn epoch_key_pairs_id<'a, G, E>(group_id: &'a G, epoch: &'a E, leaf: u32) -> (&'a G, &'a E, u32) {
    (group_id, epoch, leaf)
}

impl StorageProvider<V> for ZeroizingStorage {
    type Error = StorageError;

    // Group state: writers.

    fn write_mls_join_config<G: t::GroupId<V>, C: t::MlsGroupJoinConfig<V>>(
        &self,
        group_id: &G,
        config: &C,
    ) -> Result<(), StorageError> {
        self.write(Label::JoinConfig, group_id, config)
    }

    fn append_own_leaf_node<G: t::GroupId<V>, L: t::LeafNode<V>>(
        &self,
        group_id: &G,
        leaf_node: &L,
    ) -> Result<(), StorageError> {
        self.append(Label::OwnLeafNodes, group_id, leaf_node)
    }

    fn queue_proposal<G: t::GroupId<V>, R: t::ProposalRef<V>, P: t::QueuedProposal<V>>(
        &self,
        group_id: &G,
        proposal_ref: &R,
        proposal: &P,
    ) -> Result<(), StorageError> {
        let id = proposal_id(group_id, proposal_ref);
        self.write(Label::QueuedProposal, &id, proposal)?;
        self.append(Label::ProposalQueueRefs, group_id, proposal_ref)
    }

    fn write_tree<G: t::GroupId<V>, T: t::TreeSync<V>>(
        &self,
        group_id: &G,
        tree: &T,
    ) -> Result<(), StorageError> {
        self.write(Label::Tree, group_id, tree)
    }

    fn write_interim_transcript_hash<G: t::GroupId<V>, H: t::InterimTranscriptHash<V>>(
        &self,
        group_id: &G,
        hash: &H,
    ) -> Result<(), StorageError> {
        self.write(Label::InterimTranscriptHash, group_id, hash)
    }

    fn write_context<G: t::GroupId<V>, C: t::GroupContext<V>>(
        &self,
        group_id: &G,
        context: &C,
    ) -> Result<(), StorageError> {
        self.write(Label::Context, group_id, context)
    }

    fn write_confirmation_tag<G: t::GroupId<V>, T: t::ConfirmationTag<V>>(
        &self,
        group_id: &G,
        tag: &T,
    ) -> Result<(), StorageError> {
        self.write(Label::ConfirmationTag, group_id, tag)
    }

    fn write_group_state<S: t::GroupState<V>, G: t::GroupId<V>>(
        &self,
        group_id: &G,
        state: &S,
    ) -> Result<(), StorageError> {
        self.write(Label::GroupState, group_id, state)
    }

    fn write_message_secrets<G: t::GroupId<V>, S: t::MessageSecrets<V>>(
        &self,
        group_id: &G,
        secrets: &S,
    ) -> Result<(), StorageError> {
        self.write(Label::MessageSecrets, group_id, secrets)
    }

    fn write_resumption_psk_store<G: t::GroupId<V>, S: t::ResumptionPskStore<V>>(
        &self,
        group_id: &G,
        store: &S,
    ) -> Result<(), StorageError> {
        self.write(Label::ResumptionPskStore, group_id, store)
    }

    fn write_own_leaf_index<G: t::GroupId<V>, I: t::LeafNodeIndex<V>>(
        &self,
        group_id: &G,
        index: &I,
    ) -> Result<(), StorageError> {
        self.write(Label::OwnLeafIndex, group_id, index)
    }

    fn write_group_epoch_secrets<G: t::GroupId<V>, S: t::GroupEpochSecrets<V>>(
        &self,
        group_id: &G,
        secrets: &S,
    ) -> Result<(), StorageError> {
        self.write(Label::EpochSecrets, group_id, secrets)
    }

    // Crypto objects: writers.

    fn write_signature_key_pair<K: t::SignaturePublicKey<V>, P: t::SignatureKeyPair<V>>(
        &self,
        public_key: &K,
        key_pair: &P,
    ) -> Result<(), StorageError> {
        self.write(Label::SignatureKeyPair, public_key, key_pair)
    }

    fn write_encryption_key_pair<K: t::EncryptionKey<V>, P: t::HpkeKeyPair<V>>(
        &self,
        public_key: &K,
        key_pair: &P,
    ) -> Result<(), StorageError> {
        self.write(Label::EncryptionKeyPair, public_key, key_pair)
    }

    fn write_encryption_epoch_key_pairs<
        G: t::GroupId<V>,
        E: t::EpochKey<V>,
        P: t::HpkeKeyPair<V>,
    >(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
        key_pairs: &[P],
    ) -> Result<(), StorageError> {
        let id = epoch_key_pairs_id(group_id, epoch, leaf_index);
        self.write(Label::EpochKeyPairs, &id, &key_pairs)
    }

    fn write_key_package<R: t::HashReference<V>, P: t::KeyPackage<V>>(
        &self,
        hash_ref: &R,
        key_package: &P,
    ) -> Result<(), StorageError> {
        self.write(Label::KeyPackage, hash_ref, key_package)
    }

    fn write_psk<I: t::PskId<V>, P: t::PskBundle<V>>(
        &self,
        psk_id: &I,
        psk: &P,
    ) -> Result<(), StorageError> {
        self.write(Label::Psk, psk_id, psk)
    }

    // Group state: readers.

    fn mls_group_join_config<G: t::GroupId<V>, C: t::MlsGroupJoinConfig<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<C>, StorageError> {
        self.read(Label::JoinConfig, group_id)
    }

    fn own_leaf_nodes<G: t::GroupId<V>, L: t::LeafNode<V>>(
        &self,
        group_id: &G,
    ) -> Result<Vec<L>, StorageError> {
        self.read_list(Label::OwnLeafNodes, group_id)
    }

    fn queued_proposal_refs<G: t::GroupId<V>, R: t::ProposalRef<V>>(
        &self,
        group_id: &G,
    ) -> Result<Vec<R>, StorageError> {
        self.read_list(Label::ProposalQueueRefs, group_id)
    }

    fn queued_proposals<G: t::GroupId<V>, R: t::ProposalRef<V>, P: t::QueuedProposal<V>>(
        &self,
        group_id: &G,
    ) -> Result<Vec<(R, P)>, StorageError> {
        let refs: Vec<R> = self.read_list(Label::ProposalQueueRefs, group_id)?;
        refs.into_iter()
            .map(|proposal_ref| {
                let id = proposal_id(group_id, &proposal_ref);
                let proposal = self
                    .read(Label::QueuedProposal, &id)?
                    .ok_or(StorageError::MissingProposal)?;
                Ok((proposal_ref, proposal))
            })
            .collect()
    }

    fn tree<G: t::GroupId<V>, T: t::TreeSync<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<T>, StorageError> {
        self.read(Label::Tree, group_id)
    }

    fn group_context<G: t::GroupId<V>, C: t::GroupContext<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<C>, StorageError> {
        self.read(Label::Context, group_id)
    }

    fn interim_transcript_hash<G: t::GroupId<V>, H: t::InterimTranscriptHash<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<H>, StorageError> {
        self.read(Label::InterimTranscriptHash, group_id)
    }

    fn confirmation_tag<G: t::GroupId<V>, T: t::ConfirmationTag<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<T>, StorageError> {
        self.read(Label::ConfirmationTag, group_id)
    }

    fn group_state<S: t::GroupState<V>, G: t::GroupId<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, StorageError> {
        self.read(Label::GroupState, group_id)
    }

    fn message_secrets<G: t::GroupId<V>, S: t::MessageSecrets<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, StorageError> {
        self.read(Label::MessageSecrets, group_id)
    }

    fn resumption_psk_store<G: t::GroupId<V>, S: t::ResumptionPskStore<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, StorageError> {
        self.read(Label::ResumptionPskStore, group_id)
    }

    fn own_leaf_index<G: t::GroupId<V>, I: t::LeafNodeIndex<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<I>, StorageError> {
        self.read(Label::OwnLeafIndex, group_id)
    }

    fn group_epoch_secrets<G: t::GroupId<V>, S: t::GroupEpochSecrets<V>>(
        &self,
        group_id: &G,
    ) -> Result<Option<S>, StorageError> {
        self.read(Label::EpochSecrets, group_id)
    }

    // Crypto objects: readers.

    fn signature_key_pair<K: t::SignaturePublicKey<V>, P: t::SignatureKeyPair<V>>(
        &self,
        public_key: &K,
    ) -> Result<Option<P>, StorageError> {
        self.read(Label::SignatureKeyPair, public_key)
    }

    fn encryption_key_pair<P: t::HpkeKeyPair<V>, K: t::EncryptionKey<V>>(
        &self,
        public_key: &K,
    ) -> Result<Option<P>, StorageError> {
        self.read(Label::EncryptionKeyPair, public_key)
    }

    fn encryption_epoch_key_pairs<G: t::GroupId<V>, E: t::EpochKey<V>, P: t::HpkeKeyPair<V>>(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
    ) -> Result<Vec<P>, StorageError> {
        let id = epoch_key_pairs_id(group_id, epoch, leaf_index);
        Ok(self.read(Label::EpochKeyPairs, &id)?.unwrap_or_default())
    }

    fn key_package<R: t::HashReference<V>, P: t::KeyPackage<V>>(
        &self,
        hash_ref: &R,
    ) -> Result<Option<P>, StorageError> {
        self.read(Label::KeyPackage, hash_ref)
    }

    fn psk<P: t::PskBundle<V>, I: t::PskId<V>>(
        &self,
        psk_id: &I,
    ) -> Result<Option<P>, StorageError> {
        self.read(Label::Psk, psk_id)
    }

    // Group state: deleters.

    fn remove_proposal<G: t::GroupId<V>, R: t::ProposalRef<V>>(
        &self,
        group_id: &G,
        proposal_ref: &R,
    ) -> Result<(), StorageError> {
        self.remove_item(Label::ProposalQueueRefs, group_id, proposal_ref)?;
        self.delete(Label::QueuedProposal, &proposal_id(group_id, proposal_ref))
    }

    fn delete_own_leaf_nodes<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete_list(Label::OwnLeafNodes, group_id)
    }

    fn delete_group_config<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::JoinConfig, group_id)
    }

    fn delete_tree<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::Tree, group_id)
    }

    fn delete_confirmation_tag<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::ConfirmationTag, group_id)
    }

    fn delete_group_state<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::GroupState, group_id)
    }

    fn delete_context<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::Context, group_id)
    }

    fn delete_interim_transcript_hash<G: t::GroupId<V>>(
        &self,
        group_id: &G,
    ) -> Result<(), StorageError> {
        self.delete(Label::InterimTranscriptHash, group_id)
    }

    fn delete_message_secrets<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::MessageSecrets, group_id)
    }

    fn delete_all_resumption_psk_secrets<G: t::GroupId<V>>(
        &self,
        group_id: &G,
    ) -> Result<(), StorageError> {
        self.delete(Label::ResumptionPskStore, group_id)
    }

    fn delete_own_leaf_index<G: t::GroupId<V>>(&self, group_id: &G) -> Result<(), StorageError> {
        self.delete(Label::OwnLeafIndex, group_id)
    }

    fn delete_group_epoch_secrets<G: t::GroupId<V>>(
        &self,
        group_id: &G,
    ) -> Result<(), StorageError> {
        self.delete(Label::EpochSecrets, group_id)
    }

    fn clear_proposal_queue<G: t::GroupId<V>, R: t::ProposalRef<V>>(
        &self,
        group_id: &G,
    ) -> Result<(), StorageError> {
        let refs: Vec<R> = self.read_list(Label::ProposalQueueRefs, group_id)?;
        for proposal_ref in &refs {
            self.delete(Label::QueuedProposal, &proposal_id(group_id, proposal_ref))?;
        }
        self.delete_list(Label::ProposalQueueRefs, group_id)
    }

    // Crypto objects: deleters.

    fn delete_signature_key_pair<K: t::SignaturePublicKey<V>>(
        &self,
        public_key: &K,
    ) -> Result<(), StorageError> {
        self.delete(Label::SignatureKeyPair, public_key)
    }

    fn delete_encryption_key_pair<K: t::EncryptionKey<V>>(
        &self,
        public_key: &K,
    ) -> Result<(), StorageError> {
        self.delete(Label::EncryptionKeyPair, public_key)
    }

    fn delete_encryption_epoch_key_pairs<G: t::GroupId<V>, E: t::EpochKey<V>>(
        &self,
        group_id: &G,
        epoch: &E,
        leaf_index: u32,
    ) -> Result<(), StorageError> {
        let id = epoch_key_pairs_id(group_id, epoch, leaf_index);
        self.delete(Label::EpochKeyPairs, &id)
    }

    fn delete_key_package<R: t::HashReference<V>>(&self, hash_ref: &R) -> Result<(), StorageError> {
        self.delete(Label::KeyPackage, hash_ref)
    }

    fn delete_psk<I: t::PskId<V>>(&self, psk_id: &I) -> Result<(), StorageError> {
        self.delete(Label::Psk, psk_id)
    }
}
