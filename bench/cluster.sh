#!/usr/bin/env bash
# Several nodes (docs/benchmarks.md#several-nodes): signaling on one node with SQLite (the default, the
# baseline), one node on PostgreSQL alone, one node on PostgreSQL and Redis, and two nodes on
# PostgreSQL and Redis with the provider on one and the patient on the other, side by side in one run. Per setup it prints the join to an open
# data channel and the offer/answer relay round trip, p50 and p99 with their ratios to the baseline,
# and the Redis round trips per join, per visit and per relay, by command.
#
# CLUSTER_ROUNDS rounds (default 10), each CLUSTER_JOINS joins (default 30) and CLUSTER_RELAYS relay
# round trips (default 100) on every setup in turn. It needs TELEMED_TEST_POSTGRES (a server where the
# user may create databases) and TELEMED_TEST_REDIS, as the PostgreSQL and Redis tests do; it makes a
# database and a key prefix of its own there and removes them at the end. Everything else runs on
# 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${TELEMED_TEST_POSTGRES:?set it, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
: "${TELEMED_TEST_REDIS:?set it, e.g. redis://127.0.0.1:6379/0}"
ROUNDS=${CLUSTER_ROUNDS:-10}
JOINS=${CLUSTER_JOINS:-30}
RELAYS=${CLUSTER_RELAYS:-100}

. bench/machine.sh
print_machine
echo "load:         $(cut -d' ' -f1-3 /proc/loadavg)"
echo

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "+ go test -c -o \$TMP/bench.test ./bench/"
go test -c -o "$work/bench.test" ./bench/
echo "+ (cd bench && TELEMED_BENCH=1 CLUSTER_ROUNDS=$ROUNDS CLUSTER_JOINS=$JOINS CLUSTER_RELAYS=$RELAYS \$TMP/bench.test -test.run '^TestClusterSignaling\$' -test.count 1)"
echo
(cd bench && TELEMED_BENCH=1 CLUSTER_ROUNDS=$ROUNDS CLUSTER_JOINS=$JOINS CLUSTER_RELAYS=$RELAYS \
  "$work/bench.test" -test.run '^TestClusterSignaling$' -test.count 1 -test.v -test.timeout 30m) |
  tee "$work/out.txt" | sed -n 's/^cluster //p'
grep -q '^--- PASS: TestClusterSignaling' "$work/out.txt" || { grep -v '^cluster ' "$work/out.txt"; echo "TestClusterSignaling did not pass"; exit 1; }
