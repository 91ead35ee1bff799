#!/usr/bin/env bash
# Runs telemed's benchmarks and prints their results (docs/benchmarks.md explains them):
#
#   1. BenchmarkJoinToDataChannel: a patient's join to an open data channel through a real telemed
#      server (telemed) and between the same two pion peers signaled in-process (direct, the floor).
#      ROUNDS rounds (default 10), each running telemed then direct for N joins (default 50), so that
#      the two are interleaved and drift on the machine hits both alike.
#   2. BenchmarkJoinPhases: the same joins, with the time each milestone is reached (PHASE_ROUNDS
#      rounds, default 3).
#   3. BenchmarkSignalingSteps: the steps the server adds, one at a time (STEP_ROUNDS rounds of
#      STEP_N, defaults 3 and 300).
#   4. TestIdleConnectionMemory and TestIdleConnectionHeap: what an idle signaling connection costs
#      the server, over 1,000 connections (100 consultations x 10 waiting patients).
#
# Everything runs on 127.0.0.1 and stops by itself. BENCHSTAT=1 also summarizes the joins with
# benchstat (go run golang.org/x/perf/cmd/benchstat@latest; needs the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
PHASE_ROUNDS=${PHASE_ROUNDS:-3}
STEP_ROUNDS=${STEP_ROUNDS:-3}
STEP_N=${STEP_N:-300}
N=${N:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

. bench/machine.sh
print_machine
echo

echo "== building"
echo "+ go test -c -o \$TMP/bench.test ./bench/"
go test -c -o "$work/bench.test" ./bench/
echo "+ go build -o \$TMP/telemed ./cmd/telemed"
go build -o "$work/telemed" ./cmd/telemed
echo

# The test binary runs in bench/, as go test would run it.
run_bench() { (cd bench && "$work/bench.test" "$@"); }

echo "== 1. join to data channel: $ROUNDS rounds of $N joins each, telemed and direct"
for r in $(seq "$ROUNDS"); do
  echo "+ (cd bench && \$TMP/bench.test -test.run '^\$' -test.bench '^BenchmarkJoinToDataChannel\$' -test.benchtime ${N}x -test.count 1)   # round $r"
  run_bench -test.run '^$' -test.bench '^BenchmarkJoinToDataChannel$' -test.benchtime "${N}x" -test.count 1 |
    tee -a "$work/join.txt" | grep '^Benchmark'
done
echo

echo "== 2. phases of a join: $PHASE_ROUNDS rounds of $N joins each"
for r in $(seq "$PHASE_ROUNDS"); do
  echo "+ (cd bench && \$TMP/bench.test -test.run '^\$' -test.bench '^BenchmarkJoinPhases\$' -test.benchtime ${N}x -test.count 1)   # round $r"
  run_bench -test.run '^$' -test.bench '^BenchmarkJoinPhases$' -test.benchtime "${N}x" -test.count 1 |
    tee -a "$work/phases.txt" | grep '^Benchmark'
done
echo

echo "== 3. steps of the server, one at a time: $STEP_ROUNDS rounds of $STEP_N"
echo "+ (cd bench && \$TMP/bench.test -test.run '^\$' -test.bench '^BenchmarkSignalingSteps\$' -test.benchtime ${STEP_N}x -test.count $STEP_ROUNDS)"
run_bench -test.run '^$' -test.bench '^BenchmarkSignalingSteps$' -test.benchtime "${STEP_N}x" -test.count "$STEP_ROUNDS" |
  tee "$work/steps.txt" | grep '^Benchmark'
echo

echo "== 4. idle signaling connections"
echo "+ (cd bench && TELEMED_BENCH=1 TELEMED_BIN=\$TMP/telemed \$TMP/bench.test -test.run '^TestIdleConnection(Memory|Heap)\$' -test.v -test.count 1)"
(cd bench && TELEMED_BENCH=1 TELEMED_BIN="$work/telemed" "$work/bench.test" \
  -test.run '^TestIdleConnection(Memory|Heap)$' -test.v -test.count 1) | tee "$work/mem.txt" |
  grep -E '^(=== RUN|--- |    [a-z_]+_test\.go)' || true
grep -q '^--- PASS: TestIdleConnectionMemory' "$work/mem.txt" || { echo "TestIdleConnectionMemory did not pass"; exit 1; }
echo

# values BENCH UNIT FILE prints UNIT's value from every line of benchmark BENCH.
values() {
  awk -v b="$1" -v u="$2" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 3; i < NF; i += 2) if ($(i+1) == u) print $i }' "$3"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }

if [ "${BENCHSTAT:-0}" = 1 ]; then
  echo "== benchstat"
  go run golang.org/x/perf/cmd/benchstat@latest "$work/join.txt" || true
  echo
fi

echo "== summary"
tm=$(values BenchmarkJoinToDataChannel/telemed ms/op "$work/join.txt" | median)
dm=$(values BenchmarkJoinToDataChannel/direct ms/op "$work/join.txt" | median)
tp=$(values BenchmarkJoinToDataChannel/telemed p50-ms "$work/join.txt" | median)
dp=$(values BenchmarkJoinToDataChannel/direct p50-ms "$work/join.txt" | median)
awk -v tm="$tm" -v dm="$dm" -v tp="$tp" -v dp="$dp" -v r="$ROUNDS" -v n="$N" 'BEGIN {
  printf "join to data channel, median over %d rounds of %d joins:\n", r, n
  printf "  %-8s %10s %14s\n", "", "mean ms/op", "median join ms"
  printf "  %-8s %10.2f %14.2f\n", "telemed", tm, tp
  printf "  %-8s %10.2f %14.2f\n", "direct", dm, dp
  printf "  ratio telemed/direct: %.2fx (means), %.2fx (medians); goal <= 1.2x\n", tm / dm, tp / dp
}'
echo "phases (median of the per-round medians, ms from the start of the join):"
printf "  %-8s" ""
for p in welcome lobby pc offer answer ice dtls open; do printf " %7s" "$p"; done
echo
for side in telemed direct; do
  printf "  %-8s" "$side"
  for p in welcome lobby pc offer answer ice dtls open; do
    v=$(values "BenchmarkJoinPhases/$side" "$p-ms" "$work/phases.txt" | median)
    [ "$v" = nan ] && printf " %7s" "-" || printf " %7.2f" "$v"
  done
  echo
done
# From admission: what a patient waits for after the provider presses Admit (the provider sees the
# patient at "lobby"), against the whole of direct's join.
tl=$(values "BenchmarkJoinPhases/telemed" lobby-ms "$work/phases.txt" | median)
to=$(values "BenchmarkJoinPhases/telemed" open-ms "$work/phases.txt" | median)
do_=$(values "BenchmarkJoinPhases/direct" open-ms "$work/phases.txt" | median)
awk -v l="$tl" -v o="$to" -v d="$do_" 'BEGIN {
  printf "  from admission (lobby to open): telemed %.2f ms, direct %.2f ms: %.2fx\n", o - l, d, (o - l) / d }'
echo "steps of the server alone (median ms):"
for st in dial join ping relay linkcheck audit; do
  v=$(values "BenchmarkSignalingSteps/$st" ns/op "$work/steps.txt" | median)
  awk -v s="$st" -v v="$v" 'BEGIN { printf "  %-10s %6.3f\n", s, v / 1e6 }'
done
echo "idle connections:"
sed -n 's/^ *[a-z_]*_test\.go:[0-9]*: result: /  /p' "$work/mem.txt"
