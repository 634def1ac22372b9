//! Criterion bench of the relay's fan-out hot path without I/O: one received frame decoded,
//! decided by the room core ([`RelayCore::handle_frame`]: membership, sender check, size,
//! grant, track, rate limits, subscriptions) and its `Bytes` cloned into the queue of every
//! receiver, for rooms of 1, 10, 100 and 1000 receivers.
//!
//! The throughput is counted in delivered frames, so criterion's "elements per second" is the
//! inverse of the time per delivered frame. The baseline in the same run clones the same
//! `Bytes` into the same queues with no decision at all (what a bare forwarder pays), so the
//! figure to quote is the ratio of the two.
//!
//! Before criterion starts, the bench counts heap allocations per frame and per delivered
//! frame with a counting global allocator and prints them.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealroom_frame::control::JoinOptions;
use sealroom_frame::envelope::{Envelope, Flags, Frame, FrameRef, MediaKind};
use sealroom_relay::{AppConfig, ConnId, Grants, Limits, Now, RelayCore, TicketClaims, mint};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// The bench is the driver here: it reads the clocks and hands the time to the core.
fn bench_now() -> Now {
    Now {
        instant: std::time::Instant::now(),
        unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Receivers per room.
const FAN_OUT: [usize; 4] = [1, 10, 100, 1000];

/// Payload of one 20 ms audio frame (the `audio` shape of `sealroom-load`).
const PAYLOAD_LEN: usize = 160;

/// Frames each receiver's queue holds before the oldest is dropped (the relay's default
/// datagram queue length).
const QUEUE_LEN: usize = 64;

const APP: &str = "bench";
const KID: &str = "k1";
const SECRET: &[u8] = b"bench-ticket-secret-0123456789";

/// A room with one publisher (connection 0) and `receivers` subscribers, as the core sees it.
struct Room {
    core: RelayCore,
    publisher: ConnId,
    frame: Bytes,
    /// One queue per connection, indexed by connection id.
    queues: Vec<VecDeque<Bytes>>,
}

impl Room {
    fn new(receivers: usize) -> Self {
        let limits = Limits {
            max_members_per_room: receivers + 1,
            max_connections: receivers + 1,
            ..Limits::default().unlimited_rates()
        };
        let start = bench_now();
        let mut core = RelayCore::new(&[AppConfig::new(APP, KID, SECRET)], limits, start.instant);
        let options = JoinOptions {
            auto_subscribe: true,
            room: None,
        };
        for i in 0..=receivers {
            let conn = ConnId(i as u64);
            let claims = TicketClaims::new(
                APP,
                format!("user-{i}"),
                "room",
                start.unix_secs,
                3600,
                Grants::all(),
            );
            let ticket = mint(&claims, KID, SECRET).expect("bench ticket mints");
            core.handle_connect(conn, start);
            core.handle_join(conn, &ticket, &options, start);
        }
        while core.poll_output().is_some() {}
        let publisher = ConnId(0);
        let (_, member) = core.membership(publisher).expect("the publisher joined");
        let frame = Frame {
            envelope: Envelope {
                kind: MediaKind::Audio,
                flags: Flags::empty(),
                sender: member,
                track: 1,
                group: 0,
                seq: 0,
                timestamp_us: 0,
            },
            payload: Bytes::from(vec![0x5a; PAYLOAD_LEN]),
        };
        let mut wire = Vec::with_capacity(frame.encoded_len());
        frame.encode(&mut wire).expect("bench frame encodes");
        let mut room = Self {
            core,
            publisher,
            frame: Bytes::from(wire),
            queues: (0..=receivers)
                .map(|_| VecDeque::with_capacity(QUEUE_LEN))
                .collect(),
        };
        // The first frame publishes the track implicitly (a one-off broadcast); leave it
        // out of the measurement.
        assert_eq!(room.forward(), receivers);
        while room.core.poll_output().is_some() {}
        room
    }

    /// The relay's path for one frame: decode, decide, queue a clone to each receiver.
    fn forward(&mut self) -> usize {
        let bytes = self.frame.clone();
        let Ok(frame) = FrameRef::decode(&bytes) else {
            return 0;
        };
        let Ok(receivers) =
            self.core
                .handle_frame(self.publisher, &frame.envelope, bytes.len(), bench_now())
        else {
            return 0;
        };
        for receiver in receivers {
            if let Some(queue) = usize::try_from(receiver.0)
                .ok()
                .and_then(|i| self.queues.get_mut(i))
            {
                deliver(queue, &bytes);
            }
        }
        receivers.len()
    }

    /// The baseline: the same clones into the same queues, no decision.
    fn bare(&mut self) -> usize {
        let bytes = self.frame.clone();
        for queue in self.queues.iter_mut().skip(1) {
            deliver(queue, &bytes);
        }
        self.queues.len() - 1
    }
}

fn deliver(queue: &mut VecDeque<Bytes>, bytes: &Bytes) {
    if queue.len() >= QUEUE_LEN {
        queue.pop_front();
    }
    queue.push_back(bytes.clone());
}

fn print_allocations() {
    println!("allocations per forwarded frame (room core, {PAYLOAD_LEN} B audio payload):");
    for receivers in FAN_OUT {
        let mut room = Room::new(receivers);
        // Fill the queues first so the measurement sees the steady state.
        for _ in 0..QUEUE_LEN {
            room.forward();
        }
        let frames = 10_000;
        let region = Region::new(GLOBAL);
        let mut delivered = 0;
        for _ in 0..frames {
            delivered += room.forward();
        }
        let stats = region.change();
        println!(
            "  receivers {receivers:>4}: {:.3} allocations per frame, {:.5} per delivered frame ({} bytes allocated in total)",
            stats.allocations as f64 / frames as f64,
            stats.allocations as f64 / delivered.max(1) as f64,
            stats.bytes_allocated,
        );
    }
}

fn fan_out(c: &mut Criterion) {
    print_allocations();
    let mut group = c.benchmark_group("room_fan_out");
    for receivers in FAN_OUT {
        group.throughput(Throughput::Elements(receivers as u64));
        let mut room = Room::new(receivers);
        group.bench_function(BenchmarkId::new("core", receivers), |b| {
            b.iter(|| black_box(room.forward()));
        });
        group.bench_function(BenchmarkId::new("bare_clone_baseline", receivers), |b| {
            b.iter(|| black_box(room.bare()));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Short enough for a shared 2-core machine; raise with --measurement-time when quiet.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = fan_out
}
criterion_main!(benches);
