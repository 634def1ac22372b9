use openmls::prelude::{GroupId, LeafNode, MlsGroupJoinConfig};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider};

use super::{Label, ZeroizingStorage, witness};
use crate::CIPHERSUITE;

/// A secret as openmls would store it, and what it serializes to.
fn secret(byte: u8) -> (Vec<u8>, usize) {
    let secret = vec![byte; 40];
    let len = serde_json::to_vec(&secret).expect("serializes").len();
    (secret, len)
}

/// Asserts that every buffer dropped since the last check is all zeros, and returns their
/// lengths.
fn dropped_zeroized() -> Vec<usize> {
    let dropped = witness::take();
    for bytes in &dropped {
        assert!(
            bytes.iter().all(|&b| b == 0),
            "dropped unzeroized: {bytes:?}"
        );
    }
    dropped.iter().map(Vec::len).collect()
}

#[test]
fn a_value_reads_back_as_last_written_and_is_gone_once_deleted() {
    let storage = ZeroizingStorage::default();
    let read = |label| storage.read::<Vec<u8>>(label, &"id").expect("reads");
    assert_eq!(read(Label::Psk), None);

    storage
        .write(Label::Psk, &"id", &vec![1u8, 2, 3])
        .expect("writes");
    assert_eq!(read(Label::Psk), Some(vec![1, 2, 3]));
    // Another kind of entry, or another id, is another entry.
    assert_eq!(read(Label::KeyPackage), None);
    assert_eq!(
        storage
            .read::<Vec<u8>>(Label::Psk, &"other")
            .expect("reads"),
        None
    );

    storage
        .write(Label::Psk, &"id", &vec![4u8, 5])
        .expect("overwrites");
    assert_eq!(read(Label::Psk), Some(vec![4, 5]));
    assert_eq!(storage.len(), 1);
    // A value of another type does not deserialize as one.
    assert!(storage.read::<String>(Label::Psk, &"id").is_err());

    storage.delete(Label::Psk, &"id").expect("deletes");
    assert_eq!(read(Label::Psk), None);
    assert!(storage.is_empty());
    storage
        .delete(Label::Psk, &"id")
        .expect("deleting nothing is fine");
}

#[test]
fn a_list_gives_its_items_in_order_and_loses_only_the_one_removed() {
    let storage = ZeroizingStorage::default();
    let list = || -> Vec<String> {
        storage
            .read_list(Label::OwnLeafNodes, &"group")
            .expect("reads")
    };
    assert!(list().is_empty());

    for item in ["a", "b", "c"] {
        storage
            .append(Label::OwnLeafNodes, &"group", &item)
            .expect("appends");
    }
    assert_eq!(list(), ["a", "b", "c"]);
    assert_eq!(storage.len(), 1);

    storage
        .remove_item(Label::OwnLeafNodes, &"group", &"b")
        .expect("removes");
    assert_eq!(list(), ["a", "c"]);
    storage
        .remove_item(Label::OwnLeafNodes, &"group", &"absent")
        .expect("removing what is not there is fine");
    storage
        .remove_item(Label::ProposalQueueRefs, &"group", &"a")
        .expect("removing from no list is fine");
    assert_eq!(list(), ["a", "c"]);

    // A list emptied item by item is deleted, as one deleted at once.
    storage
        .remove_item(Label::OwnLeafNodes, &"group", &"a")
        .expect("removes");
    storage
        .remove_item(Label::OwnLeafNodes, &"group", &"c")
        .expect("removes");
    assert!(list().is_empty());
    assert!(storage.is_empty());
    storage
        .append(Label::OwnLeafNodes, &"group", &"d")
        .expect("appends");
    storage
        .delete_list(Label::OwnLeafNodes, &"group")
        .expect("deletes");
    assert!(list().is_empty());
    assert!(storage.is_empty());
}

#[test]
fn an_overwritten_value_leaves_its_bytes_zeroized() {
    let storage = ZeroizingStorage::default();
    let (old, old_len) = secret(0xa5);
    storage
        .write(Label::EpochSecrets, &"group", &old)
        .expect("writes");
    assert_eq!(dropped_zeroized(), [0; 0], "writing drops nothing");

    let (new, _) = secret(0x5a);
    storage
        .write(Label::EpochSecrets, &"group", &new)
        .expect("overwrites");
    assert_eq!(dropped_zeroized(), [old_len]);
    assert_eq!(
        storage
            .read::<Vec<u8>>(Label::EpochSecrets, &"group")
            .expect("reads"),
        Some(new)
    );
}

#[test]
fn a_deleted_value_a_removed_item_and_a_dropped_storage_leave_their_bytes_zeroized() {
    let storage = ZeroizingStorage::default();
    let (value, value_len) = secret(1);
    storage
        .write(Label::EpochSecrets, &"group", &value)
        .expect("writes");
    storage
        .delete(Label::EpochSecrets, &"group")
        .expect("deletes");
    assert_eq!(dropped_zeroized(), [value_len]);

    let (first, first_len) = secret(2);
    let (second, second_len) = secret(33);
    assert_ne!(first_len, second_len);
    storage
        .append(Label::OwnLeafNodes, &"group", &first)
        .expect("appends");
    storage
        .append(Label::OwnLeafNodes, &"group", &second)
        .expect("appends");
    storage
        .remove_item(Label::OwnLeafNodes, &"group", &first)
        .expect("removes");
    // The item removed, and the copy of it that was compared with the list.
    assert_eq!(dropped_zeroized(), [first_len, first_len]);

    storage
        .write(Label::Tree, &"group", &value)
        .expect("writes");
    drop(storage);
    let mut dropped = dropped_zeroized();
    dropped.sort_unstable();
    assert_eq!(dropped, [value_len, second_len]);
}

#[test]
fn a_value_serializes_into_a_buffer_of_exactly_its_length() {
    let storage = ZeroizingStorage::default();
    let (value, len) = secret(7);
    storage.write(Label::Psk, &"id", &value).expect("writes");
    let stored = storage.stored_bytes(Label::Psk, &"id").expect("stored");
    assert_eq!(stored, serde_json::to_vec(&value).expect("serializes"));
    assert_eq!(stored.len(), len);
}

#[test]
fn openmls_entries_go_through_the_storage_provider_contract() {
    let storage = ZeroizingStorage::default();
    let group = GroupId::from_slice(b"room");

    // Missing entries: `None` for a value, empty for a list.
    let config: Option<MlsGroupJoinConfig> = storage.mls_group_join_config(&group).expect("reads");
    assert!(config.is_none());
    let leaves: Vec<LeafNode> = storage.own_leaf_nodes(&group).expect("reads");
    assert!(leaves.is_empty());

    storage
        .write_mls_join_config(&group, &MlsGroupJoinConfig::default())
        .expect("writes");
    let config: Option<MlsGroupJoinConfig> = storage.mls_group_join_config(&group).expect("reads");
    assert!(config.is_some());
    StorageProvider::<CURRENT_VERSION>::delete_group_config(&storage, &group).expect("deletes");
    assert!(storage.is_empty());

    // The signing key, as `MlsMember::new` stores it.
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key pair");
    signer.store(&storage).expect("stores");
    let read = SignatureKeyPair::read(&storage, signer.public(), signer.signature_scheme())
        .expect("reads back");
    assert_eq!(
        serde_json::to_vec(&read).expect("serializes"),
        serde_json::to_vec(&signer).expect("serializes")
    );
    witness::take();
    SignatureKeyPair::delete(&storage, signer.public(), signer.signature_scheme())
        .expect("deletes");
    assert!(SignatureKeyPair::read(&storage, signer.public(), signer.signature_scheme()).is_none());
    assert_eq!(dropped_zeroized().len(), 1);
    assert!(storage.is_empty());
}
