package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/cluster/clustertest"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/internal/signal/route/routetest"
)

// testRedis is a client of the test Redis (clustertest) and a key prefix of this test's own.
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	url := clustertest.URL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb, clustertest.Prefix(t, url)
}

func TestRouterConforms(t *testing.T) {
	routetest.Run(t, func(t *testing.T) (route.Router, route.Router) {
		rdb, prefix := testRedis(t)
		a := NewRouter(rdb, prefix, "a", slog.Default())
		b := NewRouter(rdb, prefix, "b", slog.Default())
		t.Cleanup(func() { a.Stop(); b.Stop() })
		return a, b
	})
}

func TestRoomsUpdatesAreExclusive(t *testing.T) {
	rdb, prefix := testRedis(t)
	// Two nodes' stores: 40 joins from both at once must all be kept, none lost to a race.
	nodes := []*Rooms{NewRooms(rdb, prefix), NewRooms(rdb, prefix)}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- nodes[i%2].Update(ctx, "c1", func(r *rooms.Room) error {
				if r.State == nil {
					r.State = consult.NewRoom(0)
				}
				id := fmt.Sprint("p", i)
				if _, err := r.State.Add(consult.Member{ID: id, Role: consult.RoleDevice}); err != nil && !errors.Is(err, consult.ErrTooManyDevices) {
					return err
				}
				r.People[id] = &rooms.Person{Role: consult.RoleDevice}
				return nil
			}, nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var people, members int
	nodes[1].View(ctx, "c1", func(r *rooms.Room) { people, members = len(r.People), r.State.Len() })
	if people != 40 || members != consult.MaxDevices {
		t.Fatalf("kept %d people and %d members, want 40 and %d", people, members, consult.MaxDevices)
	}
	if ids, _ := nodes[0].IDs(ctx); fmt.Sprint(ids) != "[c1]" {
		t.Fatalf("IDs = %v", ids)
	}
	nodes[0].Update(ctx, "c1", func(r *rooms.Room) error { clear(r.People); return nil }, nil)
	var gone bool
	nodes[1].View(ctx, "c1", func(r *rooms.Room) { gone = r == nil })
	if ids, _ := nodes[1].IDs(ctx); !gone || len(ids) != 0 {
		t.Fatalf("an emptied room is still there (%v)", ids)
	}
}

// TestRouterKeepsTheKeysOfConnectedParticipants: a participant's location, numbering and kept
// messages outlive their hour while it is connected: each message renews the location, and the
// node renews all three for its connections. Without it, an hour's quiet (a patient waiting long)
// would lose the location and the numbering.
func TestRouterKeepsTheKeysOfConnectedParticipants(t *testing.T) {
	rdb, prefix := testRedis(t)
	r := NewRouter(rdb, prefix, "a", slog.Default())
	t.Cleanup(func() { r.Stop() })
	ctx := context.Background()
	s := &routetest.Sender{}
	if err := r.Attach("p1", s, []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	r.Send("p1", []byte(`{}`))
	shorten := func() {
		for _, k := range r.keys("p1") {
			rdb.PExpire(ctx, k, 2*time.Second)
		}
	}
	ttls := func() []time.Duration {
		var out []time.Duration
		for _, k := range r.keys("p1") {
			out = append(out, rdb.PTTL(ctx, k).Val())
		}
		return out
	}
	shorten()
	r.Send("p1", []byte(`{}`))
	if at := ttls()[2]; at < participantTTL-time.Minute {
		t.Fatalf("a message left the location %v to live", at)
	}
	shorten()
	r.renewNow(ctx)
	for i, ttl := range ttls() {
		if ttl < participantTTL-time.Minute {
			t.Fatalf("key %s has %v left after the node renewed its connections' keys", r.keys("p1")[i], ttl)
		}
	}
}

// TestRoomsKeepNothingOnceTheLockIsLost: an update slower than its lock (here: the lock taken by
// another node meanwhile) keeps nothing and says so, rather than overwrite the other node's change.
func TestRoomsKeepNothingOnceTheLockIsLost(t *testing.T) {
	rdb, prefix := testRedis(t)
	s := NewRooms(rdb, prefix)
	ctx := context.Background()
	ran := false
	err := s.Update(ctx, "c1", func(r *rooms.Room) error {
		r.State = consult.NewRoom(0)
		r.People["p1"] = &rooms.Person{Role: consult.RolePatient}
		rdb.Set(ctx, s.key("c1")+":lock", "another node's token", 0)
		return nil
	}, func() { ran = true })
	if !errors.Is(err, ErrLockLost) || ran {
		t.Fatalf("update after losing the lock: %v (then ran: %v); want ErrLockLost and no messages", err, ran)
	}
	var kept bool
	s.View(ctx, "c1", func(r *rooms.Room) { kept = r != nil })
	if kept {
		t.Fatal("the room was written by a node that no longer held its lock")
	}
}
