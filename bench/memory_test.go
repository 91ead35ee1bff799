package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
)

// The idle connections of TestIdleConnectionMemory: patients waiting in waiting rooms, as many in
// each consultation as a busy clinic might have, across many consultations.
const (
	memConsultations   = 100
	memPerConsultation = 10
	memConnections     = memConsultations * memPerConsultation
	memJoinWorkers     = 16
	memSettle          = 3 * time.Second
)

// TestIdleConnectionMemory measures what one idle signaling connection costs the real telemed binary:
// it runs `telemed serve` as a child process on a free loopback port, reads its VmRSS after a warm-up,
// opens 1,000 WebSocket connections that each join a consultation as a patient and stay in its waiting
// room (100 consultations x 10 patients), lets the process settle, and reads VmRSS again. It then makes
// the server dump its goroutines (SIGQUIT, with GOTRACEBACK=all) to count them.
//
// It runs only with TELEMED_BENCH=1, so that `go test ./...` stays fast. TELEMED_BIN names a telemed
// binary to use; without it the test builds one.
func TestIdleConnectionMemory(t *testing.T) {
	if os.Getenv("TELEMED_BENCH") == "" {
		t.Skip("set TELEMED_BENCH=1 to run (it builds telemed and opens 1,000 connections to it)")
	}
	raiseFileLimit(t, 2*memConnections+512)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "telemed-mem-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := os.Getenv("TELEMED_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "telemed")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/telemed")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	data := filepath.Join(dir, "data")

	// Serve.
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// Without the embedded TURN: a waiting Go client's prepared offer would also hold two relay
	// allocations, which docs/benchmarks.md counts separately from the signaling connection.
	serve := exec.CommandContext(ctx, bin, "serve", "--http", addr, "--turn=false", "--data", data)
	serve.Env = append(os.Environ(), "GOTRACEBACK=all")
	serve.Stderr = logFile
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatalf("start telemed serve: %v", err)
	}
	exited := make(chan struct{})
	go func() { serve.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			serve.Process.Kill()
			<-exited
		}
	}()
	baseURL, err := waitRunning(stdout, 30*time.Second)
	if err != nil {
		t.Fatalf("telemed serve: %v\n%s", err, tail(logPath))
	}
	pid := serve.Process.Pid
	t.Logf("telemed serve (pid %d) is running at %s", pid, baseURL)

	// A provider and the consultations, with the command line, as an operator would.
	const email = "grace@clinic.example"
	add := exec.CommandContext(ctx, bin, "provider", "add", "--data", data, "--email", email, "--name", "Dr Grace Hopper", "--password-stdin")
	add.Stdin = strings.NewReader(benchPassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	joinURLs := make([]string, memConsultations)
	for i := range joinURLs {
		out, err := exec.CommandContext(ctx, bin, "consult", "new", "--data", data, "--provider", email, "--json").Output()
		if err != nil {
			t.Fatalf("consult new: %v", err)
		}
		var v struct {
			JoinURL string `json:"join_url"`
		}
		if err := json.Unmarshal(out, &v); err != nil || !strings.HasPrefix(v.JoinURL, baseURL+"/c/") {
			t.Fatalf("consult new printed %q (%v); want a join_url under %s", out, err, baseURL)
		}
		joinURLs[i] = v.JoinURL
	}

	// Warm up: one patient joins and leaves in each of the first ten consultations.
	api := loopbackAPI()
	for _, link := range joinURLs[:10] {
		s, err := joinPatient(ctx, link, api)
		if err != nil {
			t.Fatalf("warm-up join: %v", err)
		}
		s.Leave(ctx)
	}
	time.Sleep(memSettle)
	before := procStatus(t, pid)

	// 1,000 idle connections.
	start := time.Now()
	sessions := make([]*client.Session, memConnections)
	jobs := make(chan int)
	errs := make(chan error, memConnections)
	var wg sync.WaitGroup
	for range memJoinWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				s, err := joinPatient(ctx, joinURLs[i%memConsultations], api)
				if err != nil {
					errs <- err
					continue
				}
				sessions[i] = s
			}
		}()
	}
	for i := range memConnections {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	defer func() {
		var cw sync.WaitGroup
		for _, s := range sessions {
			if s != nil {
				cw.Add(1)
				go func() { defer cw.Done(); s.Close() }()
			}
		}
		cw.Wait()
	}()
	if err := <-errs; err != nil {
		t.Fatalf("join: %v", err)
	}
	joined := time.Since(start)
	time.Sleep(memSettle)
	after := procStatus(t, pid)

	// Count the server's goroutines, and the connections it still serves, from a SIGQUIT dump.
	if err := serve.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("telemed did not exit on SIGQUIT")
	}
	dump, _ := os.ReadFile(logPath)
	goroutines, live := countGoroutines(dump)
	if live != memConnections {
		t.Errorf("the server served %d connections when measured, want %d", live, memConnections)
	}

	per := float64(after["VmRSS"]-before["VmRSS"]) / memConnections
	perAnon := float64(after["RssAnon"]-before["RssAnon"]) / memConnections
	t.Logf("joined %d patients in %v", memConnections, joined.Round(time.Millisecond))
	t.Logf("before: VmRSS %d KiB (RssAnon %d KiB), threads %d", before["VmRSS"], before["RssAnon"], before["Threads"])
	t.Logf("after:  VmRSS %d KiB (RssAnon %d KiB), threads %d", after["VmRSS"], after["RssAnon"], after["Threads"])
	t.Logf("result: %d idle connections (%d consultations x %d waiting patients): %.1f KiB VmRSS per connection (%.1f KiB RssAnon); %d goroutines in the server, %d serving connections (%.2f per connection)",
		memConnections, memConsultations, memPerConsultation, per, perAnon, goroutines, live, float64(goroutines)/memConnections)
}

// TestIdleConnectionHeap explains TestIdleConnectionMemory's figure with the Go runtime's own
// accounting. It runs the server in this process (server.Start), opens the same 1,000 idle connections
// with bare WebSocket clients (which start no goroutines), and reports per connection the goroutines
// and stack the server added, and the heap still in use that the server's connection code allocated,
// split by where: the connection and its outgoing queue (signal.newConn), bufio buffers, the rest.
//
// It runs only with TELEMED_BENCH=1.
func TestIdleConnectionHeap(t *testing.T) {
	if os.Getenv("TELEMED_BENCH") == "" {
		t.Skip("set TELEMED_BENCH=1 to run (it opens 1,000 connections)")
	}
	raiseFileLimit(t, 2*memConnections+512)
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1 // record every allocation from here on
	defer func() { runtime.MemProfileRate = old }()

	e := startServer(t)
	links := make([]string, memConsultations)
	for i := range links {
		links[i] = e.newConsultation(t).JoinURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	conns := make([]*websocket.Conn, 0, memConnections)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for i := range memConnections {
		wsURL, id, token, err := client.ParseLink(links[i%memConsultations])
		if err != nil {
			t.Fatal(err)
		}
		ws, _, err := websocket.Dial(ctx, wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, ws)
		join := `{"type":"join","version":1,"consultation":"` + id + `","token":"` + token + `","name":"Ada Lovelace"}`
		if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
			t.Fatal(err)
		}
		if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"welcome"`) {
			t.Fatalf("join: %v %s", err, data)
		}
	}
	time.Sleep(memSettle)
	runtime.GC()
	runtime.GC() // the heap profile is as of the last completed cycle
	runtime.ReadMemStats(&m1)
	goroutines := runtime.NumGoroutine() - g0

	// Attribute the live heap to the server's connection code by the allocating stacks.
	recs := memProfile(t)
	var queue, bufs, other int64
	for _, r := range recs {
		inuse := r.InUseBytes()
		if inuse == 0 {
			continue
		}
		server, inNewConn, inBufio := false, false, false
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if f.Function == "net/http.(*conn).serve" || strings.Contains(f.Function, "/internal/signal.") {
				server = true
			}
			if strings.HasSuffix(f.Function, "/internal/signal.newConn") {
				inNewConn = true
			}
			if strings.HasPrefix(f.Function, "bufio.") {
				inBufio = true
			}
			if !more {
				break
			}
		}
		switch {
		case !server:
		case inNewConn:
			queue += inuse
		case inBufio:
			bufs += inuse
		default:
			other += inuse
		}
	}
	kib := func(n int64) float64 { return float64(n) / 1024 / memConnections }
	stack := int64(m1.StackInuse) - int64(m0.StackInuse)
	t.Logf("result: per idle connection, the server's goroutines: %.2f; their stacks: %.1f KiB; heap in use: %.1f KiB (signal.newConn, mostly its outgoing queue: %.1f KiB; bufio buffers: %.1f KiB; other: %.1f KiB)",
		float64(goroutines)/memConnections, kib(stack), kib(queue+bufs+other), kib(queue), kib(bufs), kib(other))
	t.Logf("whole process (server and clients): HeapInuse +%.1f KiB, StackInuse +%.1f KiB, Sys +%.1f KiB per connection",
		kib(int64(m1.HeapInuse)-int64(m0.HeapInuse)), kib(stack), kib(int64(m1.Sys)-int64(m0.Sys)))
}

// memProfile returns the heap profile's records.
func memProfile(t *testing.T) []runtime.MemProfileRecord {
	n, _ := runtime.MemProfile(nil, true)
	for range 10 {
		recs := make([]runtime.MemProfileRecord, n+64)
		m, ok := runtime.MemProfile(recs, true)
		if ok {
			return recs[:m]
		}
		n = m
	}
	t.Fatal("the heap profile kept growing")
	return nil
}

// joinPatient joins a consultation as a patient, who waits in its waiting room. The patients share
// api: they never create a peer connection.
func joinPatient(ctx context.Context, link string, api *webrtc.API) (*client.Session, error) {
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return client.Join(jctx, client.Config{Link: link, Name: "Ada Lovelace", Logger: quiet, NoReconnect: true, API: api})
}

// raiseFileLimit raises this process's open file limit, which `telemed serve` inherits, to at least n.
func raiseFileLimit(t *testing.T, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("open file limit is at most %d; need %d", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise open file limit to %d: %v", n, err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var runningRE = regexp.MustCompile(`telemed is running at (\S+)`)

// waitRunning reads serve's output until it says where it runs, then drains the rest in the background.
func waitRunning(r io.Reader, timeout time.Duration) (string, error) {
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := runningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			return "", fmt.Errorf("exited without saying it runs")
		}
		return u, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("did not say it runs within %v", timeout)
	}
}

// procStatus reads the kB and count fields of /proc/PID/status (VmRSS, RssAnon, Threads, ...).
func procStatus(t *testing.T, pid int) map[string]int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

var goroutineRE = regexp.MustCompile(`(?m)^goroutine [1-9][0-9]* [^\n]*\[`)

// countGoroutines counts the goroutines in a Go traceback dump, and among them the connections' writer
// loops (one per live signaling connection).
func countGoroutines(dump []byte) (goroutines, conns int) {
	locs := goroutineRE.FindAllIndex(dump, -1)
	for i, loc := range locs {
		end := len(dump)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		if bytes.Contains(dump[loc[0]:end], []byte("signal.(*conn).writeLoop")) {
			conns++
		}
	}
	return len(locs), conns
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
