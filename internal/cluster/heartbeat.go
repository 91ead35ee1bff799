package cluster

import (
	"context"
	"fmt"
	"time"
)

// A node's heartbeat is a key with a TTL, refreshed by the node while it runs: a node that crashes
// or loses Redis stops refreshing it, and the key's expiry tells the other nodes, with no message
// that could be lost on the way.

func (r *Redis) heartbeatKey(nodeID string) string { return r.Key("node", nodeID) }

// beat writes this node's heartbeat once. Its value is when the node started beating, for an
// operator looking at the keys.
func (r *Redis) beat(ctx context.Context) error {
	err := r.client.Set(ctx, r.heartbeatKey(r.nodeID), time.Now().UTC().Format(time.RFC3339), r.heartbeatTTL).Err()
	if err != nil {
		return fmt.Errorf("write the heartbeat of node %s to redis at %s: %w", r.nodeID, r.addr, err)
	}
	return nil
}

// keepBeating refreshes the heartbeat every third of its TTL until ctx ends, so that two refreshes
// in a row may fail before the others take this node for dead. A lost Redis is logged once, and
// again when it is back.
func (r *Redis) keepBeating(ctx context.Context) {
	defer close(r.heartbeatDone)
	t := time.NewTicker(r.heartbeatTTL / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bctx, cancel := context.WithTimeout(ctx, r.heartbeatTTL/3)
		err := r.beat(bctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			r.log.Warn("this node's heartbeat cannot be refreshed: the other nodes will take it for dead until Redis answers", "node", r.nodeID, "err", err)
		case err == nil && failing:
			failing = false
			r.log.Info("this node's heartbeat is refreshed again", "node", r.nodeID)
		}
	}
}

// Alive reports whether the node with this id has refreshed its heartbeat within its TTL: false
// for a node that was closed, crashed, or has not reached Redis for that long.
func (r *Redis) Alive(ctx context.Context, nodeID string) (bool, error) {
	n, err := r.client.Exists(ctx, r.heartbeatKey(nodeID)).Result()
	if err != nil {
		return false, fmt.Errorf("heartbeat of node %s in redis at %s: %w", nodeID, r.addr, err)
	}
	return n == 1, nil
}
