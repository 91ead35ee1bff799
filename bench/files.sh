#!/usr/bin/env bash
# Benchmarks file transfer over a WebRTC data channel, Go client to Go client, beside two raw pion data
# channel pairs in the same run (docs/benchmarks.md explains the figures):
#
#   BenchmarkFileTransfer/pion-default  two pion peers, default SettingEngine, 16 KiB messages, 1 MiB
#                                       high-water mark, 512 KiB low (pion's flow-control example)
#   BenchmarkFileTransfer/pion-tuned    the same with telemed's tuning (client.TuneSettingEngine,
#                                       client.MaxChunkMessage messages, client.SendHighWater), no framing
#   BenchmarkFileTransfer/telemed       Peer.SendFile between two client.Sessions in a call through a
#                                       real telemed server: framing, SHA-256 on both sides, end/done
#
# Each variant connects once, then moves N files of FILE_MB MiB (defaults 4 and 64) over one reliable,
# ordered data channel (Go's benchmark harness first runs it once with one file on a connection of its
# own: a warm-up, not reported). The benchmark reports for each run (bench/files_test.go):
#   MB/s       the N files' bytes over their time (10^6 bytes a second)
#   top-MB/s   the fastest of the N files: the rate when nothing stalls
#   stalls/op  SCTP retransmission timeouts (T3-rtx) per file, from pion's sctp debug log; each one
#              stops the sender for the RTO (at least 1 s in pion)
#   drops/op   datagrams the kernel dropped per file on the process's UDP sockets (full receive buffer)
#   cpu-ns/B   the process's CPU time per byte moved (both peers, and for telemed the server too)
#
# 1. Loopback (the goal's figures): the peers on 127.0.0.1 with real UDP sockets. ROUNDS rounds
#    (default 5); each round runs the three variants one after the other, each in a fresh process, in
#    an order that rotates every round, so that drift on the machine hits all three alike.
# 2. A path with a round-trip time: the same with FILE_RTT_MS=RTT_MS (default 20; 0 skips it), where
#    the peers are on pion's virtual network (in memory) behind a router that delays each packet by
#    half the RTT each way. RTT_ROUNDS rounds (default 3) of N files of RTT_FILE_MB MiB (default 32).
#    The server and the signaling stay on 127.0.0.1.
#
# For each it prints the medians over the rounds and the two ratios of the goal: telemed/pion-default
# (goal >= 2) and telemed/pion-tuned (goal >= 0.9), the same ratios over all the files pooled and for
# the fastest files, and each round's ratios. GOGC is left at Go's default.
#
# Run it from anywhere (bash bench/files.sh); about 3-4 minutes with the defaults. Everything runs in
# this machine and stops by itself: a run that takes longer than RUN_TIMEOUT seconds (default 300)
# fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
N=${N:-4}
FILE_MB=${FILE_MB:-64}
RTT_MS=${RTT_MS:-20}
RTT_ROUNDS=${RTT_ROUNDS:-3}
RTT_FILE_MB=${RTT_FILE_MB:-32}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
VARIANTS=(pion-default pion-tuned telemed)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

. bench/machine.sh
print_machine
echo

echo "== building"
echo "+ go test -c -o \$TMP/bench.test ./bench/"
go test -c -o "$work/bench.test" ./bench/
echo

# values FILE BENCH UNIT prints UNIT's value from every line of benchmark BENCH in FILE.
values() {
  awk -v b="$2" -v u="$3" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 3; i < NF; i++) if ($(i+1) == u) print $i }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }'; }
# pooled FILE BENCH MB prints the MB/s of all the files of BENCH together (files of MB MiB): their
# bytes over their time.
pooled() {
  awk -v b="$2" -v mb="$3" '$1 ~ "^"b"(-[0-9]+)?$" { n += $2; t += $2 * $3 }
    END { if (t > 0) print n * mb * 1048576 / 1e6 / (t / 1e9); else print "nan" }' "$1"
}
# total FILE BENCH UNIT sums UNIT's value times the iterations over every line of BENCH.
total() {
  awk -v b="$2" -v u="$3" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 3; i < NF; i++) if ($(i+1) == u) s += $i * $2 } END { print s + 0 }' "$1"
}
# per_round FILE A B prints each round's ratio of A's MB/s to B's.
per_round() {
  awk -v a="$2" -v b="$3" '
    $1 ~ "^BenchmarkFileTransfer/"a"(-[0-9]+)?$" { for (i = 3; i < NF; i++) if ($(i+1) == "MB/s") x[++na] = $i }
    $1 ~ "^BenchmarkFileTransfer/"b"(-[0-9]+)?$" { for (i = 3; i < NF; i++) if ($(i+1) == "MB/s") y[++nb] = $i }
    END { for (i = 1; i <= na && i <= nb; i++) printf "%s%.2f", (i > 1 ? " " : ""), x[i] / y[i] }' "$1"
}

# section NAME ROUNDS FILE_MB RTT_MS runs the rounds and prints their summary.
section() {
  local name=$1 rounds=$2 mb=$3 rtt=$4 res="$work/$1.txt" r i v out line
  : >"$res"
  echo "+ (cd bench && FILE_MB=$mb FILE_RTT_MS=$rtt \$TMP/bench.test -test.run '^\$' -test.bench '^BenchmarkFileTransfer\$/^VARIANT\$' -test.benchtime ${N}x -test.count 1)"
  for r in $(seq "$rounds"); do
    for i in 0 1 2; do
      v=${VARIANTS[$(((i + r - 1) % 3))]}
      out=$(cd bench && FILE_MB=$mb FILE_RTT_MS=$rtt timeout "$RUN_TIMEOUT" "$work/bench.test" -test.run '^$' \
        -test.bench "^BenchmarkFileTransfer\$/^$v\$" -test.benchtime "${N}x" -test.count 1 2>&1) ||
        { echo "$out"; echo "round $r: $v failed (or took over $RUN_TIMEOUT s)"; exit 1; }
      line=$(grep '^BenchmarkFileTransfer/' <<<"$out") || { echo "$out"; echo "round $r: $v printed no result"; exit 1; }
      echo "round $r  $line  (load $(cut -d' ' -f1 /proc/loadavg))"
      echo "$line" >>"$res"
    done
  done
  echo
  echo "== summary ($name): medians over $rounds rounds of $N files of $mb MiB"
  printf "  %-13s %8s %13s %8s %8s %9s %12s %9s %9s\n" variant MB/s "(range)" Mbit/s pooled top-MB/s stalls drops/op cpu-ns/B
  local m rg mbit pool top st dr c
  declare -A med tops pools
  for v in "${VARIANTS[@]}"; do
    m=$(values "$res" "BenchmarkFileTransfer/$v" MB/s | median)
    rg=$(values "$res" "BenchmarkFileTransfer/$v" MB/s | range)
    mbit=$(values "$res" "BenchmarkFileTransfer/$v" Mbit/s | median)
    pool=$(pooled "$res" "BenchmarkFileTransfer/$v" "$mb")
    top=$(values "$res" "BenchmarkFileTransfer/$v" top-MB/s | median)
    st=$(total "$res" "BenchmarkFileTransfer/$v" stalls/op)
    dr=$(values "$res" "BenchmarkFileTransfer/$v" drops/op | median)
    c=$(values "$res" "BenchmarkFileTransfer/$v" cpu-ns/B | median)
    printf "  %-13s %8.1f %13s %8.0f %8.1f %9.1f %12s %9.0f %9.1f\n" "$v" "$m" "($rg)" "$mbit" "$pool" "$top" \
      "$(printf "%.0f in %d" "$st" $((rounds * N)))" "$dr" "$c"
    med[$v]=$m tops[$v]=$top pools[$v]=$pool
  done
  echo "  (MB/s: median of the rounds; pooled: all the rounds' bytes over all their time; top-MB/s: median"
  echo "  of each round's fastest file; stalls: SCTP retransmission timeouts in all the files)"
  awk -v t="${med[telemed]}" -v d="${med[pion-default]}" -v p="${med[pion-tuned]}" 'BEGIN {
    printf "  ratio telemed/pion-default: %.2fx (goal >= 2x: %s)\n", t / d, t / d >= 2 ? "met" : "NOT met"
    printf "  ratio telemed/pion-tuned:   %.2fx (goal >= 0.9x: %s)\n", t / p, t / p >= 0.9 ? "met" : "NOT met"
    printf "  ratio pion-tuned/pion-default: %.2fx (what the tuning alone gives)\n", p / d
  }'
  awk -v t="${pools[telemed]}" -v d="${pools[pion-default]}" -v p="${pools[pion-tuned]}" 'BEGIN {
    printf "  pooled over all files:    telemed/pion-default %.2fx, telemed/pion-tuned %.2fx\n", t / d, t / p }'
  awk -v t="${tops[telemed]}" -v d="${tops[pion-default]}" -v p="${tops[pion-tuned]}" 'BEGIN {
    printf "  fastest files (top-MB/s): telemed/pion-default %.2fx, telemed/pion-tuned %.2fx\n", t / d, t / p }'
  echo "  per round, telemed/pion-default: $(per_round "$res" telemed pion-default)"
  echo "  per round, telemed/pion-tuned:   $(per_round "$res" telemed pion-tuned)"
  echo
}

echo "== 1. loopback: $ROUNDS rounds; each variant: $N files of $FILE_MB MiB over one connection"
section loopback "$ROUNDS" "$FILE_MB" 0

if [ "$RTT_MS" != 0 ]; then
  echo "== 2. a $RTT_MS ms round trip (pion's virtual network): $RTT_ROUNDS rounds; each variant: $N files of $RTT_FILE_MB MiB"
  section "rtt-${RTT_MS}ms" "$RTT_ROUNDS" "$RTT_FILE_MB" "$RTT_MS"
fi
echo "reproduce: ROUNDS=$ROUNDS N=$N FILE_MB=$FILE_MB RTT_MS=$RTT_MS RTT_ROUNDS=$RTT_ROUNDS RTT_FILE_MB=$RTT_FILE_MB bash bench/files.sh"
