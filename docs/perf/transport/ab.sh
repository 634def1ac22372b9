#!/bin/sh
# Interleaved A/B load runs of the relay with and without batched sends, each against the
# bare-quinn baseline in the same invocation. Usage: ab.sh SHAPE N ROUNDS OUTDIR [extra args]
set -eu
shape=$1 n=$2 rounds=$3 out=$4
shift 4
i=1
while [ "$i" -le "$rounds" ]; do
  for batch in 0 64; do
    target/release/sealroom-load --shape "$shape" -n "$n" --baseline --warmup 2 -d 5 \
      --send-batch "$batch" --out "$out/b$batch-$i" "$@" > "$out/b$batch-$i.txt" 2>&1
  done
  i=$((i + 1))
done
