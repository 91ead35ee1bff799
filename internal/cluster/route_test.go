package cluster

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

func TestPatientLockIsExclusiveAcrossNodes(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	ctx := context.Background()
	a, b := openNode(t, url, prefix, Options{}), openNode(t, url, prefix, Options{})
	var inside, most int32
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := []*Redis{a, b}[i%2]
			unlock, err := node.PatientLock(ctx, "pt_1")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			unlock()
		}()
	}
	wg.Wait()
	if most != 1 {
		t.Fatalf("%d uploads of one patient held the lock at once, across two nodes", most)
	}
}
