package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consultations"
)

// pageHelpersJS makes test files inside a page: random bytes, and the SHA-256 of a Blob by WebCrypto
// (independent of the page's own incremental hash).
const pageHelpersJS = `(() => {
  const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
  window.__sha256 = async (blob) => hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
  window.__makeFile = async (name, bytes) => {
    const parts = [];
    for (let left = bytes; left > 0;) {
      const a = new Uint8Array(Math.min(left, 1 << 20));
      for (let o = 0; o < a.length; o += 65536) crypto.getRandomValues(a.subarray(o, Math.min(o + 65536, a.length)));
      parts.push(a);
      left -= a.length;
    }
    const file = new File(parts, name, { type: 'application/octet-stream' });
    window.__files = window.__files || {};
    window.__files[name] = file;
    return window.__sha256(file);
  };
  window.__received = async (name) => {
    const t = window.telemed.transfers().find((x) => x.dir === 'in' && x.name === name && x.state === 'done');
    if (!t) return '';
    const blob = window.telemed.receivedFile(t.id);
    return (await window.__sha256(blob)) + ':' + blob.size;
  };
  return true;
})()`

// transferState is one entry of window.telemed.transfers().
type transferState struct {
	ID        string  `json:"id"`
	Dir       string  `json:"dir"`
	Name      string  `json:"name"`
	Size      int64   `json:"size"`
	State     string  `json:"state"`
	Bytes     int64   `json:"bytes"`
	SHA256    string  `json:"sha256"`
	Error     string  `json:"error"`
	Message   string  `json:"message"`
	StartedAt float64 `json:"startedAt"`
	EndedAt   float64 `json:"endedAt"`
}

func transfer(t *testing.T, ctx context.Context, dir, name string) transferState {
	t.Helper()
	all := evalJS[[]transferState](t, ctx, `window.telemed.transfers().map((x) => ({...x, url: undefined}))`)
	for _, x := range all {
		if x.Dir == dir && x.Name == name {
			return x
		}
	}
	return transferState{}
}

// waitTransfer waits until the page's transfer of name in direction dir is in one of the end states,
// and returns it.
func waitTransfer(t *testing.T, ctx context.Context, who, dir, name string, timeout time.Duration) transferState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		x := transfer(t, ctx, dir, name)
		switch x.State {
		case "done", "cancelled", "failed", "interrupted":
			return x
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: transfer %s (%s) not over after %v: %+v", who, name, dir, timeout, x)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sendPageFile(t *testing.T, ctx context.Context, name string, size int) string {
	t.Helper()
	evalJS[bool](t, ctx, pageHelpersJS)
	sum := evalJS[string](t, ctx, fmt.Sprintf(`window.__makeFile(%q, %d)`, name, size))
	evalJS[string](t, ctx, fmt.Sprintf(`window.telemed.sendFile(window.__files[%q])`, name))
	return sum
}

func openChat(t *testing.T, ctx context.Context) {
	t.Helper()
	if evalJS[bool](t, ctx, `document.querySelector('#chat-panel').hidden`) {
		click(t, ctx, "#chat-btn")
	}
}

func chatSay(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	openChat(t, ctx)
	typeInto(t, ctx, "#chat-input", text)
	click(t, ctx, "#chat-send")
}

// TestBrowserChatAndFiles: provider and patient chat both ways with delivery receipts and an unread
// badge; the patient sends a 50 MB file that arrives with a matching SHA-256; a cancelled transfer is
// reported on both sides; an image is previewed and zoomed, a PDF offered for download; the provider
// saves the transcript.
func TestBrowserChatAndFiles(t *testing.T) {
	chromium := findChromium(t)
	e := startServer(t, serverOptions())
	c := e.newConsultation(t, time.Hour)
	provider := newBrowser(t, chromium)
	patient := newBrowser(t, chromium)
	startBrowserCall(t, provider, patient, c.StartURL, c.JoinURL)
	waitMedia(t, provider, "provider")

	// Chat: markup arrives as text, the badge counts while the panel is closed, receipts come back.
	const xss = `<img src=x onerror="window.__pwned=1"> 5 mg amlodipine`
	waitJS(t, patient, "chat ready", `(() => { const b = document.querySelector('#chat-send'); return b && !b.disabled || document.querySelector('#chat-panel').hidden })()`, 15*time.Second)
	chatSay(t, patient, xss)
	waitJS(t, provider, "unread badge", `document.querySelector('#chat-badge').textContent.trim() === '1' && !document.querySelector('#chat-badge').hidden`, 15*time.Second)
	openChat(t, provider)
	waitJS(t, provider, "badge cleared", `document.querySelector('#chat-badge').hidden`, 5*time.Second)
	got := evalJS[string](t, provider, `document.querySelector('#chat-log li.chat-msg[data-dir="in"] .chat-text').textContent`)
	if got != xss {
		t.Fatalf("provider shows %q, want the text as typed", got)
	}
	if evalJS[bool](t, provider, `!!window.__pwned || !!document.querySelector('#chat-log img')`) {
		t.Fatal("chat text was interpreted as HTML")
	}
	if who := evalJS[string](t, provider, `document.querySelector('#chat-log li.chat-msg[data-dir="in"] .chat-who').textContent`); !strings.Contains(who, "Ada") {
		t.Fatalf("provider shows the sender as %q", who)
	}
	waitJS(t, patient, "patient's message delivered", `document.querySelector('#chat-log li.chat-msg[data-dir="out"]').dataset.status === 'delivered'`, 10*time.Second)
	chatSay(t, provider, "Please send a photo of the rash.")
	waitJS(t, patient, "patient got the reply", `[...document.querySelectorAll('#chat-log li.chat-msg[data-dir="in"] .chat-text')].some((e) => e.textContent === 'Please send a photo of the rash.')`, 10*time.Second)
	waitJS(t, provider, "provider's message delivered", `document.querySelector('#chat-log li.chat-msg[data-dir="out"]').dataset.status === 'delivered'`, 10*time.Second)

	// 50 MB from the patient's disk to the provider, checked by the provider's own WebCrypto hash of
	// what it offers. Neither page's JavaScript heap grows with the file.
	const size = 50_000_000
	dir := t.TempDir()
	data, want := randomFile(t, size)
	bigPath := filepath.Join(dir, "labs.bin")
	if err := os.WriteFile(bigPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	heapBefore := map[string]float64{"provider": jsHeap(t, provider), "patient": jsHeap(t, patient)}
	sendDiskFile(t, patient, bigPath)
	in := waitTransfer(t, provider, "provider", "in", "labs.bin", 3*time.Minute)
	out := waitTransfer(t, patient, "patient", "out", "labs.bin", 30*time.Second)
	if in.State != "done" || out.State != "done" {
		t.Fatalf("50 MB: provider %+v, patient %+v; want both done", in, out)
	}
	for who, ctx := range map[string]context.Context{"provider": provider, "patient": patient} {
		if grown := jsHeap(t, ctx) - heapBefore[who]; grown > 10e6 {
			t.Errorf("%s's JavaScript heap grew by %.1f MB over a 50 MB transfer", who, grown/1e6)
		} else {
			t.Logf("%s's JavaScript heap grew by %.1f MB over a 50 MB transfer", who, grown/1e6)
		}
	}
	evalJS[bool](t, provider, pageHelpersJS)
	if got := evalJS[string](t, provider, `window.__received('labs.bin')`); got != fmt.Sprintf("%s:%d", want, size) {
		t.Fatalf("provider offers a file with SHA-256:size %s, sent %s:%d", got, want, size)
	}
	if in.SHA256 != want || out.SHA256 != want {
		t.Fatalf("pages report SHA-256 %s (in) and %s (out), want %s", in.SHA256, out.SHA256, want)
	}
	secs := (in.EndedAt - in.StartedAt) / 1000
	t.Logf("browser to browser: %d MB in %.2f s = %.1f MB/s", size/1_000_000, secs, float64(size)/1e6/secs)

	// Cancel: the provider cancels a big file midway; both pages say cancelled, neither offers it.
	// (Big files come from disk, as a person's would: a page may hold only so much Blob data.)
	sendDiskFile(t, patient, sparseFile(t, dir, "scan.dcm", 300<<20))
	waitJS(t, provider, "incoming transfer under way", `window.telemed.transfers().some((x) => x.name === 'scan.dcm' && x.state === 'active' && x.bytes > 0)`, 30*time.Second)
	// Both sides show progress with speed and time left while it runs.
	for who, ctx := range map[string]context.Context{"provider": provider, "patient": patient} {
		waitJS(t, ctx, who+" shows speed and time left", `[...document.querySelectorAll('li.transfer[data-state="active"] .transfer-speed')].some((e) => /MB\/s/.test(e.textContent) && /left/.test(e.textContent))`, 10*time.Second)
	}
	click(t, provider, `li.transfer[data-dir="in"][data-state="active"] button.transfer-cancel`)
	in = waitTransfer(t, provider, "provider", "in", "scan.dcm", 10*time.Second)
	out = waitTransfer(t, patient, "patient", "out", "scan.dcm", 10*time.Second)
	if in.State != "cancelled" || out.State != "cancelled" {
		t.Fatalf("after cancelling: provider %+v, patient %+v; want both cancelled", in, out)
	}
	status := evalJS[string](t, patient, `[...document.querySelectorAll('li.transfer[data-dir="out"]')].find((e) => e.querySelector('.transfer-name').textContent.includes('scan.dcm')).querySelector('.transfer-status').textContent`)
	if !strings.Contains(strings.ToLower(status), "cancelled by") {
		t.Fatalf("patient's page says %q, want it to say the other side cancelled", status)
	}

	// An image is previewed (and zooms); a PDF is offered for download, never shown.
	pngPath := filepath.Join(dir, "rash.png")
	writePNG(t, pngPath, 320, 200)
	pdfPath := filepath.Join(dir, "report.pdf")
	os.WriteFile(pdfPath, []byte("%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"), 0o644)
	for _, p := range []string{pngPath, pdfPath} {
		sendDiskFile(t, patient, p)
		waitTransfer(t, provider, "provider", "in", filepath.Base(p), 20*time.Second)
	}
	waitJS(t, provider, "image preview", `(() => { const i = document.querySelector('li.transfer[data-state="done"] img.transfer-preview'); return i && i.complete && i.naturalWidth === 320 && i.naturalHeight === 200 })()`, 10*time.Second)
	click(t, provider, "img.transfer-preview")
	waitJS(t, provider, "zoom view", `document.querySelector('#zoom').open && document.querySelector('#zoom img')`, 5*time.Second)
	evalJS[bool](t, provider, `(() => { document.querySelector('#zoom').close(); return true })()`)
	pdf := evalJS[string](t, provider, `(() => { const li = [...document.querySelectorAll('li.transfer[data-dir="in"]')].find((e) => e.querySelector('.transfer-name').textContent.includes('report.pdf')); const a = li && li.querySelector('a.transfer-download'); return (a ? a.getAttribute('download') : 'no link') + (li && li.querySelector('img') ? ' with an image' : '') })()`)
	if pdf != "report.pdf" {
		t.Fatalf("PDF: %s, want a download link named report.pdf and no preview", pdf)
	}
	screenshot(t, provider, "chat-provider")

	// The provider saves the transcript: both messages, in order, in the consultation record.
	click(t, provider, "#chat-save")
	waitJS(t, provider, "transcript saved", `/saved/i.test(document.querySelector('#chat-save-status').textContent)`, 10*time.Second)
	tr, err := e.svc.Consultations.Transcript(context.Background(), consultations.ProviderCaller(e.provider, "test"), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Messages) != 2 || tr.Messages[0].Text != xss || tr.Messages[0].From != "patient" || tr.Messages[1].From != "provider" {
		t.Fatalf("saved transcript %+v, want the two messages", tr)
	}

	// The patient leaves in the middle of a file: the provider's page says interrupted, never done.
	sendDiskFile(t, patient, sparseFile(t, dir, "xray.dcm", 300<<20))
	waitJS(t, provider, "x-ray under way", `window.telemed.transfers().some((x) => x.name === 'xray.dcm' && x.state === 'active' && x.bytes > 0)`, 30*time.Second)
	click(t, patient, "#hangup-btn")
	in = waitTransfer(t, provider, "provider", "in", "xray.dcm", 15*time.Second)
	if in.State != "interrupted" || !strings.Contains(in.Message, "Ada") {
		t.Fatalf("after the sender left mid-transfer the provider shows %+v, want interrupted, naming Ada", in)
	}
}

// sendDiskFile chooses the file at path with the page's file picker, as a person would.
func sendDiskFile(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	openChat(t, ctx)
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{path})); err != nil {
		t.Fatalf("choose %s: %v", path, err)
	}
}

// sparseFile makes a file of size zero bytes that takes no disk space.
func sparseFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err == nil {
		err = errors.Join(f.Truncate(size), f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// jsHeap returns the page's JavaScript heap in use after a full garbage collection.
func jsHeap(t *testing.T, ctx context.Context) float64 {
	t.Helper()
	return evalJS[float64](t, ctx, `(() => { if (window.gc) { gc(); gc(); } return performance.memory.usedJSHeapSize })()`)
}

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 120, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// browserAndGoClient starts a call between a provider in Chromium and a Go client patient.
func browserAndGoClient(t *testing.T, ctx context.Context, d *dataSide) (context.Context, *client.Peer) {
	t.Helper()
	chromium := findChromium(t)
	e := startServer(t, serverOptions())
	c := e.newConsultation(t, time.Hour)
	provider := newBrowser(t, chromium)
	if err := chromedp.Do(provider, chromedp.Navigate(c.StartURL)); err != nil {
		t.Fatal(err)
	}
	click(t, provider, "#join-btn")
	waitState(t, provider, "provider", "in-call")
	patient := mustJoin(t, ctx, d.config(c.JoinURL))
	click(t, provider, "#lobby button[data-admit]")
	if err := patient.WaitAdmitted(ctx); err != nil {
		t.Fatal(err)
	}
	peer, err := patient.WaitPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.WaitChat(ctx); err != nil {
		t.Fatalf("chat to the browser never opened: %v", err)
	}
	if _, err := peer.SendChat("hello from Go"); err != nil {
		t.Fatal(err)
	}
	waitReceipt(t, ctx, d)
	evalJS[bool](t, provider, pageHelpersJS)
	return provider, peer
}

// TestGoClientBrowserFiles: a Go client and a browser chat and send each other files of random data,
// each checked by SHA-256 on the receiving side.
func TestGoClientBrowserFiles(t *testing.T) {
	ctx := ctxTimeout(t, 2*time.Minute)
	d := newDataSide("Ada Lovelace")
	browser, peer := browserAndGoClient(t, ctx, d)

	// Chat from the browser reaches the Go client, and its receipt the browser.
	chatSay(t, browser, "Hello from the browser")
	if m := recvChat(t, ctx, d); m.Text != "Hello from the browser" {
		t.Fatalf("Go client got %q", m.Text)
	}
	waitJS(t, browser, "receipt from Go", `document.querySelector('#chat-log li.chat-msg[data-dir="out"]').dataset.status === 'delivered'`, 10*time.Second)

	// Go to browser.
	data, want := randomFile(t, 7<<20+3)
	tr, err := peer.SendFile(ctx, client.FileInfo{Name: "from-go.bin", MIME: "application/octet-stream", Size: int64(len(data))}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(ctx); err != nil {
		t.Fatalf("Go to browser: %v", err)
	}
	waitTransfer(t, browser, "browser", "in", "from-go.bin", 10*time.Second)
	if got := evalJS[string](t, browser, `window.__received('from-go.bin')`); got != fmt.Sprintf("%s:%d", want, len(data)) {
		t.Fatalf("browser received SHA-256:size %s, want %s:%d", got, want, len(data))
	}

	// The page keeps received files up to a limit (lowered here): past it a file is refused, and
	// removing one makes room.
	evalJS[bool](t, browser, `(() => { window.telemed.limits.keep = 10e6; return true })()`)
	more, _ := randomFile(t, 7<<20)
	tr, err = peer.SendFile(ctx, client.FileInfo{Name: "more.bin", Size: int64(len(more))}, bytes.NewReader(more))
	if err != nil {
		t.Fatal(err)
	}
	var te *client.TransferError
	if err := tr.Wait(ctx); !errors.As(err, &te) || te.Code != errcode.TooLarge || !te.Remote || !strings.Contains(te.Message, "remove some") {
		t.Fatalf("a file past the page's limit: %v, want too_large asking to remove files", err)
	}
	if x := waitTransfer(t, browser, "browser", "in", "more.bin", 10*time.Second); x.State != "failed" || !strings.Contains(x.Message, "Remove some") {
		t.Fatalf("the page shows %+v, want it refused, saying to remove files", x)
	}
	click(t, browser, `li.transfer[data-dir="in"][data-state="done"] button.transfer-remove`)
	if evalJS[bool](t, browser, `(() => { const x = window.telemed.transfers().find((x) => x.name === 'from-go.bin'); return !x.removed || !!x.url || !!window.telemed.receivedFile(x.id) || !!document.querySelector('a.transfer-download') })()`) {
		t.Fatal("a removed file is still offered")
	}
	tr, err = peer.SendFile(ctx, client.FileInfo{Name: "again.bin", Size: int64(len(more))}, bytes.NewReader(more))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(ctx); err != nil {
		t.Fatalf("a file after removing one: %v", err)
	}
	evalJS[bool](t, browser, `(() => { window.telemed.limits.keep = 2 ** 31; return true })()`)

	// Browser to Go.
	const size = 9<<20 + 5
	want = sendPageFile(t, browser, "from-browser.bin", size)
	in := recvFile(t, ctx, d)
	if err := in.Wait(ctx); err != nil {
		t.Fatalf("browser to Go: %v", err)
	}
	if s := d.sink(in.Info().ID); s.n != size || s.sum() != want {
		t.Fatalf("Go client received %d bytes with SHA-256 %s, want %d with %s", s.n, s.sum(), size, want)
	}
	if x := waitTransfer(t, browser, "browser", "out", "from-browser.bin", 10*time.Second); x.State != "done" {
		t.Fatalf("browser's side of its transfer: %+v", x)
	}
}

// TestBrowserBadDataChannelInput: a peer (a Go program) sends the browser malformed chat frames, a chunk
// out of order, a size that lies and a hash that does not match. The page shows a clear error for each,
// answers with the protocol's error, and the call goes on.
func TestBrowserBadDataChannelInput(t *testing.T) {
	ctx := ctxTimeout(t, 2*time.Minute)
	d := newDataSide("Mallory")
	browser, peer := browserAndGoClient(t, ctx, d)
	openChat(t, browser)

	for _, frame := range []rawFrame{{text: "not json"}, {text: `{"type":"msg","text":"no id","sent_at":1}`}, {binary: []byte{1, 2}}} {
		got := rawChannel(t, ctx, peer, client.ChatLabel, []rawFrame{frame})
		if got["type"] != "error" || got["code"] != "bad_frame" {
			t.Fatalf("chat frame %q: the page answered %v, want bad_frame", frame.text, got)
		}
	}
	waitJS(t, browser, "notices for the bad chat frames", `document.querySelectorAll('#chat-log li.chat-notice').length >= 3`, 10*time.Second)
	notice := evalJS[string](t, browser, `document.querySelector('#chat-log li.chat-notice').textContent`)
	if !strings.Contains(notice, "Mallory") || !strings.Contains(notice, "could not be read") {
		t.Fatalf("notice %q, want it to say a message from Mallory could not be read", notice)
	}

	offer := func(name string, size int) rawFrame {
		return rawFrame{text: fmt.Sprintf(`{"type":"offer","id":"%s","name":"%s","size":%d,"mime":""}`, strings.TrimSuffix(name, ".bin"), name, size)}
	}
	end := func(data string) rawFrame { return rawFrame{text: `{"type":"end","sha256":"` + sha(data) + `"}`} }
	for _, c := range []struct {
		name   string
		frames []rawFrame
		code   errcode.Code
	}{
		{"order.bin", []rawFrame{offer("order.bin", 10), chunk(5, "hello")}, errcode.OutOfOrder},
		{"lies.bin", []rawFrame{offer("lies.bin", 4), chunk(0, "hello")}, errcode.SizeMismatch},
		{"short.bin", []rawFrame{offer("short.bin", 100), chunk(0, "hello"), end("hello")}, errcode.SizeMismatch},
		{"hash.bin", []rawFrame{offer("hash.bin", 5), chunk(0, "hello"), end("world")}, errcode.HashMismatch},
		{"junk.bin", []rawFrame{offer("junk.bin", 5), {text: "]["}}, errcode.BadFrame},
	} {
		got := rawChannel(t, ctx, peer, client.FileLabel, c.frames)
		if got["type"] != "error" || got["code"] != string(c.code) {
			t.Fatalf("%s: the page answered %v, want %s", c.name, got, c.code)
		}
		x := waitTransfer(t, browser, "browser", "in", c.name, 10*time.Second)
		if x.State != "failed" || x.Error != string(c.code) || x.Message == "" {
			t.Fatalf("%s: the page shows %+v, want failed with %s and a message", c.name, x, c.code)
		}
		shown := evalJS[string](t, browser, fmt.Sprintf(`[...document.querySelectorAll('li.transfer')].find((e) => e.querySelector('.transfer-name').textContent.includes(%q)).querySelector('.transfer-status').textContent`, c.name))
		if shown == "" || evalJS[bool](t, browser, fmt.Sprintf(`!![...document.querySelectorAll('li.transfer')].find((e) => e.querySelector('.transfer-name').textContent.includes(%q)).querySelector('a.transfer-download')`, c.name)) {
			t.Fatalf("%s: status %q, or a download offered for a failed transfer", c.name, shown)
		}
	}

	// The call goes on: chat works both ways, the page is still connected.
	if _, err := peer.SendChat("still here"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, browser, "chat after bad input", `[...document.querySelectorAll('#chat-log li.chat-msg[data-dir="in"] .chat-text')].some((e) => e.textContent === 'still here')`, 10*time.Second)
	if s := evalJS[string](t, browser, `document.querySelector('#status').textContent`); s != "Connected" {
		t.Fatalf("status after bad input %q", s)
	}
}
