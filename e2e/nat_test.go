package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
)

// The real NAT test puts the patient and the provider behind two different NATs, made of Linux network
// namespaces, veth pairs and iptables MASQUERADE, which cannot reach each other: the only way between
// them is telemed's TURN relay. The Go clients must find that way on their own, from the ICE servers
// the server hands them, and carry media and data over it.
//
//	           inet: telemed on 192.0.2.1 (lo), HTTP :8080, TURN :3478; forwards nothing
//	           /                                               \
//	  203.0.113.1/24                                     198.51.100.1/24
//	  natA: WAN 203.0.113.2, MASQUERADE               natB: WAN 198.51.100.2, MASQUERADE
//	  LAN 10.0.1.1/24                                  LAN 10.0.2.1/24
//	        |                                                 |
//	  peerA 10.0.1.2: the provider                     peerB 10.0.2.2: the patient
//
// The addresses the server and the NATs use on "the internet" are from the TEST-NET ranges: the relay
// refuses private ranges (so it will not relay to 10.0.x.x host candidates), and the documentation
// ranges are public as far as it knows, like real NAT addresses would be.
//
// The peers run in helper processes, because a process (or rather each socket) lives in one network
// namespace: the test binary starts itself again under `ip netns exec`, with TELEMED_NAT_ROLE saying
// which part to play (see TestNATPeerProcess).

const (
	natServerIP = "192.0.2.1"
	natHTTPAddr = natServerIP + ":8080"
	natBaseURL  = "http://" + natHTTPAddr
	natWANA     = "203.0.113.2"
	natWANB     = "198.51.100.2"
	natLANB     = "10.0.2.2"

	// natRoleEnv selects the part a helper process plays: probe, provider or patient.
	natRoleEnv = "TELEMED_NAT_ROLE"
	// natLinkEnv is the consultation link a provider or patient helper joins with.
	natLinkEnv = "TELEMED_NAT_LINK"
	// natUnreachableEnv lists addresses (comma-separated) a probe must not be able to reach.
	natUnreachableEnv = "TELEMED_NAT_UNREACHABLE"
	// natResultPrefix starts the one line in which a helper reports, as JSON.
	natResultPrefix = "NAT-RESULT "
)

// natResult is what a helper process reports to the test.
type natResult struct {
	Role         string   `json:"role"`
	Error        string   `json:"error,omitempty"`
	ICEURLs      []string `json:"ice_urls,omitempty"` // from the welcome, without credentials
	Packets      int      `json:"packets"`
	FirstPayload string   `json:"first_payload,omitempty"`
	Message      string   `json:"message,omitempty"`
	LocalType    string   `json:"local_type,omitempty"` // the selected candidate pair
	LocalAddr    string   `json:"local_addr,omitempty"`
	RemoteType   string   `json:"remote_type,omitempty"`
	RemoteAddr   string   `json:"remote_addr,omitempty"`
	Local        []string `json:"local_candidates,omitempty"` // "type ip:port", as gathered
	Remote       []string `json:"remote_candidates,omitempty"`
	Probes       []string `json:"probes,omitempty"` // what a probe found, one line per address
}

// TestNATTraversal runs a consultation between two Go clients behind two NATs that cannot reach each
// other, through telemed's embedded TURN relay. It needs root, ip (iproute2) and iptables; without
// them it skips, except in CI, where the test command installs them and a skip would hide a broken test.
func TestNATTraversal(t *testing.T) {
	lab := newNATLab(t)
	bin := buildTelemed(t)
	lab.build()

	// The CLI only touches the SQLite file, so it runs here, in the test's own namespace, before the
	// server starts; the links it prints point at the server's address inside the lab.
	data, c := newLabConsultation(t, bin, natBaseURL)

	server := lab.start(t, "server", lab.inet, nil, bin, "serve", "--http", natHTTPAddr, "--base-url", natBaseURL,
		"--data", data, "--log-level", "debug",
		"--turn-addr", "0.0.0.0:3478", "--turn-public-ip", natServerIP, "--turn-secret", rand.Text())

	// From each side: the server answers (through the NAT), the other NAT and the other peer do not.
	probeA := lab.startHelper(t, "probeA", lab.peerA, "probe", natUnreachableEnv+"="+natWANB+","+natLANB)
	probeB := lab.startHelper(t, "probeB", lab.peerB, "probe", natUnreachableEnv+"="+natWANA+",10.0.1.2")
	for _, p := range []*natProc{probeA, probeB} {
		r := p.wait(t, 20*time.Second)
		if r.Error != "" {
			lab.dump(t, server, probeA, probeB)
			t.Fatalf("%s: %s", p.name, r.Error)
		}
		t.Logf("%s: %s", p.name, strings.Join(r.Probes, "; "))
	}

	provider := lab.startHelper(t, "provider", lab.peerA, "provider", natLinkEnv+"="+c.StartURL)
	patient := lab.startHelper(t, "patient", lab.peerB, "patient", natLinkEnv+"="+c.JoinURL)
	results := map[string]natResult{}
	for _, p := range []*natProc{provider, patient} {
		results[p.name] = p.wait(t, 45*time.Second)
	}
	// Both have what they need: let them hang up, and see that they exit cleanly.
	exitErrs := map[string]error{"provider": provider.finish(), "patient": patient.finish()}

	failed := false
	for _, who := range []struct{ name, other, wan string }{{"provider", "patient", natWANA}, {"patient", "provider", natWANB}} {
		r := results[who.name]
		b, _ := json.Marshal(r)
		t.Logf("%s: %s", who.name, b)
		if r.Error != "" {
			// What went wrong first; the rest follows from it.
			t.Errorf("%s: %s", who.name, r.Error)
			failed = true
			continue
		}
		var errs []string
		if exitErrs[who.name] != nil {
			errs = append(errs, exitErrs[who.name].Error())
		}
		if r.Packets < 20 || !strings.HasPrefix(r.FirstPayload, "from-"+who.other+"-") {
			errs = append(errs, fmt.Sprintf("received %d media packets starting %q, want at least 20 from the %s", r.Packets, r.FirstPayload, who.other))
		}
		if r.Message != "hello from "+who.other {
			errs = append(errs, fmt.Sprintf("data channel message %q, want %q", r.Message, "hello from "+who.other))
		}
		if r.LocalType != "relay" && r.RemoteType != "relay" {
			errs = append(errs, fmt.Sprintf("selected candidate pair %s %s -> %s %s uses no relay", r.LocalType, r.LocalAddr, r.RemoteType, r.RemoteAddr))
		}
		// The server-reflexive address is where the NAT put this peer's packets: its own public
		// address, which shows that the traffic really went through MASQUERADE.
		if !slices.ContainsFunc(r.Local, func(c string) bool { return strings.HasPrefix(c, "srflx "+who.wan+":") }) {
			errs = append(errs, fmt.Sprintf("no server-reflexive candidate at the NAT's address %s among %q", who.wan, r.Local))
		}
		// Most clients reach TURN over UDP; TCP alone getting through would hide a broken UDP path.
		if !slices.ContainsFunc(r.Local, func(c string) bool { return strings.HasPrefix(c, "relay ") && strings.HasSuffix(c, "over udp)") }) {
			errs = append(errs, fmt.Sprintf("no relay candidate allocated over UDP among %q", r.Local))
		}
		for _, e := range errs {
			t.Errorf("%s: %s", who.name, e)
			failed = true
		}
	}
	if failed || os.Getenv("TELEMED_TEST_LOG") != "" {
		lab.dump(t, server, provider, patient)
	}
}

// TestNATPeerProcess is not a test: it is the part TestNATTraversal's helper processes play inside a
// network namespace, chosen by TELEMED_NAT_ROLE. Run directly, it skips.
func TestNATPeerProcess(t *testing.T) {
	role := os.Getenv(natRoleEnv)
	if role == "" {
		t.Skip("helper process of TestNATTraversal; runs only when it sets " + natRoleEnv)
	}
	// The result goes to standard output as one line, which the test picks out of everything else
	// the process prints (pion's and the client's logs, the testing package's own lines).
	report := func(r natResult) {
		r.Role = role
		b, _ := json.Marshal(r)
		fmt.Printf("%s%s\n", natResultPrefix, b)
		if r.Error != "" {
			t.Error(r.Error)
		}
	}
	switch role {
	case "probe":
		report(natProbe())
	case "provider", "patient":
		natPeer(t, role, report)
	default:
		report(natResult{Error: "unknown role " + role})
	}
}

// natProbe checks the paths out of its namespace: the server must answer (which also waits for it to
// start), and the addresses of natUnreachableEnv must not. A reachable host answers a TCP connection
// to a closed port with a reset ("connection refused"); only silence, or an unreachable error, means
// there is no path. The server's closed port 9 shows the difference on a path that exists.
func natProbe() natResult {
	var r natResult
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get(natBaseURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			r.Error = fmt.Sprintf("the server at %s does not answer /healthz: %v", natBaseURL, err)
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.Probes = append(r.Probes, natServerIP+": /healthz answers")

	reach := func(addr string) (bool, error) {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "9"), 1500*time.Millisecond)
		if err == nil {
			conn.Close()
			return true, nil
		}
		return errors.Is(err, syscall.ECONNREFUSED), err
	}
	if ok, err := reach(natServerIP); !ok {
		r.Error = fmt.Sprintf("tcp to the server's closed port 9: %v, want connection refused", err)
		return r
	}
	r.Probes = append(r.Probes, natServerIP+":9 refused (reachable)")

	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range strings.Split(os.Getenv(natUnreachableEnv), ",") {
		wg.Go(func() {
			ok, err := reach(addr)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				r.Error = fmt.Sprintf("%s is reachable (%v): the NATs are not separated", addr, err)
				return
			}
			r.Probes = append(r.Probes, fmt.Sprintf("%s unreachable (%v)", addr, err))
		})
	}
	wg.Wait()
	return r
}

// natPeer joins the consultation as a provider or patient, sends audio samples and a data-channel
// message, and reports once it has received both from the other side. It then goes on sending until
// the test closes its standard input, so that the other side, perhaps a moment behind, gets its share.
func natPeer(t *testing.T, role string, report func(natResult)) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var r natResult
	var sess *client.Session
	// fail reports what went wrong with what ICE saw, the first thing to look at when a call through
	// NATs does not connect.
	fail := func(format string, args ...any) {
		r.Error = fmt.Sprintf(format, args...)
		if sess != nil {
			if ps := sess.Peers(); len(ps) > 0 {
				r.Error += fmt.Sprintf(" (peer connection %s, ICE %s)", ps[0].PC.ConnectionState(), ps[0].PC.ICEConnectionState())
				natDescribeICE(ps[0].PC, &r)
			}
		}
		report(r)
	}

	s := newSide(t, role)
	cfg := s.config(os.Getenv(natLinkEnv))
	cfg.API = natAPI()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if role == "patient" {
		cfg.DataChannels = []client.DataChannelSpec{{Label: "chat"}}
	}
	sess, err := client.Join(ctx, cfg)
	if err != nil {
		fail("join: %v", err)
		return
	}
	defer sess.Close()
	for _, is := range sess.Welcome().ICEServers {
		r.ICEURLs = append(r.ICEURLs, is.URLs...)
	}

	if role == "provider" {
		w, err := sess.WaitWaiting(ctx)
		if err != nil {
			fail("waiting for the patient: %v", err)
			return
		}
		if err := sess.Admit(ctx, w[0].ID); err != nil {
			fail("admit: %v", err)
			return
		}
	} else if err := sess.WaitAdmitted(ctx); err != nil {
		fail("waiting to be admitted: %v", err)
		return
	}
	go s.sendSamples(ctx)

	peer, err := sess.WaitPeer(ctx)
	if err != nil {
		fail("peer connection not connected: %v", err)
		return
	}
	select {
	case r.Message = <-s.gotMsg:
	case <-ctx.Done():
		fail("no data-channel message from the other side")
		return
	}
	for {
		n, payloads := s.received()
		if n >= 20 {
			r.Packets, r.FirstPayload = n, payloads[0]
			break
		}
		if ctx.Err() != nil {
			fail("only %d media packets from the other side", n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	natDescribeICE(peer.PC, &r)
	report(r)

	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stdinClosed:
	case <-ctx.Done():
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer lcancel()
	sess.Leave(lctx)
}

// natDescribeICE records the candidates and the selected pair of pc.
func natDescribeICE(pc *webrtc.PeerConnection, r *natResult) {
	r.Local, r.Remote = nil, nil
	for _, st := range pc.GetStats() {
		switch c := st.(type) {
		case webrtc.ICECandidateStats:
			line := fmt.Sprintf("%s %s:%d", c.CandidateType, c.IP, c.Port)
			if c.RelayProtocol != "" {
				line += " (to the relay over " + c.RelayProtocol + ")"
			}
			if c.Type == webrtc.StatsTypeLocalCandidate {
				r.Local = append(r.Local, line)
			} else {
				r.Remote = append(r.Remote, line)
			}
		}
	}
	if sctp := pc.SCTP(); sctp != nil {
		pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
		if err == nil && pair != nil {
			r.LocalType, r.LocalAddr = pair.Local.Typ.String(), fmt.Sprintf("%s:%d", pair.Local.Address, pair.Local.Port)
			r.RemoteType, r.RemoteAddr = pair.Remote.Typ.String(), fmt.Sprintf("%s:%d", pair.Remote.Address, pair.Remote.Port)
		}
	}
}

// natAPI is a pion API for a peer inside the lab: every interface but loopback, as on a real machine,
// IPv4 UDP only (the lab has no IPv6 beyond link-local addresses, whose candidates would only add
// pairs that fail), and no mDNS, which would hide host addresses behind names nobody resolves here.
func natAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic("default codecs: " + err.Error()) // fixed input: cannot fail
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
}

// natLab is the set of network namespaces of one test run, named after the test process so that runs
// side by side do not collide. It never changes the network of the namespace the test runs in.
type natLab struct {
	t                              *testing.T
	ip, iptables                   string
	inet, natA, natB, peerA, peerB string
}

// newNATLab checks that namespaces can be made here, skipping (or, in CI, failing) when they cannot.
func newNATLab(t *testing.T) *natLab {
	t.Helper()
	lacking := func(why string) {
		t.Helper()
		unavailable(t, why, "CI runs this test as root, with the Debian packages iproute2 and iptables installed by scripts/test",
			"the NAT test needs root and the Debian packages iproute2 and iptables")
	}
	if os.Geteuid() != 0 {
		lacking("not root")
	}
	l := &natLab{t: t}
	var err error
	if l.ip, err = exec.LookPath("ip"); err != nil {
		lacking("no ip command")
	}
	if l.iptables, err = exec.LookPath("iptables"); err != nil {
		lacking("no iptables command")
	}
	prefix := fmt.Sprintf("telemed-nat%d-", os.Getpid())
	l.inet, l.natA, l.natB, l.peerA, l.peerB = prefix+"inet", prefix+"natA", prefix+"natB", prefix+"peerA", prefix+"peerB"
	// A first namespace tells whether this machine lets us make them at all (a container may not).
	if out, err := exec.Command(l.ip, "netns", "add", l.inet).CombinedOutput(); err != nil {
		lacking(fmt.Sprintf("cannot make a network namespace: %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		for _, ns := range []string{l.peerA, l.peerB, l.natA, l.natB, l.inet} {
			// Deleting a namespace deletes its veth ends, and so the pairs.
			exec.Command(l.ip, "netns", "del", ns).Run()
		}
	})
	return l
}

// build makes the topology drawn at the top of this file.
func (l *natLab) build() {
	l.t.Helper()
	for _, ns := range []string{l.natA, l.natB, l.peerA, l.peerB} {
		l.ipCmd("netns", "add", ns)
	}
	for _, ns := range []string{l.inet, l.natA, l.natB, l.peerA, l.peerB} {
		l.ipCmd("-n", ns, "link", "set", "lo", "up")
	}
	// The server's address sits on inet's loopback (this kernel may lack the dummy link type), routed
	// to from both NATs through their veths.
	l.ipCmd("-n", l.inet, "addr", "add", natServerIP+"/32", "dev", "lo")
	// inet is the internet between two NATs, but one that does not carry traffic from one to the other:
	// without forwarding, natA can reach inet's own addresses (the server) and nothing behind inet.
	l.inNS(l.inet, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	l.inNS(l.inet, l.iptables, "-P", "FORWARD", "DROP")
	for _, side := range []struct{ nat, peer, inetDev, inetIP, wanIP, lan string }{
		{l.natA, l.peerA, "wanA", "203.0.113.1", natWANA, "10.0.1"},
		{l.natB, l.peerB, "wanB", "198.51.100.1", natWANB, "10.0.2"},
	} {
		// Each link is made with its ends already in their namespaces, so the test's own namespace
		// never holds them, even for a moment, and names cannot clash with its interfaces.
		l.ipCmd("link", "add", side.inetDev, "netns", l.inet, "type", "veth", "peer", "name", "wan", "netns", side.nat)
		l.ipCmd("-n", l.inet, "addr", "add", side.inetIP+"/24", "dev", side.inetDev)
		l.ipCmd("-n", l.inet, "link", "set", side.inetDev, "up")
		// No route hint makes 192.0.2.1 the source of the server's answers: telemed must answer from
		// the address it was asked on, though the kernel would pick the veth's own address for a
		// socket bound to 0.0.0.0, and the NAT would drop such answers.
		l.ipCmd("-n", side.nat, "addr", "add", side.wanIP+"/24", "dev", "wan")
		l.ipCmd("-n", side.nat, "link", "set", "wan", "up")
		l.ipCmd("-n", side.nat, "route", "add", "default", "via", side.inetIP)

		l.ipCmd("link", "add", "lan", "netns", side.nat, "type", "veth", "peer", "name", "eth0", "netns", side.peer)
		l.ipCmd("-n", side.nat, "addr", "add", side.lan+".1/24", "dev", "lan")
		l.ipCmd("-n", side.nat, "link", "set", "lan", "up")
		l.inNS(side.nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		l.inNS(side.nat, l.iptables, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")

		l.ipCmd("-n", side.peer, "addr", "add", side.lan+".2/24", "dev", "eth0")
		l.ipCmd("-n", side.peer, "link", "set", "eth0", "up")
		l.ipCmd("-n", side.peer, "route", "add", "default", "via", side.lan+".1")
	}
}

func (l *natLab) ipCmd(args ...string) {
	l.t.Helper()
	natRun(l.t, nil, l.ip, args...)
}

func (l *natLab) inNS(ns string, args ...string) {
	l.t.Helper()
	natRun(l.t, nil, l.ip, append([]string{"netns", "exec", ns}, args...)...)
}

// startHelper starts this test binary again inside ns, playing role.
func (l *natLab) startHelper(t *testing.T, name, ns, role string, env ...string) *natProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, natRoleEnv+"="+role)
	return l.start(t, name, ns, env, self, "-test.run=^TestNATPeerProcess$", "-test.v", "-test.count=1", "-test.timeout=60s")
}

// start runs a program inside ns, collecting its output and the result line it may print. The process
// is killed when the test ends, if it has not exited by then.
func (l *natLab) start(t *testing.T, name, ns string, env []string, prog string, args ...string) *natProc {
	t.Helper()
	p := &natProc{name: name, results: make(chan natResult, 2), exited: make(chan struct{})}
	p.cmd = exec.Command(l.ip, append([]string{"netns", "exec", ns, prog}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.out.onLine = func(line string) {
		if rest, ok := strings.CutPrefix(line, natResultPrefix); ok {
			var r natResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				r.Error = fmt.Sprintf("bad result line %q: %v", line, err)
			}
			select {
			case p.results <- r:
			default:
			}
		}
	}
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	// `ip netns exec` execs the program, so the process started is the program itself: killing it
	// leaves nothing behind.
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// dump shows what the processes printed, for a failed run.
func (l *natLab) dump(t *testing.T, procs ...*natProc) {
	t.Helper()
	for _, p := range procs {
		t.Logf("---- output of %s ----\n%s", p.name, p.out.String())
	}
}

// natProc is a process running in one of the lab's namespaces.
type natProc struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     lineBuffer
	results chan natResult
	exited  chan struct{}
	err     error // once exited is closed
}

// wait returns the process's result line, or a result with an error if none comes in time.
func (p *natProc) wait(t *testing.T, timeout time.Duration) natResult {
	t.Helper()
	select {
	case r := <-p.results:
		return r
	case <-p.exited:
		select {
		case r := <-p.results:
			return r
		default:
		}
		return natResult{Role: p.name, Error: fmt.Sprintf("%s exited without a result: %v", p.name, p.err)}
	case <-time.After(timeout):
		return natResult{Role: p.name, Error: fmt.Sprintf("%s gave no result within %v", p.name, timeout)}
	}
}

// finish closes the process's standard input, which tells a peer helper to hang up, and waits for it
// to exit.
func (p *natProc) finish() error {
	p.stdin.Close()
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("exited: %w", p.err)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("did not exit within 10s of being told to hang up")
	}
}

// lineBuffer keeps everything written to it and calls onLine with each complete line.
type lineBuffer struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	onLine  func(string)
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all.Write(p)
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if b.onLine != nil {
			b.onLine(string(b.partial[:i]))
		}
		b.partial = b.partial[i+1:]
	}
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.all.String()
}

// labConsultation is a consultation made with the CLI in a data folder of its own, before the server
// starts, as an operator would; its links point at baseURL.
type labConsultation struct {
	ID       string `json:"id"`
	StartURL string `json:"start_url"`
	JoinURL  string `json:"join_url"`
}

// newLabConsultation makes a provider and a consultation with the telemed binary; it returns the data
// folder and the consultation.
func newLabConsultation(t *testing.T, bin, baseURL string) (string, labConsultation) {
	t.Helper()
	data := t.TempDir()
	natRun(t, strings.NewReader(testPassword+"\n"), bin, "provider", "add", "--data", data,
		"--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin")
	var c labConsultation
	out := natRun(t, nil, bin, "consult", "new", "--data", data, "--provider", "grace@clinic.example",
		"--base-url", baseURL, "--json")
	if err := json.Unmarshal(out, &c); err != nil || c.ID == "" || c.StartURL == "" || c.JoinURL == "" {
		t.Fatalf("consult new --json printed %q (%v), want id, start_url and join_url", out, err)
	}
	return data, c
}

// buildTelemed builds the telemed command into a temporary folder: the test runs the real program, with
// its real flags, as an operator would.
func buildTelemed(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build telemed with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "telemed")
	natRun(t, nil, goCmd, "build", "-o", bin, "github.com/telemed/telemed/cmd/telemed")
	return bin
}

// natRun runs a command to completion, failing the test with its output if it fails, and returns its
// standard output.
func natRun(t *testing.T, stdin io.Reader, prog string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(prog), strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}
