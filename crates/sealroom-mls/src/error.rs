//! Errors of the MLS key-management mode.

/// Why an MLS operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlsError {
    /// The member is not in a group yet: create one or join by external commit first.
    #[error("not in an mls group yet: create the group or join it first")]
    NoGroup,
    /// The bytes received are not an MLS message of the expected kind.
    #[error("malformed mls message: {0}")]
    Malformed(String),
    /// The message is not for this group or this epoch, or does not verify.
    #[error("mls message refused: {0}")]
    Refused(String),
    /// A commit is already waiting for the delivery service's answer.
    #[error("a commit is already pending: wait for the relay to accept or refuse it")]
    CommitPending,
    /// The user id does not fit a credential (empty or longer than 255 bytes).
    #[error("user id of {0} bytes cannot be a credential (1 to 255 bytes)")]
    BadUserId(usize),
    /// The relay sent a group info (in pieces) longer than this member accepts
    /// (`AgentConfig::max_group_info_len`): the member stays out of the group.
    #[error(
        "the group info from the relay exceeds {max} bytes: raise AgentConfig::max_group_info_len to join a group this large"
    )]
    GroupInfoTooLarge {
        /// The bound in force.
        max: usize,
    },
    /// The MLS library failed on its own (key generation, storage).
    #[error("mls library error: {0}")]
    Library(String),
}

impl MlsError {
    pub(crate) fn library(err: impl std::fmt::Debug) -> Self {
        Self::Library(format!("{err:?}"))
    }

    pub(crate) fn refused(err: impl std::fmt::Debug) -> Self {
        Self::Refused(format!("{err:?}"))
    }
}
