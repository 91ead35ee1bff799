package client

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/errcode"
)

// File transfer limits (docs/datachannels.md).
const (
	MaxFileSize = 1 << 30 // bytes
	chunkHeader = 8
	// maxIncoming is how many files one peer may be sending to us at once.
	maxIncoming = 4
	// unsetMaxMessage is the message size to assume of a peer that advertises none (RFC 8841).
	unsetMaxMessage = 64 << 10
)

// FileInfo describes a file offered to the peer.
type FileInfo struct {
	// ID identifies the transfer; SendFile chooses one when empty.
	ID string
	// Name is the file's name, without a path. The receiver sees it sanitized.
	Name string
	// MIME is the media type, for display; may be empty.
	MIME string
	// Size is the exact number of bytes the reader yields, at most MaxFileSize.
	Size int64
}

// TransferError says why a transfer did not complete.
type TransferError struct {
	Code    errcode.Code
	Message string
	// Remote is set when the other side reported it (its error or its cancel).
	Remote bool
}

func (e *TransferError) Error() string {
	if e.Remote {
		return "telemed: file transfer " + string(e.Code) + " (the other side): " + e.Message
	}
	return "telemed: file transfer " + string(e.Code) + ": " + e.Message
}

// Transfer is one file going to or coming from a peer.
type Transfer struct {
	info     FileInfo
	peer     *Peer
	outgoing bool
	dc       channel
	started  time.Time
	bytes    atomic.Int64 // handed to the channel, or received
	low      chan struct{}
	done     chan struct{}
	once     sync.Once

	mu    sync.Mutex
	err   error
	sum   string
	ended time.Time

	// Receiving side, touched only by the channel's message callback.
	offered bool
	w       io.Writer
	h       hash.Hash
}

// Info returns what the file was offered as (for an incoming file, with its name sanitized).
func (t *Transfer) Info() FileInfo { return t.info }

// Peer returns the other side.
func (t *Transfer) Peer() *Peer { return t.peer }

// Outgoing reports whether this side sends the file.
func (t *Transfer) Outgoing() bool { return t.outgoing }

// Progress returns the bytes done and the file's size. A sender counts the bytes that have left its
// channel's buffer, a receiver those received.
func (t *Transfer) Progress() (done, total int64) {
	n := t.bytes.Load()
	select {
	case <-t.done:
		if t.Err() == nil {
			return t.info.Size, t.info.Size // the receiver has it all, whatever acks are still on the way
		}
	default:
	}
	if t.outgoing {
		n -= int64(t.dc.BufferedAmount())
		n = max(n, 0)
	}
	return n, t.info.Size
}

// Done is closed when the transfer has ended: complete, failed or cancelled.
func (t *Transfer) Done() <-chan struct{} { return t.done }

// Err returns nil once the transfer completed with a matching SHA-256, or a *TransferError. Before
// the end it returns nil too; see Done.
func (t *Transfer) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Wait waits for the end of the transfer and returns Err. If ctx ends first it returns ctx.Err() and
// the transfer goes on.
func (t *Transfer) Wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SHA256 returns the hex SHA-256 of the file once known: a sender's once it has read the file, a
// receiver's once it has checked it.
func (t *Transfer) SHA256() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sum
}

// Duration returns how long the transfer took, or has taken so far.
func (t *Transfer) Duration() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended.IsZero() {
		return time.Since(t.started)
	}
	return t.ended.Sub(t.started)
}

// Cancel stops the transfer and tells the other side.
func (t *Transfer) Cancel() {
	select {
	case <-t.done:
		return
	default:
	}
	sendJSON(t.dc, errorFrame{Type: "cancel"})
	t.finish(&TransferError{Code: errcode.Cancelled, Message: "cancelled"}, false)
	t.closeSoon()
}

// lingerClose is how long a side that sent the last word (cancel or error) leaves the channel open for
// the other side to read it and close: pion can report a close before the messages that preceded it,
// and the other side would then see "interrupted" instead of the reason.
const lingerClose = 5 * time.Second

func (t *Transfer) closeSoon() {
	time.AfterFunc(lingerClose, func() { t.dc.Close() })
}

// finish ends the transfer with err (nil: complete), once. With closeChannel it closes the channel.
func (t *Transfer) finish(err error, closeChannel bool) {
	t.once.Do(func() {
		t.mu.Lock()
		t.err = err
		t.ended = time.Now()
		t.mu.Unlock()
		if t.peer != nil && t.info.ID != "" {
			t.peer.dcs.mu.Lock()
			if t.peer.dcs.transfers[t.info.ID] == t {
				delete(t.peer.dcs.transfers, t.info.ID)
				if !t.outgoing {
					t.peer.dcs.incoming--
				}
			}
			t.peer.dcs.mu.Unlock()
		}
		close(t.done)
		if closeChannel {
			t.dc.Close()
		}
	})
}

// fail ends the transfer for a reason found on this side, telling the other side why.
func (t *Transfer) fail(code errcode.Code, message string) {
	select {
	case <-t.done:
		return
	default:
	}
	sendJSON(t.dc, errorFrame{Type: "error", Code: code, Message: message})
	t.finish(&TransferError{Code: code, Message: message}, false)
	t.closeSoon()
}

func errInterrupted(p *Peer) error {
	who := p.Name
	if who == "" {
		who = "the other side"
	}
	return &TransferError{Code: errcode.Interrupted, Message: "interrupted: " + who + " left or the connection was lost"}
}

type fileFrame struct {
	Type    string       `json:"type"`
	ID      string       `json:"id,omitempty"`
	Name    string       `json:"name,omitempty"`
	Size    *int64       `json:"size,omitempty"`
	MIME    string       `json:"mime,omitempty"`
	SHA256  string       `json:"sha256,omitempty"`
	Code    errcode.Code `json:"code,omitempty"`
	Message string       `json:"message,omitempty"`
}

// SendFile sends size bytes of r to the peer as the file info describes, over a channel of its own.
// It returns at once; the Transfer reports progress and the end, which comes only once the receiver
// has checked the file's SHA-256. Ending ctx cancels the transfer.
func (p *Peer) SendFile(ctx context.Context, info FileInfo, r io.Reader) (*Transfer, error) {
	if info.ID == "" {
		info.ID = newID()
	}
	if err := checkOffer(info); err != nil {
		return nil, fmt.Errorf("send file: %w", err)
	}
	dc, err := p.PC.CreateDataChannel(FileLabel, nil)
	if err != nil {
		return nil, fmt.Errorf("send file %s: %w", info.Name, err)
	}
	t := &Transfer{info: info, peer: p, outgoing: true, dc: dc, started: time.Now(),
		low: make(chan struct{}, 1), done: make(chan struct{})}
	p.dcs.mu.Lock()
	if p.dcs.closed {
		p.dcs.mu.Unlock()
		dc.Close()
		return nil, fmt.Errorf("send file %s: %w", info.Name, ErrClosed)
	}
	if p.dcs.transfers == nil {
		p.dcs.transfers = make(map[string]*Transfer)
	}
	p.dcs.transfers[info.ID] = t
	p.dcs.mu.Unlock()

	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	dc.SetBufferedAmountLowThreshold(SendHighWater / 2)
	dc.OnBufferedAmountLow(func() {
		select {
		case t.low <- struct{}{}:
		default:
		}
	})
	dc.OnClose(func() { t.finish(errInterrupted(p), false) })
	dc.OnMessage(t.onSenderFrame)
	go t.send(ctx, r, opened)
	return t, nil
}

func (t *Transfer) send(ctx context.Context, r io.Reader, opened <-chan struct{}) {
	select {
	case <-opened:
	case <-t.done:
		return
	case <-ctx.Done():
		t.Cancel()
		return
	}
	size := t.info.Size
	if err := sendJSON(t.dc, fileFrame{Type: "offer", ID: t.info.ID, Name: t.info.Name, Size: &size, MIME: t.info.MIME}); err != nil {
		t.finish(errInterrupted(t.peer), true)
		return
	}
	msg := MaxChunkMessage
	if sctp := t.peer.PC.SCTP(); sctp != nil {
		if mms := int(sctp.GetCapabilities().MaxMessageSize); mms > 0 && mms < msg {
			msg = mms
		} else if mms == 0 {
			msg = unsetMaxMessage
		}
	}
	buf := make([]byte, msg)
	h := sha256.New()
	for off := int64(0); off < size; {
		n := int(min(int64(msg-chunkHeader), size-off))
		binary.BigEndian.PutUint64(buf, uint64(off))
		if _, err := io.ReadFull(r, buf[chunkHeader:chunkHeader+n]); err != nil {
			// The other side only needs to know it stopped; this side gets the reason.
			sendJSON(t.dc, errorFrame{Type: "cancel"})
			t.finish(&TransferError{Code: errcode.Cancelled, Message: fmt.Sprintf("reading the file at byte %d: %v", off, err)}, false)
			t.closeSoon()
			return
		}
		h.Write(buf[chunkHeader : chunkHeader+n])
		for t.dc.BufferedAmount() > SendHighWater {
			select {
			case <-t.low:
			case <-t.done:
				return
			case <-ctx.Done():
				t.Cancel()
				return
			}
		}
		if err := t.dc.Send(buf[:chunkHeader+n]); err != nil {
			t.finish(errInterrupted(t.peer), true)
			return
		}
		off += int64(n)
		t.bytes.Store(off)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	t.mu.Lock()
	t.sum = sum
	t.mu.Unlock()
	if err := sendJSON(t.dc, fileFrame{Type: "end", SHA256: sum}); err != nil {
		t.finish(errInterrupted(t.peer), true)
		return
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		t.Cancel()
	}
}

// onSenderFrame handles what the receiver says: done, cancel or error.
func (t *Transfer) onSenderFrame(msg webrtc.DataChannelMessage) {
	f, err := parseFileFrame(msg)
	if err != nil {
		t.peer.dataError(fmt.Errorf("file %s: %w", t.info.Name, err))
		t.fail(errcode.BadFrame, err.Error())
		return
	}
	switch f.Type {
	case "done":
		if t.SHA256() == "" {
			t.fail(errcode.BadFrame, "done before the end of the file")
			return
		}
		t.finish(nil, true)
	case "cancel", "error":
		t.finish(remoteEnd(f), true)
	default:
		t.fail(errcode.BadFrame, fmt.Sprintf("unexpected %q from the receiver", f.Type))
	}
}

func remoteEnd(f fileFrame) *TransferError {
	if f.Type == "cancel" {
		return &TransferError{Code: errcode.Cancelled, Message: "cancelled by the other side", Remote: true}
	}
	code := f.Code
	if code == "" {
		code = "error"
	}
	message := f.Message
	if message == "" {
		message = "the other side stopped the transfer"
	}
	return &TransferError{Code: code, Message: message, Remote: true}
}

// receiveFile reads a file channel the peer opened.
func (p *Peer) receiveFile(dc *webrtc.DataChannel) {
	t := &Transfer{peer: p, dc: dc, done: make(chan struct{}), h: sha256.New()}
	dc.OnMessage(t.onReceiverFrame)
	dc.OnClose(func() { t.finish(errInterrupted(p), false) })
}

func (t *Transfer) onReceiverFrame(msg webrtc.DataChannelMessage) {
	select {
	case <-t.done:
		return
	default:
	}
	if !msg.IsString {
		t.onChunk(msg.Data)
		return
	}
	f, err := parseFileFrame(msg)
	if err != nil {
		t.peer.dataError(fmt.Errorf("file channel: %w", err))
		t.fail(errcode.BadFrame, err.Error())
		return
	}
	switch f.Type {
	case "offer":
		if t.offered {
			t.fail(errcode.BadFrame, "a second offer on one channel")
			return
		}
		t.onOffer(f)
	case "end":
		if !t.offered {
			t.fail(errcode.BadFrame, "end before an offer")
			return
		}
		t.onEnd(f)
	case "cancel", "error":
		t.finish(remoteEnd(f), true)
	default:
		t.fail(errcode.BadFrame, fmt.Sprintf("unexpected %q from the sender", f.Type))
	}
}

func (t *Transfer) onOffer(f fileFrame) {
	p := t.peer
	info := FileInfo{ID: f.ID, Name: f.Name, MIME: f.MIME}
	if f.Size != nil {
		info.Size = *f.Size
	}
	if err := checkOffer(info); err != nil {
		code := errcode.BadFrame
		if info.Size > MaxFileSize {
			code = errcode.TooLarge
		}
		t.peer.dataError(fmt.Errorf("file offer: %w", err))
		t.fail(code, "offer: "+err.Error())
		return
	}
	if f.Size == nil {
		t.fail(errcode.BadFrame, "offer: size is missing")
		return
	}
	info.Name = SanitizeFileName(info.Name)
	t.info, t.offered, t.started = info, true, time.Now()

	p.dcs.mu.Lock()
	if p.dcs.incoming >= maxIncoming {
		p.dcs.mu.Unlock()
		t.fail(errcode.Busy, fmt.Sprintf("already receiving %d files from you; wait for one to finish", maxIncoming))
		return
	}
	if _, dup := p.dcs.transfers[info.ID]; dup {
		p.dcs.mu.Unlock()
		t.fail(errcode.BadFrame, "offer: a transfer with this id is already under way")
		return
	}
	if p.dcs.transfers == nil {
		p.dcs.transfers = make(map[string]*Transfer)
	}
	p.dcs.transfers[info.ID] = t
	p.dcs.incoming++
	p.dcs.mu.Unlock()

	if cb := p.s.cfg.OnFile; cb != nil {
		t.w = cb(p, t)
	}
	if t.w == nil {
		// Nobody wants it: say so as a cancel, which is what a person declining would send.
		sendJSON(t.dc, errorFrame{Type: "cancel"})
		t.finish(&TransferError{Code: errcode.Cancelled, Message: "refused: this program does not take files"}, false)
		t.closeSoon()
	}
}

func (t *Transfer) onChunk(b []byte) {
	if !t.offered {
		t.fail(errcode.BadFrame, "file data before the offer")
		return
	}
	if len(b) <= chunkHeader || len(b) > MaxChunkMessage {
		t.fail(errcode.BadFrame, fmt.Sprintf("a chunk of %d bytes; chunks are %d to %d bytes", len(b), chunkHeader+1, MaxChunkMessage))
		return
	}
	off := binary.BigEndian.Uint64(b)
	got := t.bytes.Load()
	if off != uint64(got) {
		t.fail(errcode.OutOfOrder, fmt.Sprintf("a chunk at byte %d arrived where byte %d was expected", off, got))
		return
	}
	data := b[chunkHeader:]
	if got+int64(len(data)) > t.info.Size {
		t.fail(errcode.SizeMismatch, fmt.Sprintf("the sender sent more than the %d bytes it announced", t.info.Size))
		return
	}
	if _, err := t.w.Write(data); err != nil {
		t.fail(errcode.WriteFailed, "could not store the file: "+err.Error())
		return
	}
	t.h.Write(data)
	t.bytes.Add(int64(len(data)))
}

func (t *Transfer) onEnd(f fileFrame) {
	if got := t.bytes.Load(); got != t.info.Size {
		t.fail(errcode.SizeMismatch, fmt.Sprintf("the file ended after %d of the %d bytes announced", got, t.info.Size))
		return
	}
	if !validSHA256(f.SHA256) {
		t.fail(errcode.BadFrame, "end: sha256 must be 64 lowercase hex digits")
		return
	}
	sum := hex.EncodeToString(t.h.Sum(nil))
	if sum != f.SHA256 {
		t.fail(errcode.HashMismatch, "the file's SHA-256 does not match: it was damaged or changed on the way")
		return
	}
	t.mu.Lock()
	t.sum = sum
	t.mu.Unlock()
	if err := sendJSON(t.dc, fileFrame{Type: "done"}); err != nil {
		t.finish(errInterrupted(t.peer), true)
		return
	}
	// The sender closes the channel once it reads done; closing here could race that message.
	t.finish(nil, false)
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseFileFrame reads a text frame of a file channel. Chunks are binary and not parsed here.
func parseFileFrame(msg webrtc.DataChannelMessage) (fileFrame, error) {
	var f fileFrame
	if err := decodeFrame(msg, &f, frameRules{limit: maxChatFrame, binary: "unexpected binary data", size: "a text frame", kind: "file"}); err != nil {
		return fileFrame{}, err
	}
	switch f.Type {
	case "offer", "end", "done", "cancel", "error":
		return f, nil
	case "":
		return f, errors.New("type is missing")
	default:
		return f, fmt.Errorf("unknown type %q", f.Type)
	}
}

func checkOffer(info FileInfo) error {
	switch {
	case !validID(info.ID):
		return errors.New("id must be 1-64 characters of A-Z a-z 0-9 _ -")
	case info.Name == "" || utf8.RuneCountInString(info.Name) > 255 || !utf8.ValidString(info.Name):
		return errors.New("name must be 1-255 characters")
	case info.Size < 0:
		return fmt.Errorf("size %d is negative", info.Size)
	case info.Size > MaxFileSize:
		return fmt.Errorf("the file is %d bytes; the limit is %d (1 GiB)", info.Size, MaxFileSize)
	case len(info.MIME) > 255:
		return errors.New("mime is over 255 characters")
	}
	return nil
}

// SanitizeFileName returns name as a receiver keeps it: what follows the last / or \, with control
// and format characters replaced, at most 255 characters, never empty or a dot name. It is a name to
// show; a program that stores the file should still choose the path itself (filepath.IsLocal, and on
// Windows its reserved names).
func SanitizeFileName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		// Format characters too: U+202E would make "x\u202Egpj.exe" display as "xexe.jpg".
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return '_'
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if r := []rune(name); len(r) > 255 {
		name = string(r[:255])
	}
	if name == "" || name == "." || name == ".." {
		return "file"
	}
	return name
}
