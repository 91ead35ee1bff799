#!/usr/bin/env bash
# Benchmarks remote patient monitoring (docs/benchmarks.md explains the figures):
#
# 1. BenchmarkIngest: readings stored per second, sustained, through POST /api/v1/observations into
#    the embedded SQLite (telemed: JSON decoding, validation, thresholds, idempotency record, one
#    transaction per batch; telemed-4-devices: four devices uploading at once), beside the same rows
#    inserted straight into the same database file in transactions of the same size (sqlite-raw: what
#    SQLite itself costs). Batches of 100 and 1000 pulse oximeter readings, and of 100 one-second ECG
#    readings (250 samples each). INGEST_TIME per run (default 3s).
# 2. BenchmarkECGLatency: a live 250 Hz ECG in 20 ms pieces from a device session to a provider
#    session through a real server, unordered and without retransmissions (telemed), beside two pion
#    peers with the same channel and the same JSON frames (pion-direct). PIECES pieces per run
#    (default 1500: 30 s). p50/p99/max latency from a piece's last sample to its arrival, and the
#    pieces lost.
#
# ROUNDS rounds (default 3), each running every variant, so that drift on the machine hits all alike.
# Everything runs on 127.0.0.1 and stops by itself; about 5 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
INGEST_TIME=${INGEST_TIME:-3s}
PIECES=${PIECES:-1500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

. bench/machine.sh
print_machine
echo

echo "== building"
echo "+ go test -c -o \$TMP/bench.test ./bench/"
go test -c -o "$work/bench.test" ./bench/
echo

run_bench() { (cd bench && "$work/bench.test" "$@"); }

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  run_bench -test.run='^$' -test.bench='^BenchmarkIngest$' -test.benchtime="$INGEST_TIME" | tee -a "$work/ingest.txt" | grep '^Benchmark'
  run_bench -test.run='^$' -test.bench='^BenchmarkECGLatency$' -test.benchtime="${PIECES}x" | tee -a "$work/latency.txt" | grep '^Benchmark'
done

echo
echo "== medians over $ROUNDS rounds"
awk '
  /^BenchmarkIngest\// {
    name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkIngest\//, "", name)
    for (i = 3; i < NF; i++) if ($(i+1) == "readings/s") v[name] = v[name] " " $i
  }
  /^BenchmarkECGLatency\// {
    name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkECGLatency\//, "", name)
    for (i = 3; i < NF; i++) {
      if ($(i+1) == "p50-ms") p50[name] = p50[name] " " $i
      if ($(i+1) == "p99-ms") p99[name] = p99[name] " " $i
      if ($(i+1) == "lost-%") lost[name] = lost[name] " " $i
    }
  }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    printf "1 %-44s %14s\n", "ingest", "readings/s"
    for (k in v) printf "2 %-44s %14.0f\n", k, median(v[k])
    for (k in v) if (k ~ /\/telemed(-4-devices)?$/) {
      base = k; sub(/\/telemed(-4-devices)?$/, "/sqlite-raw", base)
      if (base in v) printf "3 ratio %-38s %14.2f\n", k " / raw", median(v[k]) / median(v[base])
    }
    printf "4 \n5 %-20s %10s %10s %10s\n", "ECG latency", "p50 ms", "p99 ms", "lost %"
    for (k in p50) printf "6 %-20s %10.2f %10.2f %10.2f\n", k, median(p50[k]), median(p99[k]), median(lost[k])
  }' "$work/ingest.txt" "$work/latency.txt" | sort -s -k1,1n -k2,2 | cut -c3-
