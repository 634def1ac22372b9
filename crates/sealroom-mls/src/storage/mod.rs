//! The storage openmls keeps a member's group state in, and the provider that hands it to
//! openmls with RustCrypto's crypto and randomness.
//!
//! openmls writes every piece of a group's state through the storage provider as a
//! serde-serialized value: epoch secrets, message secrets, the ratchet tree with this
//! member's path secrets, HPKE key pairs, key packages with their init keys. Each new epoch
//! overwrites most of them, and forgetting a group deletes them. [`ZeroizingStorage`] keeps
//! each value in one heap buffer of exactly its serialized length, written in place, and
//! zeroizes that buffer whenever the value leaves storage: deleted, overwritten, removed
//! from its list, or dropped with the storage. The in-memory storage of
//! `openmls_rust_crypto` drops those bytes as they are, so old epochs' secrets stayed in
//! freed memory.
//!
//! What this cannot reach: deserializing a value for openmls goes through openmls's own
//! serde impls, in which a byte string (a JSON array of numbers) is read into a `Vec` that
//! grows by reallocation; the smaller buffers it outgrows hold a prefix of the bytes and
//! are freed without zeroizing. The values openmls builds from them are its own, and
//! zeroize on drop or not as openmls decides.

use std::collections::HashMap;
use std::io;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroize;

mod storage_provider;
#[cfg(test)]
mod tests;

/// In tests, what the buffer of each value dropped on this thread held once zeroized (each
/// test runs on its own thread): a value that left storage unzeroized would show here with
/// its bytes, and one kept in anything but [`Stored`] would not show at all.
#[cfg(test)]
pub(crate) mod witness {
    use std::cell::RefCell;

    thread_local! {
        static DROPPED: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(bytes: &[u8]) {
        let _ = DROPPED.try_with(|dropped| dropped.borrow_mut().push(bytes.to_vec()));
    }

    /// The buffers dropped on this thread since the last call.
    pub(crate) fn take() -> Vec<Vec<u8>> {
        DROPPED.with(RefCell::take)
    }
}

/// The openmls provider of every [`crate::MlsMember`]: RustCrypto for crypto and
/// randomness (as `openmls_rust_crypto` bundles it), with [`ZeroizingStorage`].
#[derive(Debug, Default)]
pub(crate) struct MlsProvider {
    crypto: RustCrypto,
    storage: ZeroizingStorage,
}

impl OpenMlsProvider for MlsProvider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = ZeroizingStorage;

    fn storage(&self) -> &ZeroizingStorage {
        &self.storage
    }

    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }

    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

/// In-memory storage for openmls whose values are zeroized when they leave it (see the
/// module docs).
#[derive(Default)]
pub(crate) struct ZeroizingStorage {
    tables: RwLock<Tables>,
}

impl std::fmt::Debug for ZeroizingStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroizingStorage")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

/// The entries: single values, and lists that openmls appends items to and removes items
/// from one at a time.
#[derive(Default)]
struct Tables {
    values: HashMap<Key, Stored>,
    lists: HashMap<Key, Vec<Stored>>,
}

/// What an entry is stored under: the kind of value and the serialized id (a group id, a
/// public key, a hash reference...). Ids are not secret, so they are not zeroized.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    label: Label,
    id: Vec<u8>,
}

/// The kinds of entries, one per kind of value openmls stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Label {
    JoinConfig,
    OwnLeafNodes,
    QueuedProposal,
    ProposalQueueRefs,
    Tree,
    InterimTranscriptHash,
    Context,
    ConfirmationTag,
    GroupState,
    MessageSecrets,
    ResumptionPskStore,
    OwnLeafIndex,
    EpochSecrets,
    SignatureKeyPair,
    EncryptionKeyPair,
    EpochKeyPairs,
    KeyPackage,
    Psk,
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    /// A value or id did not serialize, or a stored value did not deserialize as the type
    /// asked for.
    #[error("mls storage codec: {0}")]
    Codec(#[from] serde_json::Error),
    /// A value serialized to fewer bytes the second time than the first (the length is
    /// measured before the buffer is allocated).
    #[error("a value serialized to different lengths")]
    Unstable,
    /// The proposal queue names a proposal that is not stored.
    #[error("a queued proposal is missing from storage")]
    MissingProposal,
}

/// One serialized value, in a buffer of exactly its length that is never reallocated and
/// is zeroized on drop.
struct Stored(Box<[u8]>);

impl Stored {
    /// `value` serialized as JSON, written straight into its final buffer: its length is
    /// measured first, so no growing buffer leaves partial copies behind.
    fn encode(value: &impl Serialize) -> Result<Self, StorageError> {
        let mut length = Counter(0);
        serde_json::to_writer(&mut length, value)?;
        let mut stored = Self(vec![0; length.0].into_boxed_slice());
        let mut rest: &mut [u8] = &mut stored.0;
        // A longer second serialization fails here (the slice is full), a shorter one below;
        // either way `stored` is zeroized as it drops.
        serde_json::to_writer(&mut rest, value)?;
        if !rest.is_empty() {
            return Err(StorageError::Unstable);
        }
        Ok(stored)
    }

    /// The value, deserialized from the stored bytes in place.
    fn decode<V: DeserializeOwned>(&self) -> Result<V, StorageError> {
        Ok(serde_json::from_slice(&self.0)?)
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.0.zeroize();
        #[cfg(test)]
        witness::record(&self.0);
    }
}

/// A writer that only counts the bytes written to it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn key(label: Label, id: &impl Serialize) -> Result<Key, StorageError> {
    Ok(Key {
        label,
        id: serde_json::to_vec(id)?,
    })
}

impl ZeroizingStorage {
    /// How many entries are stored (a list counts as one).
    pub(crate) fn len(&self) -> usize {
        let tables = self.read_tables();
        tables.values.len() + tables.lists.len()
    }

    /// Whether nothing is stored.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the serialized value under `label` and `id`, for tests to compare.
    #[cfg(test)]
    pub(crate) fn stored_bytes(&self, label: Label, id: &impl Serialize) -> Option<Vec<u8>> {
        let key = key(label, id).ok()?;
        self.read_tables()
            .values
            .get(&key)
            .map(|stored| stored.0.to_vec())
    }

    // Every change to the tables is a single insert or remove, which leaves them whole even
    // if a thread panicked holding the lock: a poisoned lock is used as it is.
    fn read_tables(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_tables(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Store `value` under `label` and `id`; a value stored there before is zeroized.
    fn write(
        &self,
        label: Label,
        id: &impl Serialize,
        value: &impl Serialize,
    ) -> Result<(), StorageError> {
        let key = key(label, id)?;
        let value = Stored::encode(value)?;
        self.write_tables().values.insert(key, value);
        Ok(())
    }

    /// The value stored under `label` and `id`, if any.
    fn read<V: DeserializeOwned>(
        &self,
        label: Label,
        id: &impl Serialize,
    ) -> Result<Option<V>, StorageError> {
        let key = key(label, id)?;
        self.read_tables()
            .values
            .get(&key)
            .map(Stored::decode)
            .transpose()
    }

    /// Delete (and zeroize) the value under `label` and `id`, if any.
    fn delete(&self, label: Label, id: &impl Serialize) -> Result<(), StorageError> {
        let key = key(label, id)?;
        self.write_tables().values.remove(&key);
        Ok(())
    }

    /// Append `item` to the list under `label` and `id`, starting the list if there is none.
    fn append(
        &self,
        label: Label,
        id: &impl Serialize,
        item: &impl Serialize,
    ) -> Result<(), StorageError> {
        let key = key(label, id)?;
        let item = Stored::encode(item)?;
        self.write_tables().lists.entry(key).or_default().push(item);
        Ok(())
    }

    /// Remove (and zeroize) the first item of the list under `label` and `id` that
    /// serializes as `item` does, if any; a list left empty is deleted.
    fn remove_item(
        &self,
        label: Label,
        id: &impl Serialize,
        item: &impl Serialize,
    ) -> Result<(), StorageError> {
        let key = key(label, id)?;
        let item = Stored::encode(item)?;
        let mut tables = self.write_tables();
        let Some(list) = tables.lists.get_mut(&key) else {
            return Ok(());
        };
        if let Some(at) = list.iter().position(|stored| stored.0 == item.0) {
            list.remove(at);
        }
        if list.is_empty() {
            tables.lists.remove(&key);
        }
        Ok(())
    }

    /// The items of the list under `label` and `id`, in the order they were appended;
    /// empty if there is no list.
    fn read_list<V: DeserializeOwned>(
        &self,
        label: Label,
        id: &impl Serialize,
    ) -> Result<Vec<V>, StorageError> {
        let key = key(label, id)?;
        self.read_tables()
            .lists
            .get(&key)
            .map_or(Ok(Vec::new()), |list| {
                list.iter().map(Stored::decode).collect()
            })
    }

    /// Delete (and zeroize) the list under `label` and `id`, if any.
    fn delete_list(&self, label: Label, id: &impl Serialize) -> Result<(), StorageError> {
        let key = key(label, id)?;
        self.write_tables().lists.remove(&key);
        Ok(())
    }
}
