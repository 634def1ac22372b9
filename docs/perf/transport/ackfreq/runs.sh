#!/bin/sh
# Fewer ACKs at a real path's round-trip time: interleaved runs of the relay, the bare-quinn
# baseline and the one-loop forwarder, with and without the ACK-frequency request, on a
# 60 ms RTT (--rtt-ms) and on loopback's own. Release build first:
#   cargo build --release -p sealroom -p sealroom-load
# Summary: python3 docs/perf/transport/ackfreq/summary.py "$OUT".
set -eu
load=${LOAD:-target/release/sealroom-load}
out=${OUT:-target/load/ackfreq}
reps=${REPS:-3}
run() { # name shape rtt threshold
    "$load" --shape "$2" -n 50 --baseline --engine --warmup 2 -d 6 --rtt-ms "$3" \
        --relay-limit "ack_eliciting_threshold=$4" --engine-ack-threshold "$4" \
        --out "$out/$1" > "$out/$1.txt" 2> "$out/$1.err"
    cp "$out/$1/$2-r1-n50.json" "$out/$1.json"
}
mkdir -p "$out"
for i in $(seq 1 "$reps"); do
    run "audio-rtt60-t0-$i" audio 60 0
    run "audio-rtt60-t10-$i" audio 60 10
    run "audio-rtt0-t10-$i" audio 0 10
done
for i in $(seq 1 "$reps"); do
    run "video50k-rtt60-t0-$i" video50k 60 0
    run "video50k-rtt60-t10-$i" video50k 60 10
done
for i in $(seq 1 "$reps"); do
    run "audio-rtt60-t2-$i" audio 60 2
done
# Then more interleaved pairs of the two settings that matter (REPS=3: runs 4 to 8).
for i in $(seq $((reps + 1)) $((reps + 5))); do
    run "audio-rtt60-t0-$i" audio 60 0
    run "audio-rtt60-t2-$i" audio 60 2
done
