package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LockTTL bounds how long a node that died holding a room's lock keeps the others out of it; an
// update takes a few round trips, far less.
const LockTTL = 5 * time.Second

// unlock deletes a lock only if it still holds our token: after an expiry another node may hold it.
var unlock = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// ErrLockTimeout is returned when a lock could not be had in time.
var ErrLockTimeout = errors.New("held by another node for too long")

// Lock takes the lock named key in rdb (a key set with NX and an expiry of LockTTL, with a random
// token that only its holder's release deletes), waiting for it at most LockTTL. It serves any work
// that one node at a time must do: a room's update, a patient's upload.
func Lock(ctx context.Context, rdb redis.UniversalClient, key string) (release func(), err error) {
	_, release, err = LockToken(ctx, rdb, key)
	return release, err
}

// LockToken is Lock, with the token that names this holding: a write that must happen only while
// the lock is held checks it (a script comparing the lock's value), since a holder slower than
// LockTTL has lost the lock.
func LockToken(ctx context.Context, rdb redis.UniversalClient, key string) (token string, release func(), err error) {
	var b [12]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	deadline := time.Now().Add(LockTTL)
	wait := time.Millisecond
	for {
		ok, err := rdb.SetNX(ctx, key, token, LockTTL).Result()
		if err != nil {
			return "", nil, err
		}
		if ok {
			return token, func() { unlock.Run(context.WithoutCancel(ctx), rdb, []string{key}, token) }, nil
		}
		if time.Now().After(deadline) {
			return "", nil, ErrLockTimeout
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
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
