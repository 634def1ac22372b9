//! Real codec payloads without a browser: Debian's ffmpeg encodes a test pattern as VP8
//! (IVF) and a tone as Opus (Ogg); these read the frames and packets back out.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Whether the tests must fail rather than skip when a tool is missing.
pub(crate) fn strict() -> bool {
    std::env::var("SEALROOM_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Whether `tool` runs; with SEALROOM_TEST_STRICT=1 a missing tool is an error.
pub(crate) fn have(tool: &str) -> anyhow::Result<bool> {
    let found = Command::new(tool).arg("-version").output().is_ok();
    if !found && strict() {
        bail!("{tool} is missing: apt-get install -y ffmpeg");
    }
    if !found {
        eprintln!("skipped: {tool} is missing (apt-get install -y ffmpeg)");
    }
    Ok(found)
}

/// VP8 frames of a `width`x`height` test pattern, `frames` long, a keyframe every `gop`:
/// (payload, keyframe).
pub(crate) fn vp8_frames(
    dir: &Path,
    width: u16,
    height: u16,
    frames: u32,
    gop: u32,
) -> anyhow::Result<Vec<(Vec<u8>, bool)>> {
    let path = dir.join("source.ivf");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=30"))
        .args([
            "-frames:v",
            &frames.to_string(),
            "-c:v",
            "libvpx",
            "-b:v",
            "300k",
        ])
        .args(["-g", &gop.to_string(), "-auto-alt-ref", "0", "-f", "ivf"])
        .arg(&path)
        .status()
        .context("run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not encode VP8 ({status})");
    }
    let data = std::fs::read(&path)?;
    let mut at = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut out = Vec::new();
    while at + 12 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into()?) as usize;
        let frame = data
            .get(at + 12..at + 12 + len)
            .context("ivf frame")?
            .to_vec();
        let keyframe = frame.first().is_some_and(|b| b & 1 == 0);
        out.push((frame, keyframe));
        at += 12 + len;
    }
    Ok(out)
}

/// Opus packets of a one-second tone (20 ms each), without the Ogg headers.
pub(crate) fn opus_packets(dir: &Path, packets: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    let path = dir.join("source.ogg");
    let seconds = f64::from(packets) * 0.02;
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args([
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-frame_duration",
            "20",
            "-ac",
            "1",
        ])
        .arg(&path)
        .status()
        .context("run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not encode Opus ({status})");
    }
    let packets = ogg_packets(&std::fs::read(&path)?)?;
    // The first two are OpusHead and OpusTags.
    Ok(packets.into_iter().skip(2).collect())
}

/// Every packet of an Ogg stream.
pub(crate) fn ogg_packets(data: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() {
        if &data[at..at + 4] != b"OggS" {
            bail!("not an ogg page at {at}");
        }
        let segments = usize::from(data[at + 26]);
        let lacing = data.get(at + 27..at + 27 + segments).context("lacing")?;
        let mut body = at + 27 + segments;
        for &len in lacing {
            let len = usize::from(len);
            current.extend_from_slice(data.get(body..body + len).context("segment")?);
            body += len;
            if len < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    Ok(packets)
}

/// The first stream of `kind` (`v` or `a`) in a media file, as ffprobe reads it with
/// `count` (`-count_frames` or `-count_packets`), with the `entries` asked for.
fn ffprobe_stream(
    path: &Path,
    kind: &str,
    count: &str,
    entries: &str,
) -> anyhow::Result<serde_json::Value> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            count,
            "-select_streams",
            &format!("{kind}:0"),
        ])
        .args(["-show_entries", &format!("stream={entries}"), "-of", "json"])
        .arg(path)
        .output()
        .context("run ffprobe")?;
    if !output.status.success() {
        bail!(
            "ffprobe refused {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(json["streams"][0].take())
}

/// (frames, width, height) of a video file as ffprobe reads it.
pub(crate) fn ffprobe_video(path: &Path) -> anyhow::Result<(u64, u32, u32)> {
    let stream = ffprobe_stream(path, "v", "-count_frames", "nb_read_frames,width,height")?;
    let frames = stream["nb_read_frames"]
        .as_str()
        .context("frame count")?
        .parse()?;
    let width = stream["width"].as_u64().context("width")?;
    let height = stream["height"].as_u64().context("height")?;
    Ok((frames, u32::try_from(width)?, u32::try_from(height)?))
}

/// (packets, codec name) of an audio file as ffprobe reads it.
pub(crate) fn ffprobe_audio(path: &Path) -> anyhow::Result<(u64, String)> {
    let stream = ffprobe_stream(path, "a", "-count_packets", "nb_read_packets,codec_name")?;
    let packets = stream["nb_read_packets"]
        .as_str()
        .context("packet count")?
        .parse()?;
    Ok((
        packets,
        stream["codec_name"].as_str().unwrap_or("").to_owned(),
    ))
}
