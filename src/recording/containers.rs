//! Containers for exported media: VP8 in IVF, Opus in Ogg (RFC 7845), and the checks that
//! tell a real codec payload from anything else.

use std::io::Write;

/// The width and height of a VP8 keyframe, when `payload` is one (RFC 6386 section 9.1:
/// a frame tag with the keyframe bit clear, the start code `9d 01 2a`, then 14-bit width
/// and height).
pub(crate) fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    if payload.len() < 10 || payload[0] & 0x01 != 0 || payload[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([payload[6], payload[7]]) & 0x3fff;
    let height = u16::from_le_bytes([payload[8], payload[9]]) & 0x3fff;
    (width > 0 && height > 0).then_some((width, height))
}

/// Writes a VP8 IVF file: a 32-byte header, then per frame its size, timestamp and bytes.
/// Timestamps are in milliseconds.
pub(crate) struct IvfWriter<W: Write> {
    out: W,
    frames: u32,
}

impl<W: Write> IvfWriter<W> {
    pub(crate) fn new(mut out: W, width: u16, height: u16) -> std::io::Result<Self> {
        let mut header = Vec::with_capacity(32);
        header.extend_from_slice(b"DKIF");
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&32u16.to_le_bytes());
        header.extend_from_slice(b"VP80");
        header.extend_from_slice(&width.to_le_bytes());
        header.extend_from_slice(&height.to_le_bytes());
        header.extend_from_slice(&1000u32.to_le_bytes()); // rate: milliseconds
        header.extend_from_slice(&1u32.to_le_bytes()); // scale
        header.extend_from_slice(&0u32.to_le_bytes()); // frame count, patched by readers that need it
        header.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out, frames: 0 })
    }

    pub(crate) fn frame(&mut self, timestamp_ms: u64, payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&timestamp_ms.to_le_bytes())?;
        self.out.write_all(payload)?;
        self.frames += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> std::io::Result<u32> {
        self.out.flush()?;
        Ok(self.frames)
    }
}

/// Samples at 48 kHz in an Opus packet (RFC 6716 section 3.1), or `None` when the packet
/// breaks the packet rules of section 3.4 that can be checked without decoding.
pub(crate) fn opus_packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let per_frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u64 = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    if frames == 0 || per_frame * frames > 5760 || packet.len() > 1275 * 48 {
        return None;
    }
    Some(per_frame * frames)
}

/// Writes Opus packets into an Ogg stream (RFC 7845): the `OpusHead` and `OpusTags`
/// pages, then one page per packet with its granule position.
pub(crate) struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    granule: u64,
    packets: u32,
    /// The last packet, held back so that its page can carry the end-of-stream flag.
    held: Option<(Vec<u8>, u64)>,
}

impl<W: Write> OggOpusWriter<W> {
    pub(crate) fn new(out: W, serial: u32, channels: u8) -> std::io::Result<Self> {
        let mut writer = Self {
            out,
            serial,
            sequence: 0,
            granule: 0,
            packets: 0,
            held: None,
        };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&312u16.to_le_bytes()); // pre-skip (typical encoder delay)
        head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family
        writer.page(&head, 0x02, 0)?;
        let vendor = b"sealroom";
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&u32::try_from(vendor.len()).unwrap_or(0).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        writer.page(&tags, 0x00, 0)?;
        Ok(writer)
    }

    pub(crate) fn packet(&mut self, packet: &[u8], samples: u64) -> std::io::Result<()> {
        self.granule += samples;
        self.packets += 1;
        if let Some((held, granule)) = self.held.replace((packet.to_vec(), self.granule)) {
            self.page(&held, 0x00, granule)?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> std::io::Result<u32> {
        // The last packet's page carries the end-of-stream flag.
        let (last, granule) = self.held.take().unwrap_or((Vec::new(), self.granule));
        self.page(&last, 0x04, granule)?;
        self.out.flush()?;
        Ok(self.packets)
    }

    fn page(&mut self, data: &[u8], flags: u8, granule: u64) -> std::io::Result<()> {
        let mut lacing = Vec::new();
        let mut rest = data.len();
        loop {
            let n = rest.min(255);
            lacing.push(u8::try_from(n).unwrap_or(255));
            rest -= n;
            if n < 255 {
                break;
            }
        }
        if lacing.len() > 255 {
            return Err(std::io::Error::other("packet too large for one ogg page"));
        }
        let mut page = Vec::with_capacity(27 + lacing.len() + data.len());
        page.extend_from_slice(b"OggS");
        page.push(0);
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&0u32.to_le_bytes()); // checksum, filled below
        page.push(u8::try_from(lacing.len()).unwrap_or(255));
        page.extend_from_slice(&lacing);
        page.extend_from_slice(data);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
        self.out.write_all(&page)
    }
}

/// The Ogg page checksum: CRC-32 with polynomial 0x04c11db7, no reflection, initial 0.
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_are_recognised_and_other_bytes_are_not() {
        // A 640x360 keyframe's first bytes: tag (keyframe, shown), start code, sizes.
        let key = [
            0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0x00,
        ];
        assert_eq!(vp8_keyframe_size(&key), Some((640, 360)));
        assert_eq!(vp8_keyframe_size(b"PLAINTEXT-MARKER"), None);
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(vp8_keyframe_size(&inter), None);
    }

    #[test]
    fn opus_durations_follow_the_toc() {
        assert_eq!(opus_packet_samples(&[0xfc, 0, 0]), Some(960)); // CELT FB 20 ms
        assert_eq!(opus_packet_samples(&[0x0b, 3, 0]), Some(2880)); // SILK 20 ms, 3 frames
        assert_eq!(opus_packet_samples(&[0x1b, 2]), Some(5760)); // SILK 60 ms, 2 frames
        assert_eq!(opus_packet_samples(&[0x1b, 3]), None); // 180 ms is over 120 ms
        assert_eq!(opus_packet_samples(&[]), None);
    }

    #[test]
    fn the_ogg_checksum_is_the_one_of_rfc_3533() {
        // CRC-32/POSIX's check value without its final inversion.
        assert_eq!(ogg_crc(b"123456789"), 0x89a1_897f);
    }
}
