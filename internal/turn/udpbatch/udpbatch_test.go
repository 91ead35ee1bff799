package udpbatch

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// TestBatchConn: datagrams written by many goroutines at once all arrive, whole and from the right
// address, and are read back one by one from batches.
func TestBatchConn(t *testing.T) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		SetBuffers(c)
		t.Cleanup(func() { c.Close() })
		return c
	}
	rawA, rawB := listen(), listen()
	a := New(rawA, 8, true)
	b := New(rawB, 8, false)

	const writers, each = 8, 30 // 240 datagrams: fewer than the queue bound (256), so none is dropped
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				msg := []byte(fmt.Sprintf("writer %d datagram %d", w, i))
				if n, err := a.WriteTo(msg, rawB.LocalAddr()); err != nil || n != len(msg) {
					t.Errorf("write: %d %v", n, err)
				}
			}
		}()
	}
	wg.Wait()

	seen := map[string]bool{}
	buf := make([]byte, 1600)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < writers*each {
		n, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(seen), err)
		}
		if from.String() != rawA.LocalAddr().String() {
			t.Fatalf("datagram from %s, want %s", from, rawA.LocalAddr())
		}
		seen[string(buf[:n])] = true
	}
	if !seen["writer 7 datagram 29"] || !seen["writer 0 datagram 0"] {
		t.Fatal("datagrams lost or changed")
	}
}

// TestBatchConnDropsPastTheQueueBound: while one writer is sending, the queue holds at most maxQueued
// datagrams; more are dropped rather than held in memory.
func TestBatchConnDropsPastTheQueueBound(t *testing.T) {
	raw, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := New(raw, 8, true).(*Conn)
	c.wmu.Lock()
	c.flushing = true // as if another writer were sending
	c.wmu.Unlock()
	for i := 0; i < maxQueued+10; i++ {
		if n, err := c.WriteTo([]byte("x"), raw.LocalAddr()); n != 1 || err != nil {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wq) != maxQueued {
		t.Fatalf("%d queued, want the bound %d", len(c.wq), maxQueued)
	}
}
