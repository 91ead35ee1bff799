#!/usr/bin/env bash
# Group visits in Chromium (docs/benchmarks.md#group-visits): 2, 3 and 4 Chromiums with fake media in
# one telemed visit, side by side with the same Chromiums in a full mesh signaled by the test itself
# (no server, browser defaults). Per size it prints each sender's uplink, the CPU of each browser and
# the time until every pair decodes video, as medians of GROUP_ROUNDS rounds (default 3; GROUP_SIZES, default 2,3,4, picks the sizes), and the
# ratios telemed / mesh. It needs Debian's chromium; everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/machine.sh
print_machine
echo

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "+ go test -c -o \$TMP/bench.test ./bench/"
go test -c -o "$work/bench.test" ./bench/
echo "+ (cd bench && TELEMED_BENCH=1 GROUP_ROUNDS=${GROUP_ROUNDS:-3} GROUP_SIZES=${GROUP_SIZES:-2,3,4} \$TMP/bench.test -test.run '^TestGroupVisitCost\$' -test.count 1)"
(cd bench && TELEMED_BENCH=1 GROUP_ROUNDS=${GROUP_ROUNDS:-3} GROUP_SIZES=${GROUP_SIZES:-2,3,4} "$work/bench.test" -test.run '^TestGroupVisitCost$' -test.count 1 -test.timeout 60m) | grep '^group'
