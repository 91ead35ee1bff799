// Package signaling is where the signaling hub's state lives when nodes share it over Redis:
// Rooms (a rooms.Store) and Router (a route.Router), passing the same suites as the single node's
// (routetest). docs/deployment.md says which Redis primitive carries what, and why.
package signaling

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/cluster"
	"github.com/telemed/telemed/internal/signal/rooms"
)

// Rooms is the rooms.Store that nodes share in Redis: each room a JSON value, changed under a lock of
// its own (a key set with NX and an expiry, released only by its holder), so that the hub's rules run
// on one node at a time for a consultation while its participants are spread over many.
type Rooms struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ rooms.Store = (*Rooms)(nil)

// NewRooms returns the Rooms kept in rdb under keys that start with prefix.
func NewRooms(rdb redis.UniversalClient, prefix string) *Rooms {
	return &Rooms{rdb: rdb, prefix: prefix}
}

// save writes a room (or deletes it, for an empty ARGV[2]) only while the lock still holds our token
// (ARGV[1]): an update slower than the lock's expiry must not overwrite the change of the node that
// took the lock after it. KEYS: the lock, the room, the set of rooms; ARGV[3] is the room's id.
var save = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
end
return 1`)

// ErrLockLost is returned by an update that took longer than its lock lasts: nothing was kept.
var ErrLockLost = errors.New("the room's lock expired before the change was kept")

func (s *Rooms) key(id string) string { return s.prefix + "room:" + id }
func (s *Rooms) set() string          { return s.prefix + "rooms" }

func (s *Rooms) lock(ctx context.Context, id string) (token string, release func(), err error) {
	token, release, err = cluster.LockToken(ctx, s.rdb, s.key(id)+":lock")
	if err != nil {
		return "", nil, fmt.Errorf("lock room %s: %w", id, err)
	}
	return token, release, nil
}

func (s *Rooms) load(ctx context.Context, id string) (*rooms.Room, error) {
	b, err := s.rdb.Get(ctx, s.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load room %s: %w", id, err)
	}
	return rooms.Decode(b)
}

// Update implements rooms.Store.
func (s *Rooms) Update(ctx context.Context, id string, fn func(r *rooms.Room) error, then func()) error {
	token, release, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	r, err := s.load(ctx, id)
	if err != nil {
		return err
	}
	if r == nil {
		r = &rooms.Room{ID: id, People: map[string]*rooms.Person{}}
	}
	if err := fn(r); err != nil {
		return err
	}
	var value []byte
	if r.State != nil && len(r.People) > 0 {
		if value, err = rooms.Encode(r); err != nil {
			return err
		}
	}
	kept, err := save.Run(ctx, s.rdb, []string{s.key(id) + ":lock", s.key(id), s.set()}, token, value, id).Int()
	if err != nil {
		return fmt.Errorf("save room %s: %w", id, err)
	}
	if kept == 0 {
		return fmt.Errorf("save room %s: %w", id, ErrLockLost)
	}
	if then != nil {
		then()
	}
	return nil
}

// View implements rooms.Store. It reads without the lock: a room is written whole, in one command.
func (s *Rooms) View(ctx context.Context, id string, fn func(r *rooms.Room)) error {
	r, err := s.load(ctx, id)
	if err != nil {
		return err
	}
	fn(r)
	return nil
}

// IDs implements rooms.Store.
func (s *Rooms) IDs(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.set()).Result()
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}
