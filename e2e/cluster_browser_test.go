package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// pageWatchJS records, from the moment it is installed, every screen the call page shows
// (body[data-state]) and every welcome its signaling gets, so that a test can tell afterwards
// whether the page ever went back to the waiting room and how often it resumed; and the call's peer
// connection, which must be the same one throughout.
const pageWatchJS = `(() => {
  const w = window.__watch = {screens: [], welcomes: [], signaling: [], pc: window.telemed.peerConnections()[0]};
  new MutationObserver(() => w.screens.push(document.body.dataset.state))
    .observe(document.body, {attributes: true, attributeFilter: ['data-state']});
  const s = window.telemed.signaling;
  s.addEventListener('welcome', (e) => w.welcomes.push({resumed: !!e.detail.resumed, state: e.detail.state || ''}));
  s.addEventListener('statechange', (e) => w.signaling.push(e.detail.state));
  return true;
})()`

// pageWatch is what pageWatchJS recorded.
type pageWatch struct {
	Screens  []string `json:"screens"`
	Welcomes []struct {
		Resumed bool   `json:"resumed"`
		State   string `json:"state"`
	} `json:"welcomes"`
	Signaling []string `json:"signaling"`
}

// browserSide is one participant's page in the cluster call.
type browserSide struct {
	who string
	ctx context.Context
	id  string // the participant id, which a resume keeps
}

func (b *browserSide) watch(t *testing.T) pageWatch {
	t.Helper()
	return evalJS[pageWatch](t, b.ctx, `window.__watch`)
}

// checkInCall fails the test unless the page is on the call screen, as the same participant, and
// has never shown another screen (the waiting room above all) since the watch began.
func (b *browserSide) checkInCall(t *testing.T, when string) {
	t.Helper()
	w := b.watch(t)
	for _, s := range w.Screens {
		if s != "in-call" {
			t.Fatalf("%s %s: the page showed %q (screens %v): a resume must keep the call, not re-admit", b.who, when, s, w.Screens)
		}
	}
	for _, wl := range w.Welcomes {
		if !wl.Resumed {
			t.Fatalf("%s %s: a welcome that was not a resume (%+v): the page joined afresh", b.who, when, w.Welcomes)
		}
	}
	if id := evalJS[string](t, b.ctx, `window.telemed.signaling.me.id`); id != b.id {
		t.Fatalf("%s %s: participant %s, was %s", b.who, when, id, b.id)
	}
	if st := evalJS[string](t, b.ctx, `document.body.dataset.state`); st != "in-call" {
		t.Fatalf("%s %s: page in state %q", b.who, when, st)
	}
	if !evalJS[bool](t, b.ctx, `window.telemed.peerConnections().length === 1 && window.telemed.peerConnections()[0] === window.__watch.pc`) {
		t.Fatalf("%s %s: the call's peer connection was replaced: the media should never have been set up again", b.who, when)
	}
	if s := evalJS[string](t, b.ctx, `document.querySelector('#status').textContent`); s != "Connected" {
		t.Fatalf("%s %s: status %q, want Connected", b.who, when, s)
	}
}

// waitResumes waits until the page's signaling has been welcomed back n times in all, and is
// connected.
func (b *browserSide) waitResumes(t *testing.T, n int, when string) {
	t.Helper()
	waitJS(t, b.ctx, fmt.Sprintf("%s resumed %s", b.who, when),
		fmt.Sprintf(`window.__watch.welcomes.length >= %d && window.telemed.signaling.state === 'connected'`, n), 20*time.Second)
}

// framesAdvance waits until the page has decoded more than n video frames beyond before, and
// returns the new count: the peer-to-peer video goes on.
func (b *browserSide) framesAdvance(t *testing.T, before, n int, when string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := evalJS[callStats](t, b.ctx, statsJS)
		if st.FramesDecoded > before+n {
			return st.FramesDecoded
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: video stalled at %d frames decoded (was %d): %+v", b.who, when, st.FramesDecoded, before, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterBrowserCall is TestClusterCallSurvivesEveryNode with two Chromiums: the provider's and
// the patient's pages reach three nodes on PostgreSQL and Redis only through HAProxy. The call
// connects; the node holding the provider is killed (SIGKILL), and the provider's page reconnects
// through HAProxy to another node and resumes its place: neither page ever leaves the call screen
// or is welcomed as a newcomer, and video keeps being decoded (it flows peer to peer). Then every
// node is stopped (SIGTERM) and started again in turn, and the call survives each.
func TestClusterBrowserCall(t *testing.T) {
	chromium := findChromium(t)
	c := startCluster(t, 3)
	began := time.Now()
	step := func(what string) { t.Logf("%5.1f s: %s", time.Since(began).Seconds(), what) }
	startURL, joinURL, cid := c.consultation()
	provider := &browserSide{who: "provider", ctx: newGroupBrowser(t, chromium)}
	patient := &browserSide{who: "patient", ctx: newGroupBrowser(t, chromium)}

	startBrowserCall(t, provider.ctx, patient.ctx, startURL, joinURL)
	frames := map[*browserSide]int{}
	for _, b := range []*browserSide{provider, patient} {
		frames[b] = waitMedia(t, b.ctx, b.who).FramesDecoded
		b.id = evalJS[string](t, b.ctx, `window.telemed.signaling.me.id`)
		evalJS[bool](t, b.ctx, pageWatchJS)
	}
	step("the call is up")
	provNode, patNode := c.holder(cid, provider.id), c.holder(cid, patient.id)
	t.Logf("provider on %s, patient on %s", provNode.name, patNode.name)

	// A crash of the provider's node: its page reconnects through HAProxy to another.
	c.kill(provNode)
	step("killed " + provNode.name)
	resumes := map[*browserSide]int{provider: 1}
	if patNode == provNode {
		resumes[patient] = 1
	}
	for b, n := range resumes {
		frames[b] = b.framesAdvance(t, frames[b], 5, "while its node was down")
		b.waitResumes(t, n, "after the SIGKILL")
	}
	if now := c.holder(cid, provider.id); now == provNode {
		t.Fatalf("the provider resumed on the node that was killed")
	}
	step("the provider resumed on " + c.holder(cid, provider.id).name)
	for _, b := range []*browserSide{provider, patient} {
		frames[b] = b.framesAdvance(t, frames[b], 15, "after the SIGKILL")
		b.checkInCall(t, "after the SIGKILL")
	}
	c.start(provNode)

	// A rolling upgrade: each node stopped and started again in turn.
	for _, nd := range c.nodes {
		var moved []*browserSide
		for _, b := range []*browserSide{provider, patient} {
			if c.holder(cid, b.id) == nd {
				moved = append(moved, b)
			}
		}
		took := c.stop(nd)
		step(fmt.Sprintf("%s stopped in %v, holding %d of the pages", nd.name, took.Round(time.Millisecond), len(moved)))
		for _, b := range moved {
			resumes[b]++
			b.waitResumes(t, resumes[b], "after "+nd.name+" stopped")
		}
		c.start(nd)
		for _, b := range []*browserSide{provider, patient} {
			frames[b] = b.framesAdvance(t, frames[b], 15, "after "+nd.name+" restarted")
			b.checkInCall(t, "after "+nd.name+" restarted")
		}
	}
	step("every node restarted")
	// Nobody is waiting to be let in again.
	if n := evalJS[int](t, provider.ctx, `document.querySelectorAll('#lobby button[data-admit]').length`); n != 0 {
		t.Fatalf("the provider's waiting room lists %d people after the restarts; the patient was admitted once", n)
	}
	for _, b := range []*browserSide{provider, patient} {
		t.Logf("%s: %d frames decoded, resumed %d times, signaling %v", b.who, frames[b], resumes[b], b.watch(t).Signaling)
	}
}
