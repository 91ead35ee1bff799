package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/internal/cluster/clustertest"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store/postgres/pgtest"
)

// TestClusterSignaling measures what running on PostgreSQL and Redis, and across two nodes, costs
// signaling, against one node on SQLite with no Redis (the default, the baseline), in one run:
//
//	sqlite      one node, SQLite in its data folder, no Redis
//	pg          one node on PostgreSQL, no Redis: what the store alone changes
//	pg+redis    one node on PostgreSQL and Redis
//	two-nodes   two nodes on PostgreSQL and Redis, the provider's signaling on the first, the patient's
//	            on the second: everything between them goes through Redis
//
// For each it reports (a) the patient's join until its data channel is open, the provider admitting
// as soon as it sees the patient (the visit of BenchmarkJoinToDataChannel), p50 and p99; (b) the relay
// round trip of BenchmarkSignalingSteps on bare connections, an offer from the patient to the provider
// and an answer back, p50 and p99: the server's relay and nothing else; (c) the Redis round trips the
// nodes made per join, per whole visit (provider's join to both hung up) and per relay round trip, from
// their telemed_redis_command_duration_seconds counts, by command.
//
// It runs only with TELEMED_BENCH=1 (bench/cluster.sh), and needs TELEMED_TEST_POSTGRES and
// TELEMED_TEST_REDIS: a database and a key prefix of its own are made there and removed at the end.
// CLUSTER_ROUNDS rounds (default 10), each running CLUSTER_JOINS joins (default 30) and then
// CLUSTER_RELAYS relay round trips (default 100, at most 100) on every setup in turn, in an order that
// rotates every round, so that drift on the machine hits all of them alike.
func TestClusterSignaling(t *testing.T) {
	if os.Getenv("TELEMED_BENCH") == "" {
		t.Skip("set TELEMED_BENCH=1 to run (with TELEMED_TEST_POSTGRES and TELEMED_TEST_REDIS)")
	}
	rounds, joins, relays := envInt(t, "CLUSTER_ROUNDS", 10), envInt(t, "CLUSTER_JOINS", 30), envInt(t, "CLUSTER_RELAYS", 100)
	if relays > 100 {
		t.Fatal("CLUSTER_RELAYS: at most 100, what one pair of connections may send within the rate limit")
	}
	setups := startSetups(t)
	provAPI, patAPI := loopbackAPI(), loopbackAPI()
	for _, s := range setups { // warm-up: connections to the store and Redis, the code's first run
		s.visits(t, provAPI, patAPI, 2, false)
		s.relays(t, 10, false)
	}
	for r := range rounds {
		for i := range setups {
			s := setups[(r+i)%len(setups)]
			from := len(s.joinTimes)
			s.visits(t, provAPI, patAPI, joins, true)
			fromRelay := len(s.relayTimes)
			s.relays(t, relays, true)
			s.perRound = append(s.perRound, [2]time.Duration{
				quantile(s.joinTimes[from:], 0.5), quantile(s.relayTimes[fromRelay:], 0.5)})
		}
	}
	printClusterTable(setups, rounds, joins, relays)
}

// envInt is the positive integer in the environment variable name, or def if it is unset.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// clusterSetup is one way of running telemed, with what was measured on it.
type clusterSetup struct {
	name          string
	prov, pat     *env             // the nodes of the provider's and of the patient's signaling
	nodes         []*server.Server // whose Redis commands are counted
	joinTimes     []time.Duration
	relayTimes    []time.Duration
	perRound      [][2]time.Duration // each round's median join and relay
	joinOps       redisTally         // during the timed joins
	visitOps      redisTally         // during the whole visits
	relayOps      redisTally         // during the timed relay round trips
	visitsCounted int
}

// startSetups starts the setups' servers. The two nodes share the data folder as well as the
// database and the prefix, as nodes of one deployment would share their configuration.
func startSetups(t *testing.T) []*clusterSetup {
	redisURL := clustertest.URL(t)
	// A database and a key prefix of their own for each deployment, made before its servers start
	// so that they are removed after the servers stop.
	deployment := func() func(*config.Serve) {
		store, prefix := pgtest.URL(t), clustertest.Prefix(t, redisURL)
		return func(c *config.Serve) { c.StoreURL, c.Redis, c.RedisPrefix = store, redisURL, prefix }
	}
	sqlite := startServer(t)
	pg := startServerWith(t, func(c *config.Serve) { c.StoreURL = pgtest.URL(t) })
	one := startServerWith(t, deployment())
	two := deployment()
	a := startServerWith(t, two)
	b := startNode(t, a.dir, two)
	b.provider = a.provider
	setups := []*clusterSetup{
		{name: "sqlite", prov: sqlite, pat: sqlite},
		{name: "pg", prov: pg, pat: pg},
		{name: "pg+redis", prov: one, pat: one, nodes: []*server.Server{one.srv}},
		{name: "two-nodes", prov: a, pat: b, nodes: []*server.Server{a.srv, b.srv}},
	}
	for _, s := range setups {
		s.joinOps, s.visitOps, s.relayOps = redisTally{}, redisTally{}, redisTally{}
	}
	return setups
}

// patientLink is joinURL on the patient's node.
func (s *clusterSetup) patientLink(t *testing.T, joinURL string) string {
	from, to := s.prov.srv.BaseURL(), s.pat.srv.BaseURL()
	if !strings.HasPrefix(joinURL, from) {
		t.Fatalf("join link %s is not on the provider's node %s", joinURL, from)
	}
	return to + strings.TrimPrefix(joinURL, from)
}

// visits runs n visits: a consultation, the provider joined, the patient's join timed until its data
// channel is open, both hung up. With record, the times and the Redis round trips are kept.
func (s *clusterSetup) visits(t *testing.T, provAPI, patAPI *webrtc.API, n int, record bool) {
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		c := s.prov.newConsultation(t)
		before := tally(t, s.nodes)
		v, err := openVisit(ctx, c.StartURL, s.patientLink(t, c.JoinURL), provAPI, patAPI, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		atJoin := tally(t, s.nodes)
		d, err := v.join(ctx)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		atOpen := tally(t, s.nodes)
		v.end(ctx)
		cancel()
		if record {
			s.joinTimes = append(s.joinTimes, d)
			s.joinOps.add(atOpen.minus(atJoin))
			s.visitOps.add(tally(t, s.nodes).minus(before))
			s.visitsCounted++
		}
	}
}

// relays times n offer/answer round trips on one pair of bare connections.
func (s *clusterSetup) relays(t *testing.T, n int, record bool) {
	c := s.prov.newConsultation(t)
	pair := openRelayPair(t, c.StartURL, s.patientLink(t, c.JoinURL))
	defer pair.hangUp(t)
	before := tally(t, s.nodes)
	times := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		pair.roundTrip(t)
		times = append(times, time.Since(start))
	}
	if record {
		s.relayOps.add(tally(t, s.nodes).minus(before))
		s.relayTimes = append(s.relayTimes, times...)
	}
}

// redisTally counts Redis round trips by command name (a pipeline is one, "pipeline"; blocking reads
// are not counted) with the time they took, and under "(delivered)" the messages that nodes got
// through their inbox streams.
type redisTally map[string]redisCount

type redisCount struct {
	n       float64
	seconds float64 // the round trips' time, as the nodes measured it
}

// delivered is the tally's key for the messages delivered through Redis.
const delivered = "(delivered)"

// tally sums the counts of every node's registry.
func tally(t *testing.T, nodes []*server.Server) redisTally {
	out := redisTally{}
	for _, srv := range nodes {
		families, err := srv.Metrics().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				switch f.GetName() {
				case "telemed_redis_command_duration_seconds":
					for _, l := range m.GetLabel() {
						if l.GetName() == "command" {
							c := out[l.GetValue()]
							c.n += float64(m.GetHistogram().GetSampleCount())
							c.seconds += m.GetHistogram().GetSampleSum()
							out[l.GetValue()] = c
						}
					}
				case "telemed_cluster_messages_received_total":
					c := out[delivered]
					c.n += m.GetCounter().GetValue()
					out[delivered] = c
				}
			}
		}
	}
	return out
}

func (a redisTally) minus(b redisTally) redisTally {
	out := redisTally{}
	for k, v := range a {
		if d := v.n - b[k].n; d != 0 {
			out[k] = redisCount{n: d, seconds: v.seconds - b[k].seconds}
		}
	}
	return out
}

func (a redisTally) add(b redisTally) {
	for k, v := range b {
		c := a[k]
		c.n, c.seconds = c.n+v.n, c.seconds+v.seconds
		a[k] = c
	}
}

// total is the round trips and their time, the deliveries left out.
func (a redisTally) total() (n float64, seconds float64) {
	for k, v := range a {
		if k != delivered {
			n, seconds = n+v.n, seconds+v.seconds
		}
	}
	return n, seconds
}

// per is the tally divided by n, as "command count (mean ms), ..." by descending count.
func (a redisTally) per(n int) string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if a[keys[i]].n != a[keys[j]].n {
			return a[keys[i]].n > a[keys[j]].n
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		c := a[k]
		if k == delivered {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, c.n/float64(n)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.2f (%.3f ms)", k, c.n/float64(n), 1000*c.seconds/c.n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// printClusterTable prints the results, each line starting with "cluster " for bench/cluster.sh.
func printClusterTable(setups []*clusterSetup, rounds, joins, relays int) {
	p := func(format string, a ...any) { fmt.Printf("cluster "+format+"\n", a...) }
	base := setups[0]
	p("%d rounds of %d joins and %d relay round trips per setup; ms; ratio to %s in brackets", rounds, joins, relays, base.name)
	p("%-10s %6s %15s %15s %7s %15s %15s %11s %12s %12s", "setup", "joins", "join p50", "join p99", "relays",
		"relay p50", "relay p99", "Redis/join", "Redis/visit", "Redis/relay")
	for _, s := range setups {
		jp50, jp99 := quantile(s.joinTimes, 0.5), quantile(s.joinTimes, 0.99)
		rp50, rp99 := quantile(s.relayTimes, 0.5), quantile(s.relayTimes, 0.99)
		ratio := func(d, b time.Duration) string { return fmt.Sprintf("%.2f (%.2f)", ms(d), float64(d)/float64(b)) }
		perJoin, _ := s.joinOps.total()
		perVisit, _ := s.visitOps.total()
		perRelay, _ := s.relayOps.total()
		p("%-10s %6d %15s %15s %7d %15s %15s %11.1f %12.1f %12.1f", s.name, len(s.joinTimes),
			ratio(jp50, quantile(base.joinTimes, 0.5)), ratio(jp99, quantile(base.joinTimes, 0.99)), len(s.relayTimes),
			ratio(rp50, quantile(base.relayTimes, 0.5)), ratio(rp99, quantile(base.relayTimes, 0.99)),
			perJoin/float64(s.visitsCounted), perVisit/float64(s.visitsCounted), perRelay/float64(len(s.relayTimes)))
	}
	p("Redis round trips by command, count (mean time of one):")
	for _, s := range setups {
		if len(s.nodes) == 0 {
			continue
		}
		_, joinSec := s.joinOps.total()
		_, relaySec := s.relayOps.total()
		p("  %s, per join (%.2f ms in Redis): %s", s.name, 1000*joinSec/float64(s.visitsCounted), s.joinOps.per(s.visitsCounted))
		p("  %s, per visit: %s", s.name, s.visitOps.per(s.visitsCounted))
		p("  %s, per relay round trip (%.3f ms in Redis): %s", s.name, 1000*relaySec/float64(len(s.relayTimes)), s.relayOps.per(len(s.relayTimes)))
	}
	for _, s := range setups {
		p("slowest joins, %s: %s", s.name, slowest(s.joinTimes, 5))
	}
	p("per round, median join · relay in ms:")
	for r := range rounds {
		var parts []string
		for _, s := range setups {
			parts = append(parts, fmt.Sprintf("%s %.2f · %.3f", s.name, ms(s.perRound[r][0]), ms(s.perRound[r][1])))
		}
		p("  round %2d: %s", r+1, strings.Join(parts, "   "))
	}
}

// slowest is the n longest of ds in milliseconds, longest first: whether a p99 is a few outliers.
func slowest(ds []time.Duration, n int) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] > s[j] })
	var parts []string
	for _, d := range s[:min(n, len(s))] {
		parts = append(parts, fmt.Sprintf("%.1f", ms(d)))
	}
	return strings.Join(parts, " ")
}
