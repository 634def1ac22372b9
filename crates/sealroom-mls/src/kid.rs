//! The KID layout of RFC 9605 section 5.2: the epoch's low bits, the sender's leaf index
//! and a context id the sender chooses, packed into the 64-bit SFrame KID.
//!
//! ```text
//!  64 - S - E bits     S = 16 bits     E = 4 bits
//! +-----------------+----------------+------------+
//! |   context id    |   leaf index   |   epoch    |
//! +-----------------+----------------+------------+
//! ```
//!
//! `KID = (context << (S + E)) | (leaf << E) | (epoch mod 2^E)`. Four epoch bits are the
//! same split the room-secret mode uses, so a receiver tells the current, previous and
//! next epoch apart the same way in both modes. Sixteen leaf bits allow 65,536 leaves.
//! A sender uses a different context id for each of its sending sessions (tracks) in one
//! epoch, so no two of its sessions share a key.

/// Bits of the KID that carry the epoch (modulo 16).
pub const EPOCH_BITS: u32 = 4;

/// Bits of the KID that carry the sender's leaf index.
pub const LEAF_BITS: u32 = 16;

/// Bits of the KID left for the context id.
pub const CONTEXT_BITS: u32 = 64 - LEAF_BITS - EPOCH_BITS;

/// Largest leaf index a KID can carry.
pub const MAX_LEAF: u32 = (1 << LEAF_BITS) - 1;

/// Largest context id a KID can carry.
pub const MAX_CONTEXT: u64 = (1 << CONTEXT_BITS) - 1;

const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const LEAF_MASK: u64 = (1 << LEAF_BITS) - 1;

/// A KID split into its three fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MlsKid {
    /// The sender's context id (its sending session in this epoch).
    pub context: u64,
    /// The sender's leaf index in the MLS tree.
    pub leaf: u32,
    /// The epoch modulo 2^[`EPOCH_BITS`].
    pub epoch_bits: u8,
}

impl MlsKid {
    /// The KID of `leaf`'s sending session `context` in `epoch`, or `None` when the leaf or
    /// the context do not fit their fields.
    pub fn new(epoch: u64, leaf: u32, context: u64) -> Option<Self> {
        if leaf > MAX_LEAF || context > MAX_CONTEXT {
            return None;
        }
        Some(Self {
            context,
            leaf,
            epoch_bits: u8::try_from(epoch & EPOCH_MASK).ok()?,
        })
    }

    /// The 64-bit KID.
    pub fn to_u64(self) -> u64 {
        (self.context << (LEAF_BITS + EPOCH_BITS))
            | (u64::from(self.leaf) << EPOCH_BITS)
            | u64::from(self.epoch_bits)
    }

    /// Split a 64-bit KID into its fields (every value is a valid layout).
    pub fn from_u64(kid: u64) -> Self {
        Self {
            context: kid >> (LEAF_BITS + EPOCH_BITS),
            // Masked to 16 and 4 bits, so the conversions cannot fail.
            leaf: u32::try_from((kid >> EPOCH_BITS) & LEAF_MASK).unwrap_or(0),
            epoch_bits: u8::try_from(kid & EPOCH_MASK).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_sit_where_rfc_9605_puts_them() {
        let kid = MlsKid::new(19, 7, 2).expect("fits");
        assert_eq!(kid.epoch_bits, 3);
        assert_eq!(kid.to_u64(), (2 << 20) | (7 << 4) | 3);
        assert_eq!(MlsKid::from_u64(kid.to_u64()), kid);
        // Context 0 and a small group give short KIDs on the wire.
        assert_eq!(MlsKid::new(1, 0, 0).map(MlsKid::to_u64), Some(1));
        let edge = MlsKid::new(u64::MAX, MAX_LEAF, MAX_CONTEXT).expect("fits");
        assert_eq!(edge.to_u64(), u64::MAX);
        assert_eq!(MlsKid::from_u64(u64::MAX), edge);
    }

    #[test]
    fn leaves_and_contexts_that_do_not_fit_are_refused() {
        assert_eq!(MlsKid::new(0, MAX_LEAF + 1, 0), None);
        assert_eq!(MlsKid::new(0, 0, MAX_CONTEXT + 1), None);
    }
}
