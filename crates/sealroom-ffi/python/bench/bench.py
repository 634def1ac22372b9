"""Figures of the Python bindings for docs/PERFORMANCE.md, measured in one run:

1. seal + open of a 1200-byte frame through the bindings (Python) against the same calls
   in Rust (examples/seal_open_bench.rs), rounds interleaved;
2. frames per second a Python member receives (opened, verified, handed to Python as
   events), per core of its process (CPU time of all its threads), from a Rust sender
   (examples/flood.rs) through a relay.

Build first (release): `cargo build --release --bin sealroom`,
`cargo build --release -p sealroom-ffi --examples`, and `pip install ./crates/sealroom-ffi`
into the Python that runs this script. Then, from the repository root:

    python crates/sealroom-ffi/python/bench/bench.py --rounds 5
"""

import argparse
import asyncio
import os
import re
import resource
import secrets
import statistics
import subprocess
import time

import sealroom


def spread(values, unit, digits=0):
    fmt = f"{{:.{digits}f}}"
    return (f"median {fmt.format(statistics.median(values))} {unit} "
            f"(min {fmt.format(min(values))}, max {fmt.format(max(values))}, n={len(values)})")


# Both sides are timed in CPU time (this process's, and the Rust child's), not wall time:
# on a shared machine the wall clock measures the other tenants.


def python_seal_open_ns(size: int, iterations: int) -> float:
    schedule = sealroom.KeySchedule(bytes([7] * 32), sealroom.DEFAULT_SUITE)
    sealer, opener = schedule.sealer(0), schedule.opener(0)
    metadata, payload = bytes(28), bytes([0x5A] * size)
    start = time.process_time()
    for _ in range(iterations):
        opener.open(metadata, sealer.seal(metadata, payload))
    return (time.process_time() - start) / iterations * 1e9


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rust_seal_open_ns(binary: str, size: int, iterations: int) -> float:
    before = child_cpu()
    subprocess.run([binary, str(size), str(iterations)], check=True, capture_output=True, text=True)
    return (child_cpu() - before) / iterations * 1e9


def start_relay(binary: str):
    process = subprocess.Popen(
        [binary, "relay", "--listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    address = pin = secret = None
    while not (address and pin and secret):
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the relay did not start")
        if m := re.match(r"\s*listen:\s+(\S+)", line):
            address = m.group(1)
        elif m := re.match(r"\s*cert-sha256:\s+([0-9a-f]{64})", line):
            pin = m.group(1)
        elif m := re.search(r"SEALROOM_TICKET_SECRET=(\S+)", line):
            secret = m.group(1).encode()
    return process, address, pin, secret


def ticket(secret: bytes, user: str, room: str) -> str:
    grants = sealroom.Grants(publish_audio=True, publish_video=True, publish_data=True, subscribe=True)
    return sealroom.mint_ticket(app="dev", user=user, room=room, kid="dev", secret=secret, ttl_secs=600, grants=grants)


async def receive_round(flood_bin, address, pin, secret, kind, size, seconds):
    room_id = "bench-" + secrets.token_hex(4)
    room_secret = secrets.token_bytes(32)
    client = sealroom.Client(pin)
    room = await client.join(address, "localhost", ticket(secret, "python", room_id), room_secret, None)
    flood = await asyncio.create_subprocess_exec(
        flood_bin, address, pin, ticket(secret, "rust", room_id), kind, str(size), str(seconds),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "SEALROOM_ROOM_SECRET": room_secret.hex()},
    )
    frames = 0
    first = None
    cpu_start = wall_start = 0.0
    done = asyncio.ensure_future(flood.stdout.read())
    pending = asyncio.ensure_future(room.next_events(256))
    while True:
        finished, _ = await asyncio.wait({pending, done}, return_when=asyncio.FIRST_COMPLETED)
        if pending not in finished:
            break  # the sender is done and gone: everything it sent has had time to land
        batch = pending.result()
        now = time.perf_counter()
        for event in batch:
            if event.is_frame():
                if first is None:
                    first, cpu_start, wall_start = now, time.process_time(), now
                else:
                    frames += 1
        if not batch:
            break
        pending = asyncio.ensure_future(room.next_events(256))
    pending.cancel()
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - wall_start
    output = done.result().decode()
    await flood.wait()
    stats = room.stats()
    await room.leave()
    await client.close()
    queued = int(re.search(r"queued (\d+)", output).group(1))
    return frames / cpu, frames / wall, frames, queued, stats.open_failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--relay", default="target/release/sealroom")
    parser.add_argument("--seal-open", default="target/release/examples/seal_open_bench")
    parser.add_argument("--flood", default="target/release/examples/flood")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    py, rs = [], []
    python_seal_open_ns(1200, 2000)  # warm up
    for _ in range(args.rounds):
        py.append(python_seal_open_ns(1200, 50_000))
        rs.append(rust_seal_open_ns(args.seal_open, 1200, 500_000))
    ratios = [p / r for p, r in zip(py, rs)]
    print("seal+open of 1200 B, per frame:")
    print(f"  Python through the bindings: {spread(py, 'ns')}")
    print(f"  Rust, same calls:            {spread(rs, 'ns')}")
    print(f"  ratio Python / Rust:         {spread(ratios, 'x', 2)}")

    relay, address, pin, secret = start_relay(args.relay)
    try:
        for kind, size in (("audio", 160), ("video", 1200)):
            per_core, per_wall, failures = [], [], 0
            for _ in range(args.rounds):
                core, wall, frames, queued, failed = asyncio.run(
                    receive_round(args.flood, address, pin, secret, kind, size, args.seconds)
                )
                per_core.append(core)
                per_wall.append(wall)
                failures += failed
            print(f"Python member receiving {kind} frames of {size} B from a Rust sender:")
            print(f"  per core of the receiving process: {spread(per_core, 'frames/s')}")
            print(f"  wall clock:                        {spread(per_wall, 'frames/s')}")
            print(f"  frames that failed to open: {failures}")
    finally:
        relay.terminate()
        relay.wait()


if __name__ == "__main__":
    main()
