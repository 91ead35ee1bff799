package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

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

// lockTTL bounds how long a node that died holding a room's lock keeps the others out of it; an
// update takes a few round trips, far less.
const lockTTL = 5 * time.Second

// unlock deletes a lock only if it still holds our token: after an expiry another node may hold it.
var unlock = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

func (s *Rooms) key(id string) string { return s.prefix + "room:" + id }
func (s *Rooms) set() string          { return s.prefix + "rooms" }

// ErrLockTimeout is returned when a lock could not be had in time.
var ErrLockTimeout = errors.New("held by another node for too long")

func (s *Rooms) lock(ctx context.Context, id string) (release func(), err error) {
	release, err = Lock(ctx, s.rdb, s.key(id)+":lock")
	if err != nil {
		return nil, fmt.Errorf("lock room %s: %w", id, err)
	}
	return release, nil
}

// Lock takes the lock named key in rdb (a key set with NX and an expiry of lockTTL, with a random
// token that only its holder's release deletes), waiting for it at most lockTTL. It serves any work
// that one node at a time must do: a room's update, a patient's upload.
func Lock(ctx context.Context, rdb redis.UniversalClient, key string) (release func(), err error) {
	var b [12]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	deadline := time.Now().Add(lockTTL)
	wait := time.Millisecond
	for {
		ok, err := rdb.SetNX(ctx, key, token, lockTTL).Result()
		if err != nil {
			return nil, err
		}
		if ok {
			return func() { unlock.Run(context.WithoutCancel(ctx), rdb, []string{key}, token) }, nil
		}
		if time.Now().After(deadline) {
			return nil, ErrLockTimeout
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 20*time.Millisecond)
	}
}

// PatientLock serialises one patient's uploads across the nodes (monitoring.Options.PatientLock):
// their alert states are read, judged and written by one upload at a time.
func (r *Redis) PatientLock(ctx context.Context, patientID string) (unlock func(), err error) {
	release, err := Lock(ctx, r.client, r.Key("lock", "patient", patientID))
	if err != nil {
		return nil, fmt.Errorf("lock patient %s: %w", patientID, err)
	}
	return release, nil
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
	release, err := s.lock(ctx, id)
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
	pipe := s.rdb.TxPipeline()
	if r.State == nil || len(r.People) == 0 {
		pipe.Del(ctx, s.key(id))
		pipe.SRem(ctx, s.set(), id)
	} else {
		b, err := rooms.Encode(r)
		if err != nil {
			return err
		}
		pipe.Set(ctx, s.key(id), b, 0)
		pipe.SAdd(ctx, s.set(), id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("save room %s: %w", id, err)
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
