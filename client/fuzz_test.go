package client

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
)

// fakeChannel records what a transfer sends back.
type fakeChannel struct {
	texts  []string
	closed bool
}

func (c *fakeChannel) Send([]byte) error       { return nil }
func (c *fakeChannel) SendText(s string) error { c.texts = append(c.texts, s); return nil }
func (c *fakeChannel) Close() error            { c.closed = true; return nil }
func (c *fakeChannel) BufferedAmount() uint64  { return 0 }
func (c *fakeChannel) last() string            { return c.texts[len(c.texts)-1] }
func (c *fakeChannel) said(code errcode.Code) bool {
	return len(c.texts) > 0 && strings.Contains(c.last(), `"`+string(code)+`"`)
}
func (w *recordingWriter) Write(b []byte) (int, error) {
	w.data = append(w.data, b...)
	return len(b), nil
}

type recordingWriter struct{ data []byte }

// newReceiver is a receiving transfer fed by hand: frames go to onReceiverFrame as the channel would.
func newReceiver() (*Transfer, *fakeChannel, *recordingWriter) {
	w := &recordingWriter{}
	s := &Session{log: slog.New(slog.DiscardHandler)}
	s.cfg.OnFile = func(*Peer, *Transfer) io.Writer { return w }
	p := &Peer{s: s, Name: "Mallory"}
	ch := &fakeChannel{}
	t := &Transfer{peer: p, dc: ch, done: make(chan struct{}), h: sha256.New()}
	return t, ch, w
}

// splitFrames turns fuzz input into frames: a kind byte (even: text, odd: binary), a length byte,
// then that many bytes.
func splitFrames(data []byte) []webrtc.DataChannelMessage {
	var out []webrtc.DataChannelMessage
	for len(data) >= 2 {
		kind, n := data[0], int(data[1])
		data = data[2:]
		n = min(n, len(data))
		out = append(out, webrtc.DataChannelMessage{IsString: kind%2 == 0, Data: data[:n]})
		data = data[n:]
	}
	return out
}

func frameBytes(frames ...webrtc.DataChannelMessage) []byte {
	var b []byte
	for _, f := range frames {
		kind := byte(0)
		if !f.IsString {
			kind = 1
		}
		b = append(b, kind, byte(len(f.Data)))
		b = append(b, f.Data...)
	}
	return b
}

func text(s string) webrtc.DataChannelMessage {
	return webrtc.DataChannelMessage{IsString: true, Data: []byte(s)}
}

func chunkMsg(off uint64, data string) webrtc.DataChannelMessage {
	return webrtc.DataChannelMessage{Data: append(binary.BigEndian.AppendUint64(nil, off), data...)}
}

func sum(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// FuzzReceiver feeds a receiving transfer any sequence of frames. It must never panic, and it may end
// complete only with exactly the offered number of bytes written, matching the hash it was sent.
func FuzzReceiver(f *testing.F) {
	offer := text(`{"type":"offer","id":"a1","name":"x.png","size":10,"mime":"image/png"}`)
	f.Add(frameBytes(offer, chunkMsg(0, "hello"), chunkMsg(5, "world"), text(`{"type":"end","sha256":"`+sum("helloworld")+`"}`)))
	f.Add(frameBytes(offer, chunkMsg(5, "hello")))
	f.Add(frameBytes(offer, chunkMsg(0, "helloworld!"), text(`{"type":"end","sha256":"`+sum("helloworld!")+`"}`)))
	f.Add(frameBytes(offer, chunkMsg(0, "helloworld"), text(`{"type":"end","sha256":"`+sum("nope")+`"}`)))
	f.Add(frameBytes(chunkMsg(0, "x")))
	f.Add(frameBytes(text(`{"type":"offer","id":"z","name":"a/b\\..","size":0}`), text(`{"type":"end","sha256":"`+sum("")+`"}`)))
	f.Add(frameBytes(offer, text(`{"type":"cancel"}`)))
	f.Add(frameBytes(text("{")))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, ch, w := newReceiver()
		for _, m := range splitFrames(data) {
			tr.onReceiverFrame(m)
		}
		select {
		case <-tr.done:
		default:
			return // still waiting for more
		}
		if tr.Err() != nil {
			// A verdict of this side's is told to the other side, which then closes the channel.
			if !strings.Contains(tr.Err().Error(), "other side") && !ch.said("error") && !ch.said("cancel") {
				t.Fatalf("failed with %v but told the other side nothing: %v", tr.Err(), ch.texts)
			}
			return
		}
		if int64(len(w.data)) != tr.info.Size || sum(string(w.data)) != tr.SHA256() || !ch.said("done") {
			t.Fatalf("complete with %d of %d bytes, hash %s of %s, said %v", len(w.data), tr.info.Size, sum(string(w.data)), tr.SHA256(), ch.texts)
		}
	})
}

// FuzzChatFrame: parsing never panics, and what it accepts as a message is one a person can be shown.
func FuzzChatFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"msg","id":"abc","text":"hello","sent_at":1795000000000}`,
		`{"type":"receipt","id":"abc"}`,
		`{"type":"error","code":"bad_frame","message":"x"}`,
		`{"type":"msg","id":"a b","text":"x","sent_at":1}`,
		`{"type":"msg","id":"a","text":"  ","sent_at":1}`,
		`not json`, `{}`, `[]`, `{"type":7}`,
	} {
		f.Add(s, true)
	}
	f.Add("\x00\x01", false)
	f.Fuzz(func(t *testing.T, data string, isString bool) {
		m, err := parseChatFrame(webrtc.DataChannelMessage{IsString: isString, Data: []byte(data)})
		if err != nil || m.Type != "msg" {
			return
		}
		text := consult.TrimChatText(m.Text)
		if !validID(m.ID) || text == "" || utf8.RuneCountInString(text) > MaxChatText || !utf8.ValidString(text) || m.SentAt == nil {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// FuzzSanitizeFileName: whatever a peer calls a file, the name kept has no path and no control
// characters.
func FuzzSanitizeFileName(f *testing.F) {
	for _, s := range []string{"scan.png", "../../etc/passwd", `C:\Windows\x.exe`, "a\x00b", "..", "", " ", "\u202eexe.png"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := SanitizeFileName(name)
		if got == "" || got == "." || got == ".." || strings.ContainsAny(got, `/\`) || utf8.RuneCountInString(got) > 255 {
			t.Fatalf("SanitizeFileName(%q) = %q", name, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) {
				t.Fatalf("SanitizeFileName(%q) = %q keeps a control character", name, got)
			}
		}
	})
}

func TestReceiverVerdicts(t *testing.T) {
	offer := text(`{"type":"offer","id":"a1","name":"x.png","size":10}`)
	for _, c := range []struct {
		name   string
		frames []webrtc.DataChannelMessage
		code   errcode.Code // "" = complete
	}{
		{"whole file", []webrtc.DataChannelMessage{offer, chunkMsg(0, "hello"), chunkMsg(5, "world"), text(`{"type":"end","sha256":"` + sum("helloworld") + `"}`)}, ""},
		{"out of order", []webrtc.DataChannelMessage{offer, chunkMsg(5, "world")}, errcode.OutOfOrder},
		{"too much", []webrtc.DataChannelMessage{offer, chunkMsg(0, "helloworld!")}, errcode.SizeMismatch},
		{"too little", []webrtc.DataChannelMessage{offer, chunkMsg(0, "hello"), text(`{"type":"end","sha256":"` + sum("hello") + `"}`)}, errcode.SizeMismatch},
		{"wrong hash", []webrtc.DataChannelMessage{offer, chunkMsg(0, "helloworld"), text(`{"type":"end","sha256":"` + sum("hellowórld") + `"}`)}, errcode.HashMismatch},
		{"over 1 GiB", []webrtc.DataChannelMessage{text(`{"type":"offer","id":"a1","name":"x","size":1073741825}`)}, errcode.TooLarge},
		{"bad JSON", []webrtc.DataChannelMessage{text(`{"type":`)}, errcode.BadFrame},
	} {
		tr, ch, _ := newReceiver()
		for _, m := range c.frames {
			tr.onReceiverFrame(m)
		}
		err := tr.Err()
		if c.code == "" {
			if err != nil || !ch.said("done") {
				t.Errorf("%s: %v, said %v; want complete and done", c.name, err, ch.texts)
			}
			continue
		}
		te, ok := err.(*TransferError)
		if !ok || te.Code != c.code || !ch.said(c.code) {
			t.Errorf("%s: %v, said %v; want %s, and the other side told", c.name, err, ch.texts, c.code)
		}
	}
}
