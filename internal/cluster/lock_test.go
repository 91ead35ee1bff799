package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/cluster/clustertest"
)

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
