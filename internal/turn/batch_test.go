package turn

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
		setBuffers(c)
		t.Cleanup(func() { c.Close() })
		return c
	}
	rawA, rawB := listen(), listen()
	a := newBatchConn(rawA, 8, true)
	b := newBatchConn(rawB, 8, false)

	const writers, each = 8, 50 // 400 datagrams: fewer than the queue bound, so none is dropped
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
	if !seen["writer 7 datagram 49"] || !seen["writer 0 datagram 0"] {
		t.Fatal("datagrams lost or changed")
	}
}
