package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/loopback"
)

// fileTimeout bounds the setup of a sub-benchmark and each file; one that takes longer fails it.
const fileTimeout = 60 * time.Second

// fileBytes is the size of the payload each iteration moves: FILE_MB MiB, default 64.
func fileBytes(tb testing.TB) int64 {
	mb := 64
	if s := os.Getenv("FILE_MB"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 || v > 1024 {
			tb.Fatalf("FILE_MB=%q: want a whole number of MiB from 1 to 1024", s)
		}
		mb = v
	}
	return int64(mb) << 20
}

// fileRTT is the round-trip time FILE_RTT_MS asks for (default 0: loopback; see peerAPIs).
func fileRTT(tb testing.TB) time.Duration {
	s := os.Getenv("FILE_RTT_MS")
	if s == "" || s == "0" {
		return 0
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > 1000 {
		tb.Fatalf("FILE_RTT_MS=%q: want a whole number of milliseconds from 0 to 1000", s)
	}
	return time.Duration(v) * time.Millisecond
}

// peerAPIs returns a function that makes the API of each peer of a sub-benchmark, with tune's settings
// (and pion's log discarded unless a tune logs).
//
// With no FILE_RTT_MS (or 0) every call returns loopback.API(true, tune...): real UDP sockets on
// 127.0.0.1. With FILE_RTT_MS=N each call returns an API whose peer is on a network of its own
// (pion's vnet: in memory, no sockets) behind one router that delays every packet N/2 ms each way and
// has no bandwidth limit and no queue limit: a path with that round-trip time and nothing else.
func peerAPIs(b *testing.B, tune ...func(*webrtc.SettingEngine)) func() *webrtc.API {
	rtt := fileRTT(b)
	if rtt == 0 {
		return func() *webrtc.API { return loopback.API(true, tune...) }
	}
	quietLog := &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}
	router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", MinDelay: rtt / 2, LoggerFactory: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	if err := router.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { router.Stop() })
	var peers atomic.Int32
	return func() *webrtc.API {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{fmt.Sprintf("10.0.0.%d", 10+peers.Add(1))}})
		if err == nil {
			err = router.AddNet(n)
		}
		if err != nil {
			b.Fatalf("virtual network: %v", err)
		}
		var se webrtc.SettingEngine
		se.LoggerFactory = quietLog
		se.SetNet(n)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		for _, f := range tune {
			f(&se)
		}
		m := &webrtc.MediaEngine{}
		if err := m.RegisterDefaultCodecs(); err != nil {
			b.Fatal(err)
		}
		return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
	}
}

// pattern is 1 MiB of random bytes that every payload repeats: cheap to produce, and not compressible
// or all zeros, should anything on the way care.
var pattern = sync.OnceValue(func() []byte {
	b := make([]byte, 1<<20)
	rand.Read(b)
	return b
})

// patternReader yields n bytes of pattern, over and over from the start.
type patternReader struct {
	n   int64
	off int
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	pat := pattern()
	total := 0
	for len(p) > 0 && r.n > 0 {
		c := copy(p[:min(int64(len(p)), r.n)], pat[r.off:])
		p, r.n, r.off, total = p[c:], r.n-int64(c), (r.off+c)%len(pat), total+c
	}
	return total, nil
}

// countingWriter is where a received file goes: it only counts.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(b []byte) (int, error) { w.n.Add(int64(len(b))); return len(b), nil }

// rawFlow is how a raw pion sender paces itself: messages of msg bytes, and before each one, while
// more than high bytes wait in the channel's buffer, it waits for OnBufferedAmountLow at low.
type rawFlow struct {
	msg       int
	high, low uint64
}

// defaultFlow is what a developer who followed pion's documentation would write: the
// data-channels-flow-control example's marks (1 MiB high, 512 KiB low), with 16 KiB messages, the
// size WebRTC guides recommend for messages that every browser takes (the example's own 1 KiB
// messages are slower still: more messages for the same bytes).
var defaultFlow = rawFlow{msg: 16 << 10, high: 1 << 20, low: 512 << 10}

// tunedFlow is telemed's own pacing (client/transfer.go) without its framing: messages of
// client.MaxChunkMessage bytes, client.SendHighWater and half of it.
var tunedFlow = rawFlow{msg: client.MaxChunkMessage, high: client.SendHighWater, low: client.SendHighWater / 2}

// BenchmarkFileTransfer measures file transfer throughput (MB/s, 10^6 bytes a second) from one Go peer
// to another on loopback, over one reliable, ordered data channel. Each iteration moves FILE_MB MiB
// (default 64); the connection is made once, before the timer starts. FILE_RTT_MS=N moves the peers
// from loopback to a virtual path with an N ms round trip (peerAPIs).
//
//   - pion-default: two pion peer connections in this process, signaled by function calls, with a
//     default SettingEngine except that it gathers only loopback candidates (loopback.API(true)).
//     No framing: the sender sends 16 KiB slices of the payload with pion's flow-control example's
//     marks (defaultFlow); the receiver counts bytes until all have arrived.
//   - pion-tuned: the same pair with exactly telemed's tuning: loopback.API(true,
//     client.TuneSettingEngine), client.MaxChunkMessage-byte messages, client.SendHighWater and half of
//     it (tunedFlow). No framing, no hashing.
//   - telemed: two client.Sessions, a provider and a patient, in a call through a real telemed server
//     (signaling only; the data goes peer to peer), with the same APIs as pion-tuned. Each iteration is
//     one Peer.SendFile from the patient, from a reader that repeats 1 MiB of random bytes, to the
//     provider's OnFile, which counts the bytes; it ends when both sides' Transfer.Wait return nil
//     (the receiver has checked the SHA-256 and the sender has its "done"). So it includes what a file
//     costs beyond the bytes: its own channel (opened and closed per file), the offer, the 8-byte chunk
//     headers, SHA-256 on both sides and the end/done round trip.
//
// Besides MB/s (all the iterations' bytes over their time) each reports:
//
//	Mbit/s       the same in 10^6 bits a second
//	top-MB/s     the fastest single file (iteration) of the run: the rate with no stall
//	stalls/op    SCTP retransmission timeouts (T3-rtx) per file, counted from pion's sctp debug log;
//	             each stops the sender for the RTO, at least 1 s in pion
//	drops/op     datagrams the kernel dropped per file on the peers' UDP sockets, for want of room
//	cpu-ns/B     the process's CPU time (user and system, all threads) per byte moved
//
// Every variant's APIs log pion's sctp scope at debug level into a counter (stallCounter) and nothing
// else; that changes no setting of the transport.
func BenchmarkFileTransfer(b *testing.B) {
	b.Run("pion-default", func(b *testing.B) {
		var stalls stallCounter
		benchRawPair(b, peerAPIs(b, stalls.tune), defaultFlow, &stalls)
	})
	b.Run("pion-tuned", func(b *testing.B) {
		var stalls stallCounter
		benchRawPair(b, peerAPIs(b, client.TuneSettingEngine, stalls.tune), tunedFlow, &stalls)
	})
	b.Run("telemed", benchTelemedFile)
}

// stallCounter counts the SCTP retransmission timeouts (T3-rtx) of the associations of the APIs it
// tunes, from the line pion's sctp package logs at debug level for each ("T3-rtx timed out").
type stallCounter struct{ n atomic.Int64 }

func (c *stallCounter) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("T3-rtx timed out")) {
		c.n.Add(1)
	}
	return len(b), nil
}

// tune sends pion's sctp debug log to c and discards every other log, as loopback.API(true) does.
func (c *stallCounter) tune(se *webrtc.SettingEngine) {
	se.LoggerFactory = &logging.DefaultLoggerFactory{
		Writer:          c,
		DefaultLogLevel: logging.LogLevelDisabled,
		ScopeLevels:     map[string]logging.LogLevel{"sctp": logging.LogLevelDebug},
	}
}

// meter measures a benchmark's timed part: each file's time, and beyond time the SCTP stalls, the
// datagrams dropped on the process's UDP sockets and its CPU time.
type meter struct {
	size   int64
	stalls *stallCounter
	files  []time.Duration
	stall0 int64
	drops  int64
	cpu    time.Duration
}

// startMeter starts measuring files of size bytes; call it just before the timed loop.
func startMeter(size int64, stalls *stallCounter) *meter {
	return &meter{size: size, stalls: stalls, stall0: stalls.n.Load(), drops: udpDrops(), cpu: processCPU()}
}

// file records one file's time.
func (m *meter) file(d time.Duration) { m.files = append(m.files, d) }

// report reports the figures of the files recorded (see BenchmarkFileTransfer). Call it before closing
// the peers, whose sockets it reads.
func (m *meter) report(b *testing.B) {
	var total, fastest time.Duration
	for _, d := range m.files {
		total += d
		if fastest == 0 || d < fastest {
			fastest = d
		}
	}
	n := m.size * int64(len(m.files))
	if total <= 0 || n == 0 {
		return
	}
	b.ReportMetric(float64(n)*8/1e6/total.Seconds(), "Mbit/s")
	b.ReportMetric(float64(m.size)/1e6/fastest.Seconds(), "top-MB/s")
	b.ReportMetric(float64(m.stalls.n.Load()-m.stall0)/float64(len(m.files)), "stalls/op")
	if drops := udpDrops(); m.drops >= 0 && drops >= 0 {
		b.ReportMetric(float64(drops-m.drops)/float64(len(m.files)), "drops/op")
	}
	if cpu := processCPU(); m.cpu >= 0 && cpu >= 0 {
		b.ReportMetric(float64(cpu-m.cpu)/float64(n), "cpu-ns/B")
	}
}

// udpDrops returns how many datagrams the kernel has dropped, for want of room in their receive
// buffers, on the UDP sockets this process has open (the last column of /proc/net/udp, for the
// sockets among /proc/self/fd), or -1 where there is no /proc.
func udpDrops() int64 {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	mine := make(map[string]bool)
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil {
			if inode, ok := strings.CutPrefix(l, "socket:["); ok {
				mine[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	var total int64
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) >= 13 && mine[f[9]] {
				if n, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil {
					total += n
				}
			}
		}
	}
	return total
}

// processCPU returns the user and system CPU time this process has used (all threads), from
// /proc/self/stat in clock ticks of 10 ms, or -1 where there is no /proc.
func processCPU() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	// The fields after the command (which is in parentheses and may hold spaces): state is field 3,
	// utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// rawReceiver counts what arrives on the receiving channel and says when a goal is reached.
type rawReceiver struct {
	got     atomic.Int64
	goal    atomic.Int64
	arrived chan struct{}
}

func (r *rawReceiver) onMessage(m webrtc.DataChannelMessage) {
	n := int64(len(m.Data))
	total := r.got.Add(n)
	if g := r.goal.Load(); total >= g && total-n < g {
		select {
		case r.arrived <- struct{}{}:
		default:
		}
	}
}

// connectRawPair connects two pion peers made by newAPI, signaled by function calls, with one
// reliable, ordered data channel from the offerer, whose messages go to onMessage on the answerer.
// It returns once the channel is open on both sides; closeAll releases the peers.
func connectRawPair(ctx context.Context, newAPI func() *webrtc.API, onMessage func(webrtc.DataChannelMessage)) (send *webrtc.DataChannel, closeAll func(), err error) {
	return connectRawChannel(ctx, newAPI, "bench-file", nil, onMessage) // reliable and ordered
}

// connectRawChannel is connectRawPair with a channel of the given label and init.
func connectRawChannel(ctx context.Context, newAPI func() *webrtc.API, label string, init *webrtc.DataChannelInit,
	onMessage func(webrtc.DataChannelMessage)) (send *webrtc.DataChannel, closeAll func(), err error) {
	var peers []*webrtc.PeerConnection
	closeAll = func() {
		for _, pc := range peers {
			pc.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	offerPC, err := newAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, closeAll, err
	}
	peers = append(peers, offerPC)
	answerPC, err := newAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, closeAll, err
	}
	peers = append(peers, answerPC)

	sendOpen, recvOpen := make(chan struct{}), make(chan struct{})
	answerPC.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(onMessage)
		dc.OnOpen(func() { close(recvOpen) })
	})
	send, err = offerPC.CreateDataChannel(label, init)
	if err != nil {
		return nil, closeAll, err
	}
	send.OnOpen(func() { close(sendOpen) })

	offerer, answerer := &directPeer{pc: offerPC}, &directPeer{pc: answerPC}
	offerer.trickleTo(answerer)
	answerer.trickleTo(offerer)
	offer, err := offerPC.CreateOffer(nil)
	if err != nil {
		return nil, closeAll, err
	}
	if err := offerPC.SetLocalDescription(offer); err != nil {
		return nil, closeAll, err
	}
	if err := answerer.setRemote(*offerPC.LocalDescription()); err != nil {
		return nil, closeAll, err
	}
	answer, err := answerPC.CreateAnswer(nil)
	if err != nil {
		return nil, closeAll, err
	}
	if err := answerPC.SetLocalDescription(answer); err != nil {
		return nil, closeAll, err
	}
	if err := offerer.setRemote(*answerPC.LocalDescription()); err != nil {
		return nil, closeAll, err
	}
	for _, open := range []chan struct{}{sendOpen, recvOpen} {
		select {
		case <-open:
		case <-ctx.Done():
			return nil, closeAll, errors.New("data channel did not open: " + ctx.Err().Error())
		}
	}
	return send, closeAll, nil
}

// sendRaw sends size bytes of pattern on dc in messages of f.msg bytes, pacing itself by f.
func sendRaw(ctx context.Context, dc *webrtc.DataChannel, low <-chan struct{}, size int64, f rawFlow) error {
	pat := pattern()
	off := 0
	for left := size; left > 0; {
		for dc.BufferedAmount() > f.high {
			select {
			case <-low:
			case <-ctx.Done():
				return fmt.Errorf("sending: %w", ctx.Err())
			}
		}
		n := int(min(int64(f.msg), left, int64(len(pat)-off)))
		if err := dc.Send(pat[off : off+n]); err != nil {
			return fmt.Errorf("sending: %w", err)
		}
		off = (off + n) % len(pat)
		left -= int64(n)
	}
	return nil
}

func benchRawPair(b *testing.B, newAPI func() *webrtc.API, f rawFlow, stalls *stallCounter) {
	size := fileBytes(b)
	pattern()
	ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
	recv := &rawReceiver{arrived: make(chan struct{}, 1)}
	send, closeAll, err := connectRawPair(ctx, newAPI, recv.onMessage)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll()
	low := make(chan struct{}, 1)
	send.SetBufferedAmountLowThreshold(f.low)
	send.OnBufferedAmountLow(func() {
		select {
		case low <- struct{}{}:
		default:
		}
	})

	b.SetBytes(size)
	m := startMeter(size, stalls)
	b.ResetTimer()
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
		start := time.Now()
		recv.goal.Store(recv.got.Load() + size)
		if err := sendRaw(ctx, send, low, size, f); err != nil {
			b.Fatal(err)
		}
		select {
		case <-recv.arrived:
		case <-ctx.Done():
			b.Fatalf("%d of %d bytes arrived: %v", recv.got.Load()-(recv.goal.Load()-size), size, ctx.Err())
		}
		m.file(time.Since(start))
		cancel()
	}
	b.StopTimer()
	m.report(b)
}

// fileCall is a provider and a patient in a call through a telemed server; the provider counts the
// files it is sent.
type fileCall struct {
	prov, pat         *client.Session
	provPeer, patPeer *client.Peer
	files             chan *client.Transfer
	sink              *countingWriter
}

func setUpFileCall(ctx context.Context, b *testing.B, newAPI func() *webrtc.API) *fileCall {
	e := startServer(b)
	c := e.newConsultation(b)
	fc := &fileCall{files: make(chan *client.Transfer, 4), sink: &countingWriter{}}
	var err error
	fc.prov, err = client.Join(ctx, client.Config{
		Link: c.StartURL, API: newAPI(), Logger: quiet, NoReconnect: true,
		OnFile: func(_ *client.Peer, t *client.Transfer) io.Writer {
			fc.files <- t
			return fc.sink
		},
	})
	if err != nil {
		b.Fatalf("provider join: %v", err)
	}
	b.Cleanup(func() { fc.prov.Close() })
	fc.pat, err = client.Join(ctx, client.Config{
		Link: c.JoinURL, Name: "Ada Lovelace", API: newAPI(), Logger: quiet, NoReconnect: true,
	})
	if err != nil {
		b.Fatalf("patient join: %v", err)
	}
	b.Cleanup(func() { fc.pat.Close() })
	if _, err := fc.prov.WaitWaiting(ctx); err != nil {
		b.Fatal(err)
	}
	if err := fc.prov.Admit(ctx, fc.pat.ID()); err != nil {
		b.Fatal(err)
	}
	if fc.patPeer, err = fc.pat.WaitPeer(ctx); err != nil {
		b.Fatal(err)
	}
	if fc.provPeer, err = fc.prov.WaitPeer(ctx); err != nil {
		b.Fatal(err)
	}
	// The connection is up once the chat channel is open on both sides.
	for _, p := range []*client.Peer{fc.patPeer, fc.provPeer} {
		if err := p.WaitChat(ctx); err != nil {
			b.Fatalf("the chat channel never opened: %v", err)
		}
	}
	return fc
}

func benchTelemedFile(b *testing.B) {
	size := fileBytes(b)
	pattern()
	ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
	// On loopback, loopbackAPI's settings (loopback.API(true, client.TuneSettingEngine)) with the stall
	// counter. The signaling goes to the server on 127.0.0.1 either way.
	var stalls stallCounter
	fc := setUpFileCall(ctx, b, peerAPIs(b, client.TuneSettingEngine, stalls.tune))
	cancel()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fc.pat.Leave(ctx)
		fc.prov.Leave(ctx)
	}()

	b.SetBytes(size)
	m := startMeter(size, &stalls)
	b.ResetTimer()
	for i := range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
		start := time.Now()
		before := fc.sink.n.Load()
		info := client.FileInfo{Name: fmt.Sprintf("scan-%d.bin", i), MIME: "application/octet-stream", Size: size}
		sent, err := fc.patPeer.SendFile(ctx, info, &patternReader{n: size})
		if err != nil {
			b.Fatal(err)
		}
		var got *client.Transfer
		select {
		case got = <-fc.files:
		case <-ctx.Done():
			b.Fatalf("the provider was offered no file: %v", ctx.Err())
		}
		if err := got.Wait(ctx); err != nil {
			b.Fatalf("receiving (%d of %d bytes): %v", fc.sink.n.Load()-before, size, err)
		}
		if err := sent.Wait(ctx); err != nil {
			b.Fatalf("sending: %v", err)
		}
		m.file(time.Since(start))
		cancel()
		if n := fc.sink.n.Load() - before; n != size {
			b.Fatalf("the provider got %d bytes, want %d", n, size)
		}
	}
	b.StopTimer()
	m.report(b)
}
