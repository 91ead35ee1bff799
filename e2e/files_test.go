package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
)

// dataSide is a Go participant that records the chat messages, receipts, files and protocol errors it
// gets.
type dataSide struct {
	name      string
	chats     chan client.ChatMessage
	delivered chan string
	files     chan *client.Transfer
	errs      chan error

	mu    sync.Mutex
	sinks map[string]*hashSink
}

func newDataSide(name string) *dataSide {
	return &dataSide{name: name, chats: make(chan client.ChatMessage, 64), delivered: make(chan string, 64),
		files: make(chan *client.Transfer, 64), errs: make(chan error, 64), sinks: map[string]*hashSink{}}
}

// hashSink is where a received file goes: only its hash and length are kept.
type hashSink struct {
	h hash.Hash
	n int64
}

func (s *hashSink) Write(b []byte) (int, error) { s.n += int64(len(b)); return s.h.Write(b) }
func (s *hashSink) sum() string                 { return hex.EncodeToString(s.h.Sum(nil)) }

func (d *dataSide) config(link string) client.Config {
	return client.Config{
		Link: link, Name: d.name, API: loopbackAPI(),
		OnChat:          func(_ *client.Peer, m client.ChatMessage) { d.chats <- m },
		OnChatDelivered: func(_ *client.Peer, id string) { d.delivered <- id },
		OnFile: func(_ *client.Peer, t *client.Transfer) io.Writer {
			s := &hashSink{h: sha256.New()}
			d.mu.Lock()
			d.sinks[t.Info().ID] = s
			d.mu.Unlock()
			d.files <- t
			return s
		},
		OnDataError: func(_ *client.Peer, err error) { d.errs <- err },
	}
}

func (d *dataSide) sink(id string) *hashSink {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sinks[id]
}

// goCall puts two Go clients in a call and returns each side's peer, once the chat channel is open.
func goCall(t *testing.T, ctx context.Context, prov, pat *dataSide) (provPeer, patPeer *client.Peer) {
	provPeer, patPeer, _ = goCallSessions(t, ctx, prov, pat)
	return provPeer, patPeer
}

// goCallSessions is goCall that also returns the patient's session.
func goCallSessions(t *testing.T, ctx context.Context, prov, pat *dataSide) (provPeer, patPeer *client.Peer, patient *client.Session) {
	t.Helper()
	e := startServer(t, serverOptions())
	c := e.newConsultation(t, time.Hour)
	provider := mustJoin(t, ctx, prov.config(c.StartURL))
	patient = mustJoin(t, ctx, pat.config(c.JoinURL))
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := provider.Admit(ctx, patient.ID()); err != nil {
		t.Fatal(err)
	}
	var err error
	if patPeer, err = patient.WaitPeer(ctx); err != nil {
		t.Fatal(err)
	}
	if provPeer, err = provider.WaitPeer(ctx); err != nil {
		t.Fatal(err)
	}
	// Chat opens on both sides; a first message each way shows it.
	for _, p := range []*client.Peer{provPeer, patPeer} {
		if err := p.WaitChat(ctx); err != nil {
			t.Fatalf("the chat channel never opened: %v", err)
		}
		if _, err := p.SendChat("ping"); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []*dataSide{prov, pat} {
		recvChat(t, ctx, d)
		waitReceipt(t, ctx, d)
	}
	return provPeer, patPeer, patient
}

func recvChat(t *testing.T, ctx context.Context, d *dataSide) client.ChatMessage {
	t.Helper()
	select {
	case m := <-d.chats:
		return m
	case <-ctx.Done():
		t.Fatalf("%s got no chat message", d.name)
		return client.ChatMessage{}
	}
}

func waitReceipt(t *testing.T, ctx context.Context, d *dataSide) string {
	t.Helper()
	select {
	case id := <-d.delivered:
		return id
	case <-ctx.Done():
		t.Fatalf("%s got no delivery receipt", d.name)
		return ""
	}
}

func recvFile(t *testing.T, ctx context.Context, d *dataSide) *client.Transfer {
	t.Helper()
	select {
	case f := <-d.files:
		return f
	case <-ctx.Done():
		t.Fatalf("%s was offered no file", d.name)
		return nil
	}
}

// randomFile returns size random bytes and their hex SHA-256.
func randomFile(t testing.TB, size int) ([]byte, string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// TestChatAndFilesGoClients: two Go clients chat both ways with receipts and send each other files of
// random data, checked by SHA-256; a receiver cancels one, and both sides say so.
func TestChatAndFilesGoClients(t *testing.T) {
	// Seconds normally; the race detector and a loaded machine can make pion's SCTP stall and back off.
	ctx := ctxTimeout(t, 3*time.Minute)
	prov, pat := newDataSide("Dr Grace Hopper"), newDataSide("Ada Lovelace")
	provPeer, patPeer, patient := goCallSessions(t, ctx, prov, pat)

	// Chat, both ways: the text arrives as sent (markup is text) and the sender gets a receipt.
	for _, c := range []struct {
		from     *client.Peer
		sender   *dataSide
		receiver *dataSide
		text     string
	}{
		{patPeer, pat, prov, "  I take <b>5 mg</b> of amlodipine & it's fine  "},
		{provPeer, prov, pat, "Good. Keep the dose; send me a photo of the rash, please. 👍"},
	} {
		sent, err := c.from.SendChat(c.text)
		if err != nil {
			t.Fatal(err)
		}
		got := recvChat(t, ctx, c.receiver)
		if got.ID != sent.ID || got.Text != strings.TrimSpace(c.text) || got.SentAt.UnixMilli() != sent.SentAt.UnixMilli() {
			t.Fatalf("%s got %+v, want %+v", c.receiver.name, got, sent)
		}
		if id := waitReceipt(t, ctx, c.sender); id != sent.ID {
			t.Fatalf("%s got a receipt for %s, want %s", c.sender.name, id, sent.ID)
		}
	}
	// 4000 characters that JSON could escape still make one frame.
	long := strings.Repeat("<&>", client.MaxChatText/3)
	if _, err := patPeer.SendChat(long); err != nil {
		t.Fatalf("4000 characters of markup: %v", err)
	}
	if m := recvChat(t, ctx, prov); m.Text != long {
		t.Fatalf("long message arrived as %d characters", len(m.Text))
	}
	waitReceipt(t, ctx, pat)
	if _, err := patPeer.SendChat(strings.Repeat("x", client.MaxChatText+1)); err == nil {
		t.Fatal("a message over the limit was sent")
	}
	if _, err := patPeer.SendChat("   "); err == nil {
		t.Fatal("an empty message was sent")
	}

	// Files both ways, several sizes, including an empty one and one that is not a whole chunk.
	for _, c := range []struct {
		from     *client.Peer
		receiver *dataSide
		size     int
	}{
		{patPeer, prov, 3<<20 + 17},
		{provPeer, pat, 0},
		{provPeer, pat, client.MaxChunkMessage - 8},
		{provPeer, pat, 20 << 20},
	} {
		data, want := randomFile(t, c.size)
		tr, err := c.from.SendFile(ctx, client.FileInfo{Name: "../../etc/scan.bin", MIME: "application/octet-stream", Size: int64(c.size)}, strings.NewReader(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		in := recvFile(t, ctx, c.receiver)
		if in.Info().Name != "scan.bin" || in.Info().Size != int64(c.size) || in.Info().ID != tr.Info().ID {
			t.Fatalf("offer seen as %+v, want scan.bin (path removed), %d bytes, id %s", in.Info(), c.size, tr.Info().ID)
		}
		if err := tr.Wait(ctx); err != nil {
			t.Fatalf("send %d bytes: %v", c.size, err)
		}
		if err := in.Wait(ctx); err != nil {
			t.Fatalf("receive %d bytes: %v", c.size, err)
		}
		s := c.receiver.sink(in.Info().ID)
		if s.n != int64(c.size) || s.sum() != want || in.SHA256() != want || tr.SHA256() != want {
			t.Fatalf("%d bytes: received %d bytes with SHA-256 %s (receiver says %s, sender %s), want %s",
				c.size, s.n, s.sum(), in.SHA256(), tr.SHA256(), want)
		}
		if done, total := tr.Progress(); done != total {
			t.Fatalf("sender's progress at the end %d/%d", done, total)
		}
	}

	// The receiver cancels a big file midway: both sides end with "cancelled", neither as complete.
	tr, in := fileUnderWay(t, ctx, patPeer, prov, "ct-scan.dcm")
	in.Cancel()
	wantEnd(t, ctx, "sender after the receiver cancelled", tr, errcode.Cancelled, true)
	wantEnd(t, ctx, "receiver after cancelling", in, errcode.Cancelled, false)

	// The sender cancels midway: the receiver hears it from the other side.
	tr, in = fileUnderWay(t, ctx, provPeer, pat, "echo.mp4")
	tr.Cancel()
	wantEnd(t, ctx, "receiver after the sender cancelled", in, errcode.Cancelled, true)
	wantEnd(t, ctx, "sender after cancelling", tr, errcode.Cancelled, false)

	// The sender leaves midway: the receiver says interrupted, naming who left; never complete.
	_, in = fileUnderWay(t, ctx, patPeer, prov, "mri.dcm")
	patient.Close()
	if err := patPeer.WaitChat(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("WaitChat after the session closed: %v, want ErrClosed", err)
	}
	if err := wantEnd(t, ctx, "receiver after the sender left", in, errcode.Interrupted, false); !strings.Contains(err.Message, "Ada Lovelace left") {
		t.Fatalf("receiver after the sender left: %v, want it to name who left", err)
	}
}

// fileUnderWay starts a 200 MiB file that comes slowly from the peer `from` to `to`, and returns both
// ends once the receiver has 1 MiB of it.
func fileUnderWay(t *testing.T, ctx context.Context, from *client.Peer, to *dataSide, name string) (out, in *client.Transfer) {
	t.Helper()
	big := &slowReader{left: 200 << 20}
	out, err := from.SendFile(ctx, client.FileInfo{Name: name, Size: big.left}, big)
	if err != nil {
		t.Fatal(err)
	}
	in = recvFile(t, ctx, to)
	for done, _ := in.Progress(); done < 1<<20; done, _ = in.Progress() {
		time.Sleep(10 * time.Millisecond)
	}
	return out, in
}

// wantEnd waits for tr to end with a *TransferError of code, reported by the other side or not.
func wantEnd(t *testing.T, ctx context.Context, what string, tr *client.Transfer, code errcode.Code, remote bool) *client.TransferError {
	t.Helper()
	var te *client.TransferError
	if err := tr.Wait(ctx); !errors.As(err, &te) || te.Code != code || te.Remote != remote {
		t.Fatalf("%s: %v, want %s (reported by the other side: %v)", what, err, code, remote)
	}
	return te
}

// slowReader yields zeros, a little at a time, so that a transfer is still under way when cancelled.
type slowReader struct{ left int64 }

func (r *slowReader) Read(b []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(b)), r.left, 64<<10)
	clear(b[:n])
	r.left -= n
	time.Sleep(time.Millisecond)
	return int(n), nil
}

// rawFrame is one message a misbehaving sender puts on a channel.
type rawFrame struct {
	text   string
	binary []byte
}

func chunk(offset uint64, data string) rawFrame {
	b := binary.BigEndian.AppendUint64(nil, offset)
	return rawFrame{binary: append(b, data...)}
}

func sha(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

// rawChannel opens a data channel with label to the other side, sends frames once it is open, and
// returns the first text message that comes back (the other side's verdict).
func rawChannel(t *testing.T, ctx context.Context, p *client.Peer, label string, frames []rawFrame) map[string]string {
	t.Helper()
	dc, err := p.PC.CreateDataChannel(label, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	reply := make(chan map[string]string, 1)
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		var v map[string]string
		json.Unmarshal(m.Data, &v)
		select {
		case reply <- v:
		default:
		}
	})
	dc.OnOpen(func() {
		for _, f := range frames {
			if f.binary != nil {
				dc.Send(f.binary)
			} else {
				dc.SendText(f.text)
			}
		}
	})
	select {
	case v := <-reply:
		return v
	case <-ctx.Done():
		t.Fatalf("no answer on %s to %d frames", label, len(frames))
		return nil
	}
}

// TestBadDataChannelInputGoClient: a peer that sends malformed chat frames, chunks out of order, a
// size that lies or a hash that does not match gets a clear error, each transfer fails with its
// reason, and the call goes on: chat still works afterwards.
func TestBadDataChannelInputGoClient(t *testing.T) {
	ctx := ctxTimeout(t, 2*time.Minute)
	victim, mallory := newDataSide("Dr Grace Hopper"), newDataSide("Mallory")
	victimPeer, malloryPeer := goCall(t, ctx, victim, mallory)

	offer := func(size int64) rawFrame {
		return rawFrame{text: fmt.Sprintf(`{"type":"offer","id":"f%d","name":"x.bin","size":%d,"mime":""}`, time.Now().UnixNano(), size)}
	}
	end := func(data string) rawFrame { return rawFrame{text: `{"type":"end","sha256":"` + sha(data) + `"}`} }

	// Chat frames the victim cannot read: each is answered with bad_frame and reported.
	for _, frame := range []rawFrame{
		{text: "not json"},
		{text: `{"type":"msg","text":"no id","sent_at":1}`},
		{text: `{"type":"msg","id":"a","text":"   ","sent_at":1}`},
		{text: `{"type":"shout","id":"a"}`},
		{binary: []byte{1, 2, 3}},
		{text: `{"type":"msg","id":"a","text":"` + strings.Repeat("é", client.MaxChatText+1) + `","sent_at":1}`},
	} {
		got := rawChannel(t, ctx, malloryPeer, client.ChatLabel, []rawFrame{frame})
		if got["type"] != "error" || got["code"] != "bad_frame" || got["message"] == "" {
			t.Fatalf("chat frame %.40q: answer %v, want a bad_frame error with a message", frame.text, got)
		}
		select {
		case err := <-victim.errs:
			if !strings.Contains(err.Error(), "chat message") {
				t.Fatalf("reported %v", err)
			}
		case <-ctx.Done():
			t.Fatal("the victim reported nothing")
		}
	}

	for _, c := range []struct {
		name     string
		frames   []rawFrame
		code     errcode.Code
		reported bool // the victim's OnFile saw the transfer (the offer was valid)
	}{
		{"chunk out of order", []rawFrame{offer(10), chunk(5, "hello"), chunk(0, "hello"), end("hellohello")}, errcode.OutOfOrder, true},
		{"more data than offered", []rawFrame{offer(4), chunk(0, "hello"), end("hello")}, errcode.SizeMismatch, true},
		{"end before the size", []rawFrame{offer(100), chunk(0, "hello"), end("hello")}, errcode.SizeMismatch, true},
		{"hash does not match", []rawFrame{offer(5), chunk(0, "hello"), end("world")}, errcode.HashMismatch, true},
		{"malformed hash", []rawFrame{offer(5), chunk(0, "hello"), {text: `{"type":"end","sha256":"xyz"}`}}, errcode.BadFrame, true},
		{"data before the offer", []rawFrame{chunk(0, "hello")}, errcode.BadFrame, false},
		{"chunk without data", []rawFrame{offer(5), {binary: []byte{0, 0, 0}}}, errcode.BadFrame, true},
		{"not JSON", []rawFrame{{text: "{"}}, errcode.BadFrame, false},
		{"unknown type", []rawFrame{offer(5), {text: `{"type":"gift"}`}}, errcode.BadFrame, true},
		{"a second offer", []rawFrame{offer(5), offer(5)}, errcode.BadFrame, true},
		{"name with only a path", []rawFrame{{text: `{"type":"offer","id":"n","name":"","size":1}`}}, errcode.BadFrame, false},
		{"negative size", []rawFrame{{text: `{"type":"offer","id":"n","name":"a","size":-1}`}}, errcode.BadFrame, false},
		{"over 1 GiB", []rawFrame{{text: `{"type":"offer","id":"n","name":"a","size":1073741825}`}}, errcode.TooLarge, false},
	} {
		got := rawChannel(t, ctx, malloryPeer, client.FileLabel, c.frames)
		if got["type"] != "error" || got["code"] != string(c.code) || got["message"] == "" {
			t.Fatalf("%s: answer %v, want error %s with a message", c.name, got, c.code)
		}
		if c.reported {
			in := recvFile(t, ctx, victim)
			var te *client.TransferError
			if err := in.Wait(ctx); !errors.As(err, &te) || te.Code != c.code || te.Remote {
				t.Fatalf("%s: the victim's transfer ended with %v, want %s", c.name, err, c.code)
			}
		}
		for len(victim.errs) > 0 {
			<-victim.errs
		}
	}

	// The call goes on: chat both ways, and a real file.
	if _, err := malloryPeer.SendChat("sorry"); err != nil {
		t.Fatal(err)
	}
	if m := recvChat(t, ctx, victim); m.Text != "sorry" {
		t.Fatalf("chat after the bad input: %q", m.Text)
	}
	data, want := randomFile(t, 1<<20)
	tr, err := malloryPeer.SendFile(ctx, client.FileInfo{Name: "ok.bin", Size: int64(len(data))}, strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	in := recvFile(t, ctx, victim)
	if err := in.Wait(ctx); err != nil || victim.sink(in.Info().ID).sum() != want {
		t.Fatalf("a good file after the bad input: %v", err)
	}
	if err := tr.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	_ = victimPeer
}
