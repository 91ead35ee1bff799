package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/telemed/telemed/internal/config"
)

// findChromium returns the browser to drive. Without one the browser tests skip, except in CI, where a
// missing browser is a failure: the test command installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TELEMED_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	unavailable(t, "no Chromium found", "the test command installs Debian's chromium; set TELEMED_CHROMIUM to use another",
		"run the test command from the README, which installs it")
	return ""
}

// newBrowser starts a separate headless Chromium with fake camera and microphone and a fresh profile,
// so provider and patient share nothing, as on two real machines.
func newBrowser(t *testing.T, execPath string) context.Context {
	t.Helper()
	return startBrowser(t, execPath, chromedp.Flag("use-fake-ui-for-media-stream", true))
}

// newDenyingBrowser is a browser whose user says no to the camera and microphone prompt.
func newDenyingBrowser(t *testing.T, execPath string) context.Context {
	t.Helper()
	return startBrowser(t, execPath, chromedp.Flag("deny-permission-prompts", true))
}

// startBrowser starts a headless Chromium with a fresh profile; flags override the defaults here.
func startBrowser(t *testing.T, execPath string, permission ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// Real host addresses rather than mDNS names, which a closed network cannot resolve.
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Exact heap figures and gc(), for tests that check memory does not grow with a file's size.
		chromedp.Flag("enable-precise-memory-info", true),
		chromedp.Flag("js-flags", "--expose-gc"),
	)
	// Last, so that a caller's flag overrides one above.
	opts = append(opts, permission...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(func(string, ...any) {}))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func evalJS[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %.80q: %v", js, err)
	}
	return v
}

// waitJS polls a JavaScript condition until it is true.
func waitJS(t *testing.T, ctx context.Context, what, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.dataset.state + " | " + (document.querySelector('#status')||{}).textContent + " | " + (document.querySelector('#error')||{}).textContent : "no body"`))
			t.Fatalf("timed out waiting for %s (%s); page state: %s", what, cond, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitState(t *testing.T, ctx context.Context, who, state string) {
	t.Helper()
	waitJS(t, ctx, who+" in state "+state, fmt.Sprintf("document.body && document.body.dataset.state === %q", state), 20*time.Second)
}

func click(t *testing.T, ctx context.Context, selector string) {
	t.Helper()
	waitJS(t, ctx, selector+" enabled", fmt.Sprintf("(() => { const b = document.querySelector(%q); return b && !b.disabled && b.offsetParent !== null })()", selector), 15*time.Second)
	retryDOM(t, "click "+selector, func() error { return chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))) })
}

// typeInto types text into the element, as a person at the keyboard.
func typeInto(t *testing.T, ctx context.Context, selector, text string) {
	t.Helper()
	waitJS(t, ctx, selector+" present", fmt.Sprintf("document.querySelector(%q)", selector), 15*time.Second)
	retryDOM(t, "type into "+selector, func() error { return chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(selector), text)) })
}

// retryDOM retries a DevTools action that can lose its node when the page re-renders between finding
// the element and acting on it ("Could not find node with given id").
func retryDOM(t *testing.T, what string, action func() error) {
	t.Helper()
	var err error
	for range 5 {
		if err = action(); err == nil || !strings.Contains(err.Error(), "Could not find node") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// callStats reads what a page's peer connection has received, from RTCPeerConnection.getStats().
type callStats struct {
	FramesDecoded   int    `json:"framesDecoded"`
	AudioPackets    int    `json:"audioPackets"`
	LocalCandidate  string `json:"localCandidate"`
	RemoteCandidate string `json:"remoteCandidate"`
	Connection      string `json:"connection"`
}

const statsJS = `(async () => {
  const pcs = (window.telemed && window.telemed.peerConnections()) || [];
  const out = {framesDecoded: 0, audioPackets: 0, localCandidate: "", remoteCandidate: "", connection: pcs.length ? pcs[0].connectionState : "none"};
  for (const pc of pcs) {
    const stats = await pc.getStats();
    stats.forEach(s => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPackets += s.packetsReceived || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        const local = pair && stats.get(pair.localCandidateId);
        const remote = pair && stats.get(pair.remoteCandidateId);
        if (local) out.localCandidate = local.candidateType;
        if (remote) out.remoteCandidate = remote.candidateType;
      }
    });
  }
  return out;
})()`

func waitMedia(t *testing.T, ctx context.Context, who string) callStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := evalJS[callStats](t, ctx, statsJS)
		if st.FramesDecoded > 0 && st.AudioPackets > 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no media decoded: %+v", who, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// screenshot saves the page to $TELEMED_SCREENSHOTS/name.png when that folder is set, to look at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("TELEMED_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

// TestBrowserConsultation is the consultation as people have it: the provider signs in, creates a
// consultation on the dashboard and starts it; the patient opens the link, checks their devices and
// waits; the provider admits them; both browsers decode the other's video and receive audio; the
// patient hangs up and the provider is told.
func TestBrowserConsultation(t *testing.T) {
	chromium := findChromium(t)
	e := startServer(t, serverOptions())
	provider := newBrowser(t, chromium)
	patient := newBrowser(t, chromium)

	// The provider signs in and creates the consultation on the dashboard.
	if err := chromedp.Do(provider, chromedp.Navigate(e.srv.BaseURL()+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, provider, "redirect to sign-in", `location.pathname === '/login' && document.querySelector('#email')`, 10*time.Second)
	typeInto(t, provider, "#email", "grace@clinic.example")
	typeInto(t, provider, "#password", testPassword)
	screenshot(t, provider, "1-login")
	click(t, provider, "#login-btn")
	waitJS(t, provider, "the dashboard", `location.pathname === '/' && document.querySelector('#new-title')`, 10*time.Second)
	typeInto(t, provider, "#new-title", "Follow-up <b>visit</b>")
	click(t, provider, "#create-btn")
	waitJS(t, provider, "the new consultation's links", `document.querySelector('#created-link').value.includes('#t=')`, 10*time.Second)
	screenshot(t, provider, "2-dashboard")
	joinURL := evalJS[string](t, provider, `document.querySelector('#created-link').value`)
	listed := evalJS[string](t, provider, `document.querySelector('#consultations').innerHTML`)
	if !strings.Contains(listed, "Follow-up &lt;b&gt;visit&lt;/b&gt;") {
		t.Fatalf("the title should be listed as text, escaped; list HTML: %.300s", listed)
	}
	click(t, provider, "#created-start")

	waitState(t, provider, "provider", "device-check")
	waitJS(t, provider, "provider camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	click(t, provider, "#join-btn")
	waitState(t, provider, "provider", "in-call")

	if err := chromedp.Do(patient, chromedp.Navigate(joinURL)); err != nil {
		t.Fatal(err)
	}
	waitState(t, patient, "patient", "device-check")
	waitJS(t, patient, "patient camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	waitJS(t, patient, "a live microphone level", `document.querySelector('#mic-level').value > 0`, 15*time.Second)
	typeInto(t, patient, "#name", "Ada Lovelace")
	screenshot(t, patient, "3-device-check")
	click(t, patient, "#join-btn")
	waitState(t, patient, "patient", "waiting")
	screenshot(t, patient, "4-waiting-room")

	waitJS(t, provider, "the patient in the waiting room", `document.querySelector('#lobby button[data-admit]')`, 15*time.Second)
	lobby := evalJS[string](t, provider, `document.querySelector('#lobby').textContent`)
	if !strings.Contains(lobby, "Ada Lovelace") {
		t.Fatalf("waiting room shows %q, want the patient's name", lobby)
	}
	screenshot(t, provider, "5-lobby")
	click(t, provider, "#lobby button[data-admit]")
	waitState(t, patient, "patient", "in-call")

	ps := waitMedia(t, provider, "provider")
	qs := waitMedia(t, patient, "patient")
	t.Logf("provider: %+v; patient: %+v", ps, qs)
	for who, ctx := range map[string]context.Context{"provider": provider, "patient": patient} {
		waitJS(t, ctx, who+" shows Connected", `document.querySelector('#status').textContent.includes('Connected')`, 10*time.Second)
	}
	screenshot(t, provider, "6-call-provider")
	screenshot(t, patient, "7-call-patient")

	// Muting stops the patient's microphone track without renegotiating.
	click(t, patient, "#mute-btn")
	waitJS(t, patient, "mute pressed", `document.querySelector('#mute-btn').getAttribute('aria-pressed') === 'true'`, 5*time.Second)
	if on := evalJS[bool](t, patient, `window.telemed.peerConnections()[0].getSenders().some(s => s.track && s.track.kind === 'audio' && s.track.enabled)`); on {
		t.Fatal("microphone still enabled after mute")
	}

	click(t, patient, "#hangup-btn")
	waitState(t, patient, "patient", "ended")
	waitJS(t, provider, "provider told the other side left", `document.querySelector('#status').textContent.includes('The other side left')`, 15*time.Second)
	screenshot(t, provider, "8-other-side-left")
}

// startBrowserCall has the provider open startURL and join, the patient open joinURL and wait, and
// the provider admit them.
func startBrowserCall(t *testing.T, provider, patient context.Context, startURL, joinURL string) {
	t.Helper()
	if err := chromedp.Do(provider, chromedp.Navigate(startURL)); err != nil {
		t.Fatal(err)
	}
	click(t, provider, "#join-btn")
	waitState(t, provider, "provider", "in-call")
	if err := chromedp.Do(patient, chromedp.Navigate(joinURL)); err != nil {
		t.Fatal(err)
	}
	typeInto(t, patient, "#name", "Ada")
	click(t, patient, "#join-btn")
	waitState(t, patient, "patient", "waiting")
	click(t, provider, "#lobby button[data-admit]")
	waitState(t, patient, "patient", "in-call")
}

// TestBrowserReconnect: the patient's network drops the signaling connection mid-call. The page says
// "Reconnecting", resumes on its own, and the call goes on; the provider never sees them leave.
func TestBrowserReconnect(t *testing.T) {
	chromium := findChromium(t)
	px := listenProxy(t)
	e := startServerEnv(t, func(c *config.Serve) { c.AllowedOrigins = append(c.AllowedOrigins, px.origin()) }, serverOptions())
	px.start(e.srv.Addr().String())
	c := e.newConsultation(t, time.Hour)
	provider := newBrowser(t, chromium)
	patient := newBrowser(t, chromium)

	// The patient reaches the server through the proxy: its network.
	startBrowserCall(t, provider, patient, c.StartURL, px.via(c.JoinURL, e.srv.BaseURL()))
	before := waitMedia(t, provider, "provider")
	id := evalJS[string](t, patient, `window.telemed.signaling.me.id`)
	if id == "" {
		t.Fatal("patient page does not know its participant id")
	}

	turnUser := `window.telemed.peerConnections()[0].getConfiguration().iceServers.map(s => s.username || '').join()`
	userBefore := evalJS[string](t, patient, turnUser)
	time.Sleep(1100 * time.Millisecond) // credentials expire on whole seconds: the next one differs

	px.cut()
	waitJS(t, patient, "patient shows Reconnecting", `document.querySelector('#status').textContent.includes('Reconnecting')`, 10*time.Second)
	waitJS(t, patient, "patient back to Connected", `document.querySelector('#status').textContent.includes('Connected')`, 20*time.Second)
	if got := evalJS[string](t, patient, `window.telemed.signaling.me.id`); got != id {
		t.Fatalf("patient resumed as %s, was %s: it should get its place back", got, id)
	}
	// The resumed welcome's fresh TURN credentials reach the existing peer connection, for ICE restarts.
	if userAfter := evalJS[string](t, patient, turnUser); userAfter == userBefore || !strings.Contains(userAfter, ":") {
		t.Fatalf("TURN username on the peer connection %q, was %q: want a fresh one after resuming", userAfter, userBefore)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := evalJS[callStats](t, provider, statsJS)
		if after.FramesDecoded > before.FramesDecoded+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider's video stalled after the patient's blip: %+v then %+v", before, after)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := evalJS[string](t, provider, `document.querySelector('#status').textContent`); strings.Contains(s, "left") {
		t.Fatalf("provider status %q: the patient never left", s)
	}
	if n := evalJS[int](t, provider, `window.telemed.peerConnections().length`); n != 1 {
		t.Fatalf("provider has %d peer connections, want the one", n)
	}
}

// TestBrowserCallOverTURNRelay: with --ice-transport-policy relay both browsers gather only relayed
// candidates from the embedded TURN server, so the call can only connect through it; it does, and
// each side's selected candidate pair is relay to relay.
func TestBrowserCallOverTURNRelay(t *testing.T) {
	chromium := findChromium(t)
	e := startServerEnv(t, func(c *config.Serve) {
		c.ICETransportPolicy = "relay"
		c.TURNAllowLoopback = true // the relay and both browsers are on 127.0.0.1
	}, serverOptions())
	c := e.newConsultation(t, time.Hour)
	provider := newBrowser(t, chromium)
	patient := newBrowser(t, chromium)

	startBrowserCall(t, provider, patient, c.StartURL, c.JoinURL)

	for who, ctx := range map[string]context.Context{"provider": provider, "patient": patient} {
		// The provider's page learns of the admitted patient a moment after the patient's does.
		waitJS(t, ctx, who+" has a peer connection", `window.telemed.peerConnections().length > 0`, 10*time.Second)
		policy := evalJS[string](t, ctx, `window.telemed.peerConnections()[0].getConfiguration().iceTransportPolicy`)
		if policy != "relay" {
			t.Fatalf("%s: iceTransportPolicy %q, want relay", who, policy)
		}
		st := waitMedia(t, ctx, who)
		if st.LocalCandidate != "relay" || st.RemoteCandidate != "relay" {
			t.Fatalf("%s: selected pair %s -> %s, want relay -> relay", who, st.LocalCandidate, st.RemoteCandidate)
		}
		t.Logf("%s: %+v", who, st)
	}
	if n := e.srv.TURN().Allocations(); n < 2 {
		t.Fatalf("TURN server holds %d allocations, want one per browser at least", n)
	}
}

// TestBrowserDeviceBlocked: a patient who blocked the camera and microphone is told what happened and
// how to fix it, rather than shown a black box.
func TestBrowserDeviceBlocked(t *testing.T) {
	chromium := findChromium(t)
	e := startServer(t, serverOptions())
	c := e.newConsultation(t, time.Hour)
	patient := newDenyingBrowser(t, chromium)
	if err := chromedp.Do(patient, chromedp.Navigate(c.JoinURL)); err != nil {
		t.Fatal(err)
	}
	waitState(t, patient, "patient", "device-check")
	waitJS(t, patient, "an explanation of the blocked devices", `!document.querySelector('#device-help').hidden`, 15*time.Second)
	help := evalJS[string](t, patient, `document.querySelector('#device-help').innerText`)
	if !strings.Contains(help, "blocking") || !strings.Contains(strings.ToLower(help), "allow") {
		t.Fatalf("device help says %q; want it to say the browser is blocking and how to allow", help)
	}
	screenshot(t, patient, "9-blocked")
}
