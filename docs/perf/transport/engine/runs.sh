#!/bin/sh
# Load runs of the relay, the bare-quinn baseline and the one-loop quinn-proto forwarder in
# the same invocation. Usage: runs.sh SHAPE N ROUNDS OUTDIR VARIANT...
# VARIANT: plain, batch (--engine-batch), cUS (--engine-coalesce-us US),
# aN (--engine-ack-threshold N).
set -eu
shape=$1 n=$2 rounds=$3 out=$4
shift 4
i=1
while [ "$i" -le "$rounds" ]; do
  for v in "$@"; do
    case $v in
      plain) extra="" ;;
      batch) extra="--engine-batch" ;;
      c*) extra="--engine-coalesce-us ${v#c}" ;;
      a*) extra="--engine-ack-threshold ${v#a}" ;;
      *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086
    target/release/sealroom-load --shape "$shape" -n "$n" --baseline --engine $extra \
      --warmup 2 -d 6 --out "$out/$shape-n$n-$v-$i" > "$out/$shape-n$n-$v-$i.txt" 2>&1
  done
  i=$((i + 1))
done
