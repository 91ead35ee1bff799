package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/telemed/telemed/internal/config"
)

// groupPage is one person's browser in a group visit.
type groupPage struct {
	who  string // the name the others see
	role string
	url  string
	ctx  context.Context
}

// remoteMedia is what a page receives from one other person: window.telemed.mediaStats().
type remoteMedia struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	Video       int    `json:"video"`
	Screen      int    `json:"screen"`
	Audio       int    `json:"audio"`
	LocalType   string `json:"localType"`
	VideoWidth  int    `json:"videoWidth"`
	ScreenWidth int    `json:"screenWidth"`
}

// tileState is one tile as the page shows it: window.telemed.tiles().
type tileState struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Label  string `json:"label"`
	Camera string `json:"camera"`
	Mic    string `json:"mic"`
	Screen bool   `json:"screen"`
}

func mediaOf(t *testing.T, p groupPage) map[string]remoteMedia {
	t.Helper()
	raw := evalJS[string](t, p.ctx, `window.telemed.mediaStats().then(JSON.stringify)`)
	var list []remoteMedia
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatalf("%s: mediaStats: %v", p.who, err)
	}
	out := map[string]remoteMedia{}
	for _, m := range list {
		out[m.Name] = m
	}
	return out
}

func tilesOf(t *testing.T, p groupPage) map[string]tileState {
	t.Helper()
	raw := evalJS[string](t, p.ctx, `JSON.stringify(window.telemed.tiles())`)
	var list []tileState
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatalf("%s: tiles: %v", p.who, err)
	}
	out := map[string]tileState{}
	for _, s := range list {
		out[s.Name] = s
	}
	return out
}

// waitGroup polls every page until cond holds for what it receives from each of the others.
func waitGroup(t *testing.T, pages []groupPage, what string, timeout time.Duration, cond func(from groupPage, m remoteMedia, tile tileState, ok bool) bool) {
	t.Helper()
	for _, p := range pages {
		deadline := time.Now().Add(timeout)
		for {
			media, tiles := mediaOf(t, p), tilesOf(t, p)
			pending := ""
			for _, o := range pages {
				if o.who == p.who {
					continue
				}
				m, ok := media[o.who]
				if !cond(o, m, tiles[o.who], ok) {
					pending = fmt.Sprintf("from %s: %+v, tile %+v", o.who, m, tiles[o.who])
					break
				}
			}
			if pending == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s: still waiting %s", p.who, what, pending)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// newGroupBrowser is a browser of a group visit. Its camera is a small moving picture (320×240, 15
// frames a second) rather than the fake device's 1280×720 at 30, so that four or five Chromiums
// encoding for three others each leave these 2 cores some room.
func newGroupBrowser(t *testing.T, chromium string, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	return startBrowser(t, chromium, append([]chromedp.ExecAllocatorOption{
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-video-capture", smallVideo(t)),
	}, flags...)...)
}

var smallVideoOnce struct {
	sync.Once
	path string
	err  error
}

// smallVideo writes, once per test run, a 2-second Y4M clip of a bar sweeping across a grey picture.
func smallVideo(t *testing.T) string {
	t.Helper()
	smallVideoOnce.Do(func() {
		const w, h, frames = 320, 240, 30
		var b bytes.Buffer
		fmt.Fprintf(&b, "YUV4MPEG2 W%d H%d F15:1 Ip A1:1 C420jpeg\n", w, h)
		for f := 0; f < frames; f++ {
			b.WriteString("FRAME\n")
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					luma := byte(96 + y/4)
					if x/16 == f*w/16/frames {
						luma = 235
					}
					b.WriteByte(luma)
				}
			}
			b.Write(bytes.Repeat([]byte{128}, w*h/2)) // U and V: no colour
		}
		dir, err := os.MkdirTemp("", "telemed-e2e-video-")
		if err != nil {
			smallVideoOnce.err = err
			return
		}
		smallVideoOnce.path = filepath.Join(dir, "small.y4m")
		smallVideoOnce.err = os.WriteFile(smallVideoOnce.path, b.Bytes(), 0o644)
	})
	if smallVideoOnce.err != nil {
		t.Fatalf("write the fake camera's clip: %v", smallVideoOnce.err)
	}
	return smallVideoOnce.path
}

// openGroupPage opens a link and joins; everyone but the provider waits.
func openGroupPage(t *testing.T, p groupPage) {
	t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Navigate(p.url)); err != nil {
		t.Fatal(err)
	}
	if p.role == "patient" {
		typeInto(t, p.ctx, "#name", p.who)
	} else {
		waitJS(t, p.ctx, p.who+"'s name field hidden", `document.querySelector('#name-field').hidden`, 10*time.Second)
	}
	click(t, p.ctx, "#join-btn")
}

// runGroupVisit is the group visit of issue 12 as its people have it, with pages[0] the provider,
// pages[1] the patient and the last page a family member whom the provider removes; max is the
// server's --max-participants and equals len(pages), so that one more person is refused.
func runGroupVisit(t *testing.T, chromium string, pages []groupPage, extraURL string, relay bool) {
	t.Helper()
	// One person too many, started before the call loads the machine.
	var extra context.Context
	if extraURL != "" {
		extra = newGroupBrowser(t, chromium)
	}
	began := time.Now()
	step := func(what string) { t.Logf("%6.1f s: %s", time.Since(began).Seconds(), what) }
	provider := pages[0]
	// The provider may already be in the call (having invited someone from it).
	if evalJS[string](t, provider.ctx, `(document.body && document.body.dataset.state) || ''`) != "in-call" {
		openGroupPage(t, provider)
	}
	waitState(t, provider.ctx, provider.who, "in-call")
	for _, p := range pages[1:] {
		openGroupPage(t, p)
		waitState(t, p.ctx, p.who, "waiting")
	}

	step("everyone waiting")
	// The waiting room says who waits and as what; the provider admits everyone.
	waitJS(t, provider.ctx, "everyone in the waiting room", fmt.Sprintf(`document.querySelectorAll('#lobby li').length === %d`, len(pages)-1), 15*time.Second)
	lobby := evalJS[string](t, provider.ctx, `document.querySelector('#lobby').innerText`)
	for _, p := range pages[1:] {
		if !strings.Contains(lobby, p.who) {
			t.Fatalf("waiting room %q does not name %s", lobby, p.who)
		}
	}
	if !strings.Contains(lobby, "Patient") || !strings.Contains(lobby, "Guest") {
		t.Fatalf("waiting room %q does not say who waits as what", lobby)
	}
	for range pages[1:] {
		click(t, provider.ctx, "#lobby button[data-admit]:not([disabled])")
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range pages[1:] {
		waitState(t, p.ctx, p.who, "in-call")
	}

	step("everyone admitted")
	// Every page decodes video and receives audio from each of the others.
	waitGroup(t, pages, "video and audio from everyone", 60*time.Second, func(o groupPage, m remoteMedia, tile tileState, ok bool) bool {
		return ok && m.Video > 10 && m.Audio > 0 && tile.Camera == "on" && (!relay || m.LocalType == "relay")
	})
	for _, p := range pages {
		tiles := tilesOf(t, p)
		if len(tiles) != len(pages)-1 {
			t.Fatalf("%s sees %d tiles, want %d: %+v", p.who, len(tiles), len(pages)-1, tiles)
		}
		for _, o := range pages {
			if tile, ok := tiles[o.who]; o.who != p.who && (!ok || !strings.Contains(tile.Label, o.who)) {
				t.Fatalf("%s: tile of %s labelled %q", p.who, o.who, tile.Label)
			}
		}
		t.Logf("%s receives %+v", p.who, mediaOf(t, p))
	}

	patient := pages[1]
	screenshot(t, patient.ctx, fmt.Sprintf("group-%d-patient", len(pages)))

	step("media from everyone")
	// Each sender caps its camera as the call grows (docs/benchmarks.md#group-visits): at 4 people the
	// 320-pixel-wide camera arrives at most 320/1.5 wide.
	if len(pages) >= 4 {
		waitGroup(t, pages, "the camera scaled down for a call of 4", 15*time.Second, func(_ groupPage, m remoteMedia, _ tileState, ok bool) bool {
			return ok && m.VideoWidth > 0 && m.VideoWidth <= 214
		})
	}
	// The patient turns the camera off: everyone's tile of the patient says so.
	click(t, patient.ctx, "#camera-btn")
	waitGroup(t, pages, "the patient's camera shown off", 10*time.Second, func(o groupPage, _ remoteMedia, tile tileState, _ bool) bool {
		return o.who != patient.who || tile.Camera == "off"
	})
	click(t, patient.ctx, "#camera-btn")

	step("camera off seen")
	// The provider shares a screen: the others decode it and show it large; then it stops for all.
	click(t, provider.ctx, "#share-btn")
	waitJS(t, provider.ctx, "the provider sharing", `document.querySelector('#share-btn').getAttribute('aria-pressed') === 'true'`, 10*time.Second)
	others := pages[1:]
	waitGroup(t, others, "the provider's screen decoded", 30*time.Second, func(o groupPage, m remoteMedia, tile tileState, _ bool) bool {
		return o.who != provider.who || (m.Screen > 5 && tile.Screen)
	})
	step("the provider's screen decoded by the others")
	for _, p := range others {
		waitJS(t, p.ctx, p.who+": the shared screen larger than the cameras", `(() => { const s = document.querySelector('.tile-screen:not([hidden])'); const c = document.querySelector('.tile:not(.tile-screen)'); return !!s && s.getBoundingClientRect().width > c.getBoundingClientRect().width })()`, 10*time.Second)
	}
	screenshot(t, patient.ctx, fmt.Sprintf("group-%d-patient-screen", len(pages)))
	step("the screen shown large")
	click(t, provider.ctx, "#share-btn")
	waitGroup(t, others, "the provider's screen gone", 10*time.Second, func(o groupPage, _ remoteMedia, tile tileState, _ bool) bool {
		return o.who != provider.who || !tile.Screen
	})
	for _, p := range others {
		before := mediaOf(t, p)[provider.who]
		time.Sleep(1500 * time.Millisecond)
		after := mediaOf(t, p)[provider.who]
		if after.Screen > before.Screen+2 {
			t.Fatalf("%s still decodes the provider's screen after it stopped: %d then %d frames", p.who, before.Screen, after.Screen)
		}
		if after.Video <= before.Video {
			t.Fatalf("%s: the provider's camera stalled when the screen stopped: %d then %d frames", p.who, before.Video, after.Video)
		}
	}

	step("screen shared and stopped")

	// The patient may share only once the provider allows it.
	if evalJS[bool](t, patient.ctx, `!document.querySelector('#share-btn').hidden`) {
		t.Fatal("the patient is offered Share screen before being allowed")
	}
	patID := tilesOf(t, provider)[patient.who].ID
	click(t, provider.ctx, fmt.Sprintf(`.tile[data-peer=%q] .tile-allow`, patID))
	waitJS(t, patient.ctx, "the patient offered Share screen", `!document.querySelector('#share-btn').hidden`, 10*time.Second)
	if label := evalJS[string](t, provider.ctx, fmt.Sprintf(`document.querySelector('.tile[data-peer=%q] .tile-allow').textContent`, patID)); !strings.Contains(label, "Stop") {
		t.Fatalf("the provider's button after allowing reads %q, want it to offer taking it back", label)
	}
	step("the patient allowed to share")
	// The visit is full: one more person is told so, in words.
	if extraURL != "" {
		if _, err := chromedp.Run(extra, chromedp.Navigate(extraURL)); err != nil {
			t.Fatal(err)
		}
		click(t, extra, "#join-btn")
		waitState(t, extra, "one person too many", "error")
		code := evalJS[string](t, extra, `(window.telemed.signaling.fatalError || {}).code || ''`)
		title := evalJS[string](t, extra, `document.querySelector('#fatal-title').textContent`)
		if code != "room_full" || !strings.Contains(title, "full") {
			t.Fatalf("one person too many: code %q, page says %q; want room_full and that the visit is full", code, title)
		}
	}

	step("one too many refused")
	// The provider removes the family member, who leaves at once; their link no longer joins.
	family := pages[len(pages)-1]
	famID := tilesOf(t, provider)[family.who].ID
	evalJS[bool](t, provider.ctx, `(() => { window.confirm = () => true; return true })()`)
	click(t, provider.ctx, fmt.Sprintf(`.tile[data-peer=%q] .tile-remove`, famID))
	waitState(t, family.ctx, family.who, "removed")
	rest := pages[:len(pages)-1]
	for _, p := range rest {
		waitJS(t, p.ctx, p.who+" sees the family member gone", fmt.Sprintf(`window.telemed.tiles().length === %d`, len(rest)-1), 10*time.Second)
	}
	if _, err := chromedp.Run(family.ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(family.ctx, chromedp.Navigate(family.url)); err != nil {
		t.Fatal(err)
	}
	click(t, family.ctx, "#join-btn")
	waitState(t, family.ctx, "the removed family member", "error")
	if code := evalJS[string](t, family.ctx, `(window.telemed.signaling.fatalError || {}).code || ''`); code != "bad_token" {
		t.Fatalf("the removed family member's link: code %q, want bad_token", code)
	}
	if text := evalJS[string](t, family.ctx, `document.querySelector('#fatal-text').textContent`); !strings.Contains(text, "removed") {
		t.Fatalf("the removed family member's page says %q, want it to say they were removed", text)
	}
	step("the removed link refused")
	// Those left still see each other.
	waitGroup(t, rest, "video after the removal", 10*time.Second, func(_ groupPage, m remoteMedia, _ tileState, ok bool) bool {
		return ok && m.Video > 0
	})
}

// TestBrowserGroupVisit: a provider, a patient, an interpreter and a family member, each in their own
// Chromium, in one consultation (issue 12's first point). The provider invites the interpreter from
// the call page.
func TestBrowserGroupVisit(t *testing.T) {
	chromium := findChromium(t)
	e := startServer(t, serverOptions())
	a := newAPIClient(t, e)
	token, _ := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "test")
	auth := map[string]string{"Authorization": "Bearer " + token}
	c := e.newConsultation(t, time.Hour)
	provider := newGroupBrowser(t, chromium)

	// The provider invites the interpreter from the call page's waiting room.
	if _, err := chromedp.Run(provider, chromedp.Navigate(c.StartURL)); err != nil {
		t.Fatal(err)
	}
	click(t, provider, "#join-btn")
	waitState(t, provider, "provider", "in-call")
	click(t, provider, "#invite-btn")
	typeInto(t, provider, ".invite-dialog input[type=text]", "Marta")
	click(t, provider, ".invite-dialog button[type=submit]")
	waitJS(t, provider, "the interpreter's link", `document.querySelector('.invite-link').value.includes('#t=')`, 10*time.Second)
	interpURL := evalJS[string](t, provider, `document.querySelector('.invite-link').value`)
	waitJS(t, provider, "the invitation listed", `document.querySelector('.invite-list').innerText.includes('Marta')`, 10*time.Second)
	evalJS[bool](t, provider, `(() => { document.querySelector('.invite-dialog').close(); return true })()`)

	family := invite(t, a, auth, c.ID, "guest", "Sam")
	aunt := invite(t, a, auth, c.ID, "guest", "May")
	pages := []groupPage{
		{who: "", role: "provider", url: c.StartURL, ctx: provider},
		{who: "Ada", role: "patient", url: c.JoinURL, ctx: newGroupBrowser(t, chromium)},
		{who: "Marta", role: "guest", url: interpURL, ctx: newGroupBrowser(t, chromium)},
		{who: "Sam", role: "guest", url: family.JoinURL, ctx: newGroupBrowser(t, chromium)},
	}
	pages[0].who = e.provider.Name
	runGroupVisit(t, chromium, pages, aunt.JoinURL, false)

	// The provider leaves: the quality of each connection is kept with the visit, for support.
	click(t, provider, "#hangup-btn")
	waitState(t, provider, "provider", "ended")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var q struct {
			Reports []struct {
				Kind string `json:"kind"`
				From struct {
					Role string `json:"role"`
				} `json:"from"`
				Call *struct {
					Peers []struct {
						Name    string `json:"name"`
						Quality string `json:"quality"`
					} `json:"peers"`
				} `json:"call"`
			} `json:"reports"`
		}
		a.do("GET", "/api/v1/consultations/"+c.ID+"/quality", "", auth, &q)
		var got []string
		for _, r := range q.Reports {
			if r.Kind == "call" && r.From.Role == "provider" && r.Call != nil {
				for _, p := range r.Call.Peers {
					got = append(got, p.Name+":"+p.Quality)
				}
			}
		}
		if len(got) == 2 && strings.Contains(strings.Join(got, " "), "Ada:") && strings.Contains(strings.Join(got, " "), "Marta:") {
			t.Logf("the provider's end-of-call summary: %v", got)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provider's end-of-call summary of Ada and Marta is not kept: %+v", q)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBrowserGroupVisitOverTURNRelay: the same with 3 Chromiums forced to iceTransportPolicy relay
// through the embedded TURN server, and a call of at most 3 people.
func TestBrowserGroupVisitOverTURNRelay(t *testing.T) {
	chromium := findChromium(t)
	e := startServerEnv(t, func(c *config.Serve) {
		c.ICETransportPolicy = "relay"
		c.TURNAllowLoopback = true
		c.MaxParticipants = 3
	}, serverOptions())
	a := newAPIClient(t, e)
	token, _ := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "test")
	auth := map[string]string{"Authorization": "Bearer " + token}
	c := e.newConsultation(t, time.Hour)
	family := invite(t, a, auth, c.ID, "guest", "Sam")
	aunt := invite(t, a, auth, c.ID, "guest", "May")
	pages := []groupPage{
		{who: e.provider.Name, role: "provider", url: c.StartURL, ctx: newGroupBrowser(t, chromium)},
		{who: "Ada", role: "patient", url: c.JoinURL, ctx: newGroupBrowser(t, chromium)},
		{who: "Sam", role: "guest", url: family.JoinURL, ctx: newGroupBrowser(t, chromium)},
	}
	runGroupVisit(t, chromium, pages, aunt.JoinURL, true)
	for _, p := range pages[:2] {
		policy := evalJS[string](t, p.ctx, `window.telemed.peerConnections()[0].getConfiguration().iceTransportPolicy`)
		if policy != "relay" {
			t.Fatalf("%s: iceTransportPolicy %q, want relay", p.who, policy)
		}
	}
	if n := e.srv.TURN().Allocations(); n < 3 {
		t.Fatalf("TURN server holds %d allocations, want one per connection end at least", n)
	}
}
