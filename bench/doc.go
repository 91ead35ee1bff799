// Package bench holds telemed's benchmarks, each run beside the baseline it is judged against:
//
//   - BenchmarkJoinToDataChannel: from a patient's join to an open data channel, through a real server
//     (telemed) and between two pion peers signaled in-process with no server at all (direct, the
//     floor). BenchmarkJoinPhases times the milestones in between, and BenchmarkSignalingSteps the
//     steps the server adds, one at a time.
//
//   - TestIdleConnectionMemory: the resident memory one idle signaling connection costs the real
//     telemed binary, measured over 1,000 connections; TestIdleConnectionHeap breaks it down with
//     the Go runtime's accounting. Both run only with TELEMED_BENCH=1.
//
//   - BenchmarkFileTransfer: a file over one data channel, Go client to Go client through a real
//     server (telemed: Peer.SendFile, framing and SHA-256 included), beside two raw pion pairs with no
//     framing: default settings (pion-default) and telemed's tuning (pion-tuned).
//
//   - TestGroupVisitCost: a group visit of 2, 3 and 4 Chromiums through telemed (video caps by group
//     size, getStats for quality) beside the same Chromiums in a mesh signaled by the test, with no
//     server and browser defaults: each sender's uplink, CPU per browser, time until every pair
//     decodes video. It runs only with TELEMED_BENCH=1.
//
//   - TestClusterSignaling: the join to an open data channel and the offer/answer relay, p50 and p99,
//     on one node with SQLite (the baseline), one node on PostgreSQL, one on PostgreSQL and Redis, and
//     two nodes on PostgreSQL and Redis with the provider on one and the patient on the other,
//     interleaved in one run; and the Redis round trips per join. It runs only with TELEMED_BENCH=1,
//     TELEMED_TEST_POSTGRES and TELEMED_TEST_REDIS.
//
// bench/run.sh runs the join and memory benchmarks, bench/group.sh the group visit one, bench/files.sh the file transfer one,
// bench/cluster.sh the several-node one, and bench/turn.sh the TURN relay against coturn;
// docs/benchmarks.md has the method and the results.
package bench
