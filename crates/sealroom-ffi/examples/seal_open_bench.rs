//! The Rust side of the bindings' overhead figure (docs/PERFORMANCE.md): seal and open
//! one frame in a loop with the crypto crate directly, the same calls the Python bench
//! (`python/bench/bench.py`) makes through the bindings, with the same sizes and the same
//! copies into fresh buffers a binding call makes. Prints nanoseconds per seal+open.
//!
//! ```sh
//! cargo run --release -p sealroom-ffi --example seal_open_bench -- <frame bytes> <iterations>
//! ```

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use sealroom_crypto::{CipherSuite, KeySchedule, OpenerConfig, RoomSecret};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size: usize = args.first().context("frame bytes")?.parse()?;
    let iterations: u32 = args.get(1).context("iterations")?.parse()?;
    let schedule = KeySchedule::new(
        &RoomSecret::from_bytes([7; 32]),
        CipherSuite::Aes128GcmSha256,
    );
    let mut sealer = schedule.sealer(0);
    // Many senders' worth of window: every frame is new, as in the Python loop.
    let mut opener = schedule.opener(0, OpenerConfig::default());
    let metadata = [0u8; 28];
    let payload = vec![0x5a; size];
    let start = Instant::now();
    for _ in 0..iterations {
        let mut sealed = Vec::with_capacity(sealer.sealed_len(size));
        sealer.seal(&metadata, black_box(&payload), &mut sealed)?;
        let opened = opener.open_in_place(&metadata, &mut sealed)?;
        black_box(sealed[opened.plaintext].to_vec());
    }
    let elapsed = start.elapsed();
    println!("{:.0}", elapsed.as_nanos() as f64 / f64::from(iterations));
    Ok(())
}
