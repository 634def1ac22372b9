//! What each C function does, in safe Rust over slices: the `ffi` module only turns C
//! pointers into these slices and handles, and results back into status codes.

use sealroom_crypto::{
    CipherSuite, FrameBuffer, KeyContext, KeySchedule, Opened, Opener, OpenerConfig,
    ROOM_SECRET_LEN, RoomSecret, Sealer, SframeHeader, SliceBuffer, kid_epoch_bits, kid_session,
};

use crate::status::SealroomStatus;
use crate::{SealroomOpened, SealroomOpenerConfig};

pub(crate) type Result<T> = std::result::Result<T, SealroomStatus>;

pub(crate) fn suite(id: u16) -> Result<CipherSuite> {
    CipherSuite::from_id(id).ok_or(SealroomStatus::UnknownSuite)
}

pub(crate) fn schedule(secret: &[u8], suite_id: u16) -> Result<KeySchedule> {
    let suite = suite(suite_id)?;
    let bytes: [u8; ROOM_SECRET_LEN] = secret
        .try_into()
        .map_err(|_| SealroomStatus::InvalidArgument)?;
    Ok(KeySchedule::new(&RoomSecret::from_bytes(bytes), suite))
}

pub(crate) fn opener(
    schedule: &KeySchedule,
    epoch: u64,
    config: Option<&SealroomOpenerConfig>,
) -> Opener {
    let mut settings = OpenerConfig::default();
    if let Some(config) = config {
        if config.max_senders > 0 {
            settings = settings.max_senders(config.max_senders as usize);
        }
        if config.grace_ms > 0 {
            settings = settings.grace(std::time::Duration::from_millis(u64::from(config.grace_ms)));
        }
    }
    schedule.opener(epoch, settings)
}

/// Seal into `out` from its start; returns the SFrame length.
pub(crate) fn seal(
    sealer: &mut Sealer,
    metadata: &[u8],
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize> {
    if out.len() < sealer.sealed_len(plaintext.len()) {
        return Err(SealroomStatus::BufferTooSmall);
    }
    let mut buf = SliceBuffer::new(out, 0);
    let range = sealer.seal(metadata, plaintext, &mut buf)?;
    finish(&buf)?;
    Ok(range.end)
}

/// Seal `buf[at..at + len]` where it lies; returns where the SFrame starts and its length.
pub(crate) fn seal_in_place(
    sealer: &mut Sealer,
    metadata: &[u8],
    buf: &mut [u8],
    at: usize,
    len: usize,
) -> Result<(usize, usize)> {
    let end = at
        .checked_add(len)
        .filter(|&end| end <= buf.len())
        .ok_or(SealroomStatus::InvalidArgument)?;
    let header_len = sealer.header_len();
    if at < header_len {
        return Err(SealroomStatus::NoHeadroom);
    }
    let tag_len = sealer.sealed_len(len) - header_len - len;
    if buf.len() - end < tag_len {
        return Err(SealroomStatus::BufferTooSmall);
    }
    let mut slice = SliceBuffer::new(buf, end);
    let start = sealer.seal_in_place(metadata, &mut slice, at)?;
    finish(&slice)?;
    Ok((start, slice.len() - start))
}

/// The room `out` needs to open `sframe` into: its ciphertext and tag.
fn open_room(sframe: &[u8], out: &[u8]) -> Result<()> {
    let (_, header_len) = SframeHeader::decode(sframe).map_err(|_| SealroomStatus::Malformed)?;
    if out.len() < sframe.len() - header_len {
        return Err(SealroomStatus::BufferTooSmall);
    }
    Ok(())
}

pub(crate) fn open(
    opener: &mut Opener,
    metadata: &[u8],
    sframe: &[u8],
    out: &mut [u8],
) -> Result<SealroomOpened> {
    open_room(sframe, out)?;
    let mut buf = SliceBuffer::new(out, 0);
    let opened = opener.open(metadata, sframe, &mut buf)?;
    finish(&buf)?;
    Ok(opened.into())
}

pub(crate) fn open_in_place(
    opener: &mut Opener,
    metadata: &[u8],
    sframe: &mut [u8],
) -> Result<SealroomOpened> {
    Ok(opener.open_in_place(metadata, sframe)?.into())
}

pub(crate) fn context_seal(
    ctx: &KeyContext,
    ctr: u64,
    metadata: &[u8],
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize> {
    if out.len() < ctx.sealed_len(ctr, plaintext.len()) {
        return Err(SealroomStatus::BufferTooSmall);
    }
    let mut buf = SliceBuffer::new(out, 0);
    let range = ctx.seal(ctr, metadata, plaintext, &mut buf)?;
    finish(&buf)?;
    Ok(range.end)
}

pub(crate) fn context_open(
    ctx: &KeyContext,
    metadata: &[u8],
    sframe: &[u8],
    out: &mut [u8],
) -> Result<SealroomOpened> {
    open_room(sframe, out)?;
    let mut buf = SliceBuffer::new(out, 0);
    let (header, plaintext) = ctx.open(metadata, sframe, &mut buf)?;
    finish(&buf)?;
    Ok(rfc_opened(header, plaintext))
}

pub(crate) fn context_open_in_place(
    ctx: &KeyContext,
    metadata: &[u8],
    sframe: &mut [u8],
) -> Result<SealroomOpened> {
    let (header, plaintext) = ctx.open_in_place(metadata, sframe)?;
    Ok(rfc_opened(header, plaintext))
}

fn rfc_opened(header: SframeHeader, plaintext: std::ops::Range<usize>) -> SealroomOpened {
    SealroomOpened {
        kid: header.kid,
        epoch: kid_epoch_bits(header.kid),
        session: kid_session(header.kid),
        ctr: header.ctr,
        plaintext_at: plaintext.start,
        plaintext_len: plaintext.len(),
    }
}

/// The capacity checks above make an overflow impossible; if one happened anyway the
/// output is cut short, so report a bug rather than a wrong length.
fn finish(buf: &SliceBuffer<'_>) -> Result<()> {
    if buf.overflowed() {
        return Err(SealroomStatus::Internal);
    }
    Ok(())
}

impl From<Opened> for SealroomOpened {
    fn from(opened: Opened) -> Self {
        Self {
            kid: opened.kid,
            epoch: opened.epoch,
            session: opened.session,
            ctr: opened.ctr,
            plaintext_at: opened.plaintext.start,
            plaintext_len: opened.plaintext.len(),
        }
    }
}
