package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// udpCounters are what a network namespace saw of UDP: its iptables counting rules (every UDP packet
// in and out, whatever becomes of it) and the kernel's own UDP counters.
type udpCounters struct {
	RuleIn, RuleOut            int // packets through INPUT and OUTPUT counting rules
	InDatagrams, OutDatagrams  int
	NoPorts, InErrors, TCPSent int
}

// readUDPCounters reads the counters of the namespace ns.
func readUDPCounters(t *testing.T, l *natLab, ns string) udpCounters {
	t.Helper()
	var c udpCounters
	for chain, dst := range map[string]*int{"INPUT": &c.RuleIn, "OUTPUT": &c.RuleOut} {
		out, err := exec.Command(l.ip, "netns", "exec", ns, l.iptables, "-nvxL", chain).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -L %s: %v: %s", chain, err, out)
		}
		// The counting rule: "pkts bytes target prot ...", target empty, prot udp (17).
		re := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+(udp|17)\s`)
		m := re.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("no UDP counting rule in %s:\n%s", chain, out)
		}
		*dst, _ = strconv.Atoi(m[1])
	}
	snmp, err := exec.Command(l.ip, "netns", "exec", ns, "cat", "/proc/net/snmp").CombinedOutput()
	if err != nil {
		t.Fatalf("read /proc/net/snmp: %v: %s", err, snmp)
	}
	fields := map[string]map[string]int{}
	var header []string
	for _, line := range strings.Split(string(snmp), "\n") {
		proto, rest, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		cols := strings.Fields(rest)
		if _, err := strconv.Atoi(cols[0]); err != nil {
			header = cols
			continue
		}
		fields[proto] = map[string]int{}
		for i, v := range cols {
			if i < len(header) {
				n, _ := strconv.Atoi(v)
				fields[proto][header[i]] = n
			}
		}
	}
	c.InDatagrams, c.OutDatagrams = fields["Udp"]["InDatagrams"], fields["Udp"]["OutDatagrams"]
	c.NoPorts, c.InErrors = fields["Udp"]["NoPorts"], fields["Udp"]["InErrors"]
	c.TCPSent = fields["Tcp"]["OutSegs"]
	return c
}

// TestGroupVisitCarriesNoMediaThroughServer: media never touches the server. The server runs alone in
// a network namespace of its own with the embedded TURN off; three Chromiums outside it hold a group
// visit; every UDP packet into or out of that namespace is counted, by iptables and by the kernel.
// The call holds (video and audio between every pair), and the server sent and received no UDP at all
// (there is no STUN either with the embedded TURN off). A datagram sent to the server first shows that
// the counters do see UDP.
func TestGroupVisitCarriesNoMediaThroughServer(t *testing.T) {
	chromium := findChromium(t)
	lab := newNATLab(t)
	bin := buildTelemed(t)
	ns := lab.inet
	// A link from this namespace (where the browsers are) to the server's.
	n := os.Getpid() % 250
	hostIP, serverIP := fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)
	dev := fmt.Sprintf("tmnm%d", os.Getpid()%100000)
	lab.ipCmd("link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { exec.Command(lab.ip, "link", "del", dev).Run() })
	lab.ipCmd("addr", "add", hostIP+"/30", "dev", dev)
	lab.ipCmd("link", "set", dev, "up")
	lab.ipCmd("-n", ns, "link", "set", "lo", "up")
	lab.ipCmd("-n", ns, "addr", "add", serverIP+"/30", "dev", "eth0")
	lab.ipCmd("-n", ns, "link", "set", "eth0", "up")
	lab.inNS(ns, lab.iptables, "-A", "INPUT", "-p", "udp")
	lab.inNS(ns, lab.iptables, "-A", "OUTPUT", "-p", "udp")

	addr := serverIP + ":8080"
	base := "http://" + addr
	data, c := newLabConsultation(t, bin, base)
	var inv struct {
		JoinURL string `json:"join_url"`
	}
	if err := json.Unmarshal(natRun(t, nil, bin, "consult", "invite", "--data", data, "--consultation", c.ID, "--role", "guest", "--name", "Marta", "--base-url", base, "--json"), &inv); err != nil {
		t.Fatal(err)
	}
	server := lab.start(t, "server", ns, nil, bin, "serve", "--http", addr, "--base-url", base, "--data", data, "--turn=false")
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			lab.dump(t, server)
			t.Fatalf("the server in its namespace does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The counters see UDP: one datagram to the server (to a port nothing listens on).
	before := readUDPCounters(t, lab, ns)
	probe, err := net.Dial("udp", serverIP+":9")
	if err != nil {
		t.Fatal(err)
	}
	probe.Write([]byte("counted?"))
	probe.Close()
	time.Sleep(200 * time.Millisecond)
	control := readUDPCounters(t, lab, ns)
	if control.RuleIn != before.RuleIn+1 || control.NoPorts != before.NoPorts+1 {
		t.Fatalf("a datagram to the server was not counted: %+v then %+v", before, control)
	}

	// Secure context for the camera on a plain-http address that is not localhost.
	insecure := chromedp.Flag("unsafely-treat-insecure-origin-as-secure", base)
	pages := []groupPage{
		{who: "Dr Grace Hopper", role: "provider", url: c.StartURL, ctx: newGroupBrowser(t, chromium, insecure)},
		{who: "Ada", role: "patient", url: c.JoinURL, ctx: newGroupBrowser(t, chromium, insecure)},
		{who: "Marta", role: "guest", url: inv.JoinURL, ctx: newGroupBrowser(t, chromium, insecure)},
	}
	openGroupPage(t, pages[0])
	waitState(t, pages[0].ctx, "provider", "in-call")
	for _, p := range pages[1:] {
		openGroupPage(t, p)
		waitState(t, p.ctx, p.who, "waiting")
	}
	waitJS(t, pages[0].ctx, "both waiting", `document.querySelectorAll('#lobby li').length === 2`, 15*time.Second)
	for range pages[1:] {
		click(t, pages[0].ctx, "#lobby button[data-admit]:not([disabled])")
		time.Sleep(200 * time.Millisecond)
	}
	waitGroup(t, pages, "video and audio from everyone", 60*time.Second, func(_ groupPage, m remoteMedia, _ tileState, ok bool) bool {
		return ok && m.Video > 10 && m.Audio > 0
	})
	// The call holds: a few seconds later everyone still decodes more from everyone.
	held := map[string]map[string]remoteMedia{}
	for _, p := range pages {
		held[p.who] = mediaOf(t, p)
	}
	time.Sleep(5 * time.Second)
	for _, p := range pages {
		now := mediaOf(t, p)
		for name, was := range held[p.who] {
			if now[name].Video <= was.Video+30 || now[name].Audio <= was.Audio {
				t.Fatalf("%s: media from %s stalled: %+v then %+v", p.who, name, was, now[name])
			}
		}
	}

	after := readUDPCounters(t, lab, ns)
	t.Logf("the server's namespace during the call: UDP %+v then %+v", control, after)
	if d := after.RuleIn - control.RuleIn; d != 0 {
		t.Errorf("the server's namespace received %d UDP packets during the call, want none", d)
	}
	if d := after.RuleOut - control.RuleOut; d != 0 {
		t.Errorf("the server's namespace sent %d UDP packets during the call, want none", d)
	}
	if after.InDatagrams != control.InDatagrams || after.OutDatagrams != control.OutDatagrams || after.NoPorts != control.NoPorts {
		t.Errorf("the kernel counted UDP in the server's namespace: %+v then %+v", control, after)
	}
	if after.TCPSent <= control.TCPSent {
		t.Errorf("no TCP from the server during the call (%d then %d segments): the counters are not of the server's namespace", control.TCPSent, after.TCPSent)
	}
	if out, _ := exec.Command(lab.ip, "netns", "exec", ns, "ss", "-uanH").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("the server holds UDP sockets:\n%s", out)
	}
	if t.Failed() {
		lab.dump(t, server)
	}
}
