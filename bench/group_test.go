package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
)

// TestGroupVisitCost measures a group visit of 2, 3 and 4 Chromiums with fake media, each in its own
// browser, side by side with its baseline: the same Chromiums in a full mesh of peer connections
// signaled by the test itself (no server, browser defaults, no caps). For each it reports each
// sender's uplink (bytes sent on all its peer connections), the CPU of each browser (its whole process
// tree), and the time until every pair decodes video: for telemed from the provider's last admission,
// for the mesh from the first offer.
//
// It runs only with TELEMED_BENCH=1 (bench/group.sh); GROUP_ROUNDS rounds (default 3) alternate
// telemed and the mesh for each size, and the medians are reported. GROUP_SIZES picks the sizes
// (default "2,3,4"). GROUP_SIZES picks the sizes
// (default "2,3,4").
func TestGroupVisitCost(t *testing.T) {
	if os.Getenv("TELEMED_BENCH") == "" {
		t.Skip("set TELEMED_BENCH=1 to run (it starts up to 8 Chromiums at a time)")
	}
	chromium := ""
	for _, p := range []string{os.Getenv("TELEMED_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); p != "" && err == nil {
			chromium = path
			break
		}
	}
	if chromium == "" {
		t.Fatal("no Chromium found: install Debian's chromium, or set TELEMED_CHROMIUM")
	}
	rounds := 3
	if s := os.Getenv("GROUP_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(meshPage))
	}))
	defer mesh.Close()

	sizes := []int{2, 3, 4}
	if s := os.Getenv("GROUP_SIZES"); s != "" { // "4", or "2,3"
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 || n > 6 {
				t.Fatalf("GROUP_SIZES=%q: want sizes from 2 to 6, separated by commas", s)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		results := map[string][]groupCost{}
		for r := 0; r < rounds; r++ {
			results["telemed"] = append(results["telemed"], telemedGroup(t, chromium, n))
			results["mesh"] = append(results["mesh"], meshGroup(t, chromium, mesh.URL, n))
		}
		tel, base := median(results["telemed"]), median(results["mesh"])
		for _, c := range []struct {
			name string
			v    groupCost
		}{{"telemed", tel}, {"mesh", base}} {
			fmt.Printf("group people=%d %-7s uplink_kbit_s_per_sender=%.0f cpu_pct_per_browser=%.0f time_to_all_decoding_ms=%.0f\n",
				n, c.name, c.v.uplinkKbps, c.v.cpuPct, c.v.decodeMs)
		}
		fmt.Printf("group people=%d ratio   uplink=%.2f cpu=%.2f time=%.2f\n", n,
			tel.uplinkKbps/base.uplinkKbps, tel.cpuPct/base.cpuPct, tel.decodeMs/base.decodeMs)
	}
}

// groupCost is one run: medians over its senders and browsers.
type groupCost struct{ uplinkKbps, cpuPct, decodeMs float64 }

func median(cs []groupCost) groupCost {
	pick := func(f func(groupCost) float64) float64 {
		vs := make([]float64, len(cs))
		for i, c := range cs {
			vs[i] = f(c)
		}
		sort.Float64s(vs)
		return vs[len(vs)/2]
	}
	return groupCost{
		uplinkKbps: pick(func(c groupCost) float64 { return c.uplinkKbps }),
		cpuPct:     pick(func(c groupCost) float64 { return c.cpuPct }),
		decodeMs:   pick(func(c groupCost) float64 { return c.decodeMs }),
	}
}

const (
	groupWarmUp = 5 * time.Second  // after every pair decodes, before measuring: encoders ramp up
	groupWindow = 10 * time.Second // what the uplink and CPU are measured over
)

// browserPage is one Chromium and the JavaScript expression that lists its peer connections.
type browserPage struct {
	ctx context.Context
	pcs string
}

func startChromium(t *testing.T, chromium string) context.Context {
	t.Helper()
	dir, err := os.MkdirTemp("", "telemed-bench-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.UserDataDir(dir), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc(); os.RemoveAll(dir) })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %.80q: %v", js, err)
	}
	return v
}

func waitEval(t *testing.T, ctx context.Context, what, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")", chromedp.EvalAwaitPromise)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pageStats is what a page's peer connections say: bytes sent in all.
type pageStats struct {
	BytesSent int `json:"bytesSent"`
}

func statsOf(t *testing.T, p browserPage) pageStats {
	t.Helper()
	return eval[pageStats](t, p.ctx, `(async () => {
  const out = {bytesSent: 0};
  for (const pc of `+p.pcs+`) {
    const r = await pc.getStats();
    r.forEach((s) => { if (s.type === 'outbound-rtp') out.bytesSent += s.bytesSent || 0; });
  }
  return out;
})()`)
}

// watchDecoding has each page note, by its own clock, when its n-1 peer connections all decode
// video: polled from the page itself every 50 ms, as the test's own evaluations wait for a busy page.
func watchDecoding(t *testing.T, pages []browserPage) {
	t.Helper()
	for _, p := range pages {
		eval[bool](t, p.ctx, fmt.Sprintf(`(() => {
  window.benchDecodedAt = 0;
  const tick = async () => {
    let decoding = 0;
    for (const pc of %s) {
      const r = await pc.getStats();
      let frames = 0;
      r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
      if (frames > 0) decoding += 1;
    }
    if (decoding >= %d) { window.benchDecodedAt = Date.now(); return; }
    setTimeout(tick, 50);
  };
  tick();
  return true;
})()`, p.pcs, len(pages)-1))
	}
}

// measureGroup waits until every page decodes video from the n-1 others (the time since start, by the
// pages' clocks, which are this machine's), lets the encoders ramp up, and measures uplink and CPU
// over groupWindow.
func measureGroup(t *testing.T, pages []browserPage, start time.Time) groupCost {
	t.Helper()
	n := len(pages)
	deadline := time.Now().Add(60 * time.Second)
	var last int64
	for _, p := range pages {
		for {
			at := eval[int64](t, p.ctx, `window.benchDecodedAt`)
			if at > 0 {
				last = max(last, at)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d pages: not every pair decodes video after 60 s", n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	decode := time.UnixMilli(last).Sub(start)
	time.Sleep(groupWarmUp)
	sent0, cpu0 := make([]int, n), make([]float64, n)
	for i, p := range pages {
		sent0[i], cpu0[i] = statsOf(t, p).BytesSent, browserCPU(t, p.ctx)
	}
	t0 := time.Now()
	time.Sleep(groupWindow)
	var uplinks, cpus []float64
	for i, p := range pages {
		sent, cpu := statsOf(t, p).BytesSent, browserCPU(t, p.ctx)
		secs := time.Since(t0).Seconds()
		uplinks = append(uplinks, float64(sent-sent0[i])*8/1000/secs)
		cpus = append(cpus, (cpu-cpu0[i])/secs*100)
	}
	sort.Float64s(uplinks)
	sort.Float64s(cpus)
	return groupCost{uplinkKbps: uplinks[n/2], cpuPct: cpus[n/2], decodeMs: ms(decode)}
}

// browserCPU is the CPU seconds used so far by a Chromium and every process it started.
func browserCPU(t *testing.T, ctx context.Context) float64 {
	t.Helper()
	root := chromedp.FromContext(ctx).Browser.Process().Pid
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	ticks := map[int]float64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After the command's closing parenthesis: state ppid ... utime(14) stime(15).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		parent[pid], ticks[pid] = ppid, ut+st
	}
	in := func(pid int) bool {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				return true
			}
		}
		return false
	}
	var total float64
	for pid, tk := range ticks {
		if in(pid) {
			total += tk
		}
	}
	return total / 100 // USER_HZ
}

// telemedGroup runs one visit of n people through a real telemed server: the provider, the patient and
// guests, every one admitted by the provider; the clock starts at the last admission.
func telemedGroup(t *testing.T, chromium string, n int) groupCost {
	t.Helper()
	e := startServer(t)
	c := e.newConsultation(t)
	urls := []string{c.StartURL, c.JoinURL}
	for i := 2; i < n; i++ {
		inv, err := e.svc.Consultations.Invite(context.Background(), consultations.ProviderCaller(e.provider, "bench"), c.ID, consult.RoleGuest, fmt.Sprintf("Guest %d", i))
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, inv.JoinURL)
	}
	pages := make([]browserPage, n)
	for i, u := range urls {
		ctx := startChromium(t, chromium)
		pages[i] = browserPage{ctx: ctx, pcs: `window.telemed.peerConnections()`}
		if _, err := chromedp.Run(ctx, chromedp.Navigate(u)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := chromedp.Run(ctx, chromedp.SendKeys("#name", "Ada")); err != nil {
				t.Fatal(err)
			}
		}
		waitEval(t, ctx, "the join button", `(() => { const b = document.querySelector('#join-btn'); return b && !b.disabled })()`, 15*time.Second)
		eval[bool](t, ctx, `(document.querySelector('#join-btn').click(), true)`)
		want := "waiting"
		if i == 0 {
			want = "in-call"
		}
		waitEval(t, ctx, "state "+want, `document.body.dataset.state === '`+want+`'`, 15*time.Second)
	}
	prov := pages[0].ctx
	watchDecoding(t, pages)
	waitEval(t, prov, "everyone waiting", fmt.Sprintf(`document.querySelectorAll('#lobby button[data-admit]').length === %d`, n-1), 15*time.Second)
	var start time.Time
	for i := 1; i < n; i++ {
		waitEval(t, prov, "an admit button", `document.querySelector('#lobby button[data-admit]:not([disabled])')`, 15*time.Second)
		start = time.Now()
		eval[bool](t, prov, `(document.querySelector('#lobby button[data-admit]:not([disabled])').click(), true)`)
	}
	cost := measureGroup(t, pages, start)
	for _, p := range pages {
		chromedp.Cancel(p.ctx)
	}
	e.srv.Close()
	return cost
}

// meshGroup runs the baseline: n pages of meshPage, every pair connected by an offer and an answer
// the test carries from page to page (no trickle: each description holds its candidates).
func meshGroup(t *testing.T, chromium, url string, n int) groupCost {
	t.Helper()
	pages := make([]browserPage, n)
	for i := range pages {
		ctx := startChromium(t, chromium)
		pages[i] = browserPage{ctx: ctx, pcs: `[...window.pcs.values()]`}
		if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		eval[bool](t, ctx, `window.ready`) // the camera and microphone are on
	}
	watchDecoding(t, pages)
	start := time.Now()
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			offer := eval[string](t, pages[i].ctx, fmt.Sprintf(`window.offer(%d)`, j))
			answer := eval[string](t, pages[j].ctx, fmt.Sprintf(`window.answer(%d, %s)`, i, strconv.Quote(offer)))
			eval[bool](t, pages[i].ctx, fmt.Sprintf(`window.accept(%d, %s)`, j, strconv.Quote(answer)))
		}
	}
	cost := measureGroup(t, pages, start)
	for _, p := range pages {
		chromedp.Cancel(p.ctx)
	}
	return cost
}

// meshPage is the baseline's page: camera and microphone on every peer connection, nothing else.
const meshPage = `<!doctype html><meta charset="utf-8"><title>mesh</title><body><script>
window.pcs = new Map();
let stream = null;
// The same capture as telemed's page asks for (web/static/js/devices.js).
window.ready = navigator.mediaDevices.getUserMedia({
  audio: true,
  video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
}).then((s) => { stream = s; return true; });
function make(id) {
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.ontrack = (e) => {
    if (e.track.kind !== 'video') return;
    const v = document.createElement('video');
    v.autoplay = true; v.muted = true; v.playsInline = true; v.srcObject = e.streams[0];
    document.body.append(v);
  };
  window.pcs.set(id, pc);
  return pc;
}
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => pc.addEventListener('icegatheringstatechange', () => {
    if (pc.iceGatheringState === 'complete') resolve();
  }));
}
window.offer = async (id) => { const pc = make(id); await pc.setLocalDescription(); await gathered(pc); return pc.localDescription.sdp; };
window.answer = async (id, sdp) => {
  const pc = make(id);
  await pc.setRemoteDescription({ type: 'offer', sdp });
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
};
window.accept = async (id, sdp) => { await window.pcs.get(id).setRemoteDescription({ type: 'answer', sdp }); return true; };
</script>`
