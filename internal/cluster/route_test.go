package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/internal/signal/route/routetest"
)

// testRedis is a client of the machine's Redis (TELEMED_TEST_REDIS) and a key prefix of this test's
// own, whose keys are deleted at the end.
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	url := os.Getenv("TELEMED_TEST_REDIS")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TELEMED_TEST_REDIS is not set; scripts/test sets it")
		}
		t.Skip("set TELEMED_TEST_REDIS=redis://127.0.0.1:6379/0 to run the tests against a real Redis")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	prefix := "telemedtest:" + auth.NewID("") + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return rdb, prefix
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
