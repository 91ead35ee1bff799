// Package clustertest gives tests a real Redis: the shared one named by TELEMED_TEST_REDIS with a key
// prefix of their own, or a redis-server of their own that they may stop and start again.
package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable with the URL of the Redis that tests may use, such as
// redis://127.0.0.1:6379/0.
const EnvURL = "TELEMED_TEST_REDIS"

// unavailable skips the test, or fails it in CI (CI=true), where a missing Redis must not pass
// for a green run.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI=true: CI must run the tests against a real Redis", why)
	}
	t.Skip(why)
}

// URL returns the URL of the shared test Redis, or skips the test when EnvURL is unset.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		unavailable(t, EnvURL+" is not set (such as redis://127.0.0.1:6379/0): the tests against Redis are skipped")
	}
	return u
}

// Prefix returns a key prefix of the test's own, and deletes every key under it when the test ends,
// so that tests can share one Redis and leave nothing behind.
func Prefix(t testing.TB, url string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "telemedtest:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		if err := DeleteKeys(context.Background(), url, prefix); err != nil {
			t.Errorf("delete the test's keys: %v", err)
		}
	})
	return prefix
}

// DeleteKeys deletes every key that starts with prefix.
func DeleteKeys(ctx context.Context, url, prefix string) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opts)
	defer c.Close()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

// Server is a redis-server started by a test on a free loopback port, without persistence: what it
// holds is lost when it stops.
type Server struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
	dir  string // where it keeps its data across a Stop, or "" for none
}

// StartServer starts a redis-server of the test's own, stopped when the test ends. It skips the test
// when redis-server is not installed.
func StartServer(t testing.TB) *Server { return startServer(t, "") }

// StartKeepingServer is StartServer with the data kept on disk (an append-only file written at
// every command), so that what was in Redis is there again after Stop and Start, as with a Redis
// that an operator restarts.
func StartKeepingServer(t testing.TB) *Server { return startServer(t, t.TempDir()) }

func startServer(t testing.TB, dir string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server is not installed: the tests that stop and start Redis are skipped")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, port: port, dir: dir}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

// Start starts the server again on its port, after Stop, and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("redis-server is already running")
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"}
	if s.dir != "" {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always", "--dir", s.dir)
	} else {
		args = append(args, "--appendonly", "no")
	}
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d does not answer after 10s", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, so that a keeping server's file is complete) and waits for it to
// exit. It does nothing if the server is stopped.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	s.cmd = nil
}
