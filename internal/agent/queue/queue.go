// Package queue is the device agent's on-disk queue of readings waiting to be uploaded: appended to a
// pending segment, sealed into batch files that are written whole and synced, and sent oldest first.
// A crash loses nothing that was appended, and sends nothing twice under another batch id.
package queue

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/telemed/telemed/vitals"
)

// Batch limits. The server takes 1000 readings and 8 MiB, but a reverse proxy in front of it may
// take less: nginx's default client_max_body_size is 1 MiB. A batch is sealed at 1000 readings or
// before its body passes 900 KiB, whichever comes first, so that it passes such a proxy.
const (
	MaxBatchReadings = 1000
	maxBatchBytes    = 900 << 10
)

// Queue files, in DIR/queue:
//
//	pending.jsonl                  the segment readings are appended to: a header line
//	                               {"batch_id":"b_...","seq":N}, then one reading per line
//	000000000042_b_....json        a sealed batch: exactly the body of its upload
//	tmp-*                          a batch being written (removed at start: it was never renamed)
//
// A batch's name starts with its seq, so that names in lexical order are in the order to send.
const (
	pendingName = "pending.jsonl"
	tmpPrefix   = "tmp-"
)

var batchName = regexp.MustCompile(`^([0-9]{12})_([A-Za-z0-9_.:-]{1,100})\.json$`)

// Queue is the on-disk queue of readings waiting to be uploaded. Readings are appended to a pending
// segment; Seal turns the segment into a batch file, written whole and synced before it appears
// under its name. The batch id is fixed when the segment starts (in its header), so a segment sealed
// again after a crash is the same batch, which the server stores once.
//
// The folder is listed once, when the queue opens: from then on this process owns it (the agent's
// folder is locked), so the queue keeps its batches' names in memory rather than listing a folder
// that may hold a day's worth of them every second.
type Queue struct {
	dir string
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	f       *os.File // the pending segment; nil when there is none
	id      string   // its batch id
	seq     uint64   // its seq
	n       int      // readings in it
	size    int64    // bytes in the segment file (header included)
	body    int      // bytes of the batch it would seal into
	nextSeq uint64
	names   []string            // the sealed batches' file names, oldest first
	ids     map[string]struct{} // their batch ids
	sealed  chan struct{}       // signalled (without blocking) when a batch is sealed
}

// Sealed is signalled (without blocking) when a batch is sealed.
func (q *Queue) Sealed() <-chan struct{} { return q.sealed }

// ListDir lists a folder. Tests (the agent's too) replace it to count how often the queue lists its
// folder; nothing else should.
var ListDir = os.ReadDir

// pendingHeader is the first line of a pending segment.
type pendingHeader struct {
	BatchID string `json:"batch_id"`
	Seq     uint64 `json:"seq"`
}

// Open opens the queue in dir, creating it, and recovers what a crash left: half-written
// batches are removed and a pending segment is sealed.
func Open(dir string, log *slog.Logger, now func() time.Time) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue folder: %w", err)
	}
	q := &Queue{dir: dir, log: log, now: now, nextSeq: 1, ids: map[string]struct{}{}, sealed: make(chan struct{}, 1)}
	entries, err := ListDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue folder: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("queue: remove unfinished batch: %w", err)
			}
			continue
		}
		if m := batchName.FindStringSubmatch(name); m != nil {
			seq, _ := strconv.ParseUint(m[1], 10, 64)
			q.nextSeq = max(q.nextSeq, seq+1)
			q.names = append(q.names, name)
			q.ids[m[2]] = struct{}{}
		}
	}
	slices.Sort(q.names)
	if err := q.recover(); err != nil {
		return nil, err
	}
	return q, nil
}

// recover seals a pending segment a previous run left.
func (q *Queue) recover() error {
	path := filepath.Join(q.dir, pendingName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: read %s: %w", path, err)
	}
	var h pendingHeader
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if json.Unmarshal(line, &h) != nil || !batchIDPattern.MatchString(h.BatchID) || h.Seq == 0 {
		// The header is written and synced before any reading, so this is a damaged file. Its
		// content names the batch, so that sealing it again gives the same id.
		sum := sha256.Sum256(data)
		h = pendingHeader{BatchID: "b_r" + hex.EncodeToString(sum[:12]), Seq: q.nextSeq}
		q.log.Warn("queue: the pending segment's header is damaged; sealing it under an id made from its content",
			"file", path, "batch", h.BatchID)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("queue: open %s: %w", path, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.f, q.id, q.seq = f, h.BatchID, h.Seq
	q.nextSeq = max(q.nextSeq, h.Seq+1)
	q.log.Info("queue: sealing the readings a previous run left", "batch", h.BatchID)
	return q.sealLocked()
}

var batchIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// newBatchID returns a batch id unique to this device: the time it starts (for people reading the
// queue) and 60 random bits.
func newBatchID(now time.Time) string {
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	b := make([]byte, 12)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return "b_" + now.UTC().Format("20060102T150405.000Z") + "_" + string(b)
}

// Append adds a reading to the pending segment, sealing it first if it is full.
func (q *Queue) Append(r vitals.Reading) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("queue: encode reading: %w", err)
	}
	line = append(line, '\n')
	q.mu.Lock()
	defer q.mu.Unlock()
	// The batch grows by the reading and a comma.
	if q.f != nil && q.n > 0 && (q.n >= MaxBatchReadings || q.body+len(line) > maxBatchBytes) {
		if err := q.sealLocked(); err != nil {
			return err
		}
	}
	if q.f == nil {
		if err := q.startLocked(); err != nil {
			return err
		}
	}
	if _, err := q.f.Write(line); err != nil {
		// Cut what was written, so that the next reading starts a line of its own.
		q.f.Truncate(q.size)
		return fmt.Errorf("queue: append to %s: %w", q.f.Name(), err)
	}
	q.n++
	q.size += int64(len(line))
	q.body += len(line) // the reading, and a comma or the newline that ends the batch
	return nil
}

// batchOverhead is the size of a batch's body without its readings and commas.
func batchOverhead(id string) int {
	return len(`{"batch_id":"`) + len(id) + len(`","readings":[`) + len("]}\n") - 1 // the last reading's comma becomes "]}\n"'s newline
}

// startLocked starts a pending segment. Its header is synced before any reading is appended, so
// that its batch id survives a crash. q.mu is held.
func (q *Queue) startLocked() error {
	path := filepath.Join(q.dir, pendingName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("queue: start a segment: %w", err)
	}
	h := pendingHeader{BatchID: newBatchID(q.now()), Seq: q.nextSeq}
	line, _ := json.Marshal(h)
	line = append(line, '\n')
	if _, err := f.Write(line); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("queue: start a segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("queue: start a segment: %w", err)
	}
	if err := syncDir(q.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	q.f, q.id, q.seq, q.n, q.size, q.body = f, h.BatchID, h.Seq, 0, int64(len(line)), batchOverhead(h.BatchID)
	q.nextSeq++
	return nil
}

// Seal turns the pending segment into a batch file, if it has readings.
func (q *Queue) Seal() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sealLocked()
}

// sealLocked seals from the file, not from memory, so that a segment sealed again after a crash
// gives the same batch, byte for byte. A torn last line (no newline: the crash came mid-write) is
// left out. q.mu is held.
func (q *Queue) sealLocked() error {
	if q.f == nil {
		return nil
	}
	path := q.f.Name()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("queue: seal %s: %w", path, err)
	}
	lines := bytes.Split(data, []byte("\n"))
	// Leave out the header, and the torn line or "" after the last newline.
	lines = lines[min(1, len(lines)-1) : len(lines)-1]
	var body bytes.Buffer
	body.WriteString(`{"batch_id":"` + q.id + `","readings":[`)
	n := 0
	for i, l := range lines {
		if !json.Valid(l) || len(bytes.TrimSpace(l)) == 0 || l[0] != '{' {
			q.log.Warn("queue: a damaged line of the pending segment is left out", "batch", q.id, "line", i+2)
			continue
		}
		if n > 0 {
			body.WriteByte(',')
		}
		body.Write(l)
		n++
	}
	body.WriteString("]}\n")
	name := fmt.Sprintf("%012d_%s.json", q.seq, q.id)
	// A batch file of this id exists when a crash came after it was sealed and before its segment
	// was removed: it is sealed already.
	if _, done := q.ids[q.id]; n > 0 && !done {
		if err := WriteFile(q.dir, name, body.Bytes()); err != nil {
			return fmt.Errorf("queue: seal batch %s: %w", q.id, err)
		}
		q.addLocked(name)
	}
	q.f.Close()
	q.f = nil
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("queue: remove sealed segment: %w", err)
	}
	if n > 0 {
		select {
		case q.sealed <- struct{}{}:
		default:
		}
	}
	return nil
}

// addLocked adds a sealed batch to the list, in its place (the last, but for a segment a crash left
// sealed at the next start). q.mu is held.
func (q *Queue) addLocked(name string) {
	i, found := slices.BinarySearch(q.names, name)
	if !found {
		q.names = slices.Insert(q.names, i, name)
	}
	q.ids[BatchID(name)] = struct{}{}
}

// dropLocked takes a batch off the list. q.mu is held.
func (q *Queue) dropLocked(name string) {
	switch i, found := slices.BinarySearch(q.names, name); {
	case !found:
	case i == 0:
		// The oldest, sent: nearly always. Dropped without moving the rest, which a long queue
		// would make cost as much as listing it.
		q.names[0] = ""
		q.names = q.names[1:]
	default:
		q.names = slices.Delete(q.names, i, i+1)
	}
	delete(q.ids, BatchID(name))
}

// WriteFile writes a file so that it appears whole or not at all, even across a power loss:
// to a temporary file, synced, renamed, and the folder synced.
func WriteFile(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}

// batches returns the names of the sealed batches, oldest first.
func (q *Queue) Batches() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.names)
}

// oldest returns the name of the oldest sealed batch: the next to send.
func (q *Queue) Oldest() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.names) == 0 {
		return "", false
	}
	return q.names[0], true
}

// count returns how many sealed batches wait.
func (q *Queue) Count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.names)
}

// read returns a batch file's content: the body of its upload.
func (q *Queue) Read(name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(q.dir, name))
	if err != nil {
		return nil, fmt.Errorf("queue: read batch %s: %w", name, err)
	}
	return data, nil
}

// remove deletes a batch the server has answered. It leaves the queue even when its file cannot be
// removed: this run does not send it again (the next one does, and the server takes it as a
// duplicate).
func (q *Queue) Remove(name string) error {
	q.mu.Lock()
	q.dropLocked(name)
	q.mu.Unlock()
	if err := os.Remove(filepath.Join(q.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: remove batch %s: %w", name, err)
	}
	return nil
}

// moveTo moves a batch the server refused for good (or whose file is damaged) into the folder dir
// (made if need be), where it is kept, under the same name, for a person to look at; it returns its
// new path. Moved back into the queue's folder while the agent is stopped, it is sent again at the
// next start.
func (q *Queue) MoveTo(name, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("queue: move batch %s aside: %w", name, err)
	}
	to := filepath.Join(dir, name)
	if err := os.Rename(filepath.Join(q.dir, name), to); err != nil {
		return "", fmt.Errorf("queue: move batch %s aside: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		q.log.Warn("queue: cannot sync the folder a batch was moved to", "err", err)
	}
	q.mu.Lock()
	q.dropLocked(name)
	q.mu.Unlock()
	return to, nil
}

// skip takes a batch off this run's queue and leaves its file where it is: the next run sends it.
func (q *Queue) Skip(name string) {
	q.mu.Lock()
	q.dropLocked(name)
	q.mu.Unlock()
}

// pending reports whether a segment has readings not sealed yet.
func (q *Queue) Pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.f != nil && q.n > 0
}

// Close closes the pending segment without sealing it (the next open does).
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.f == nil {
		return nil
	}
	err := q.f.Close()
	q.f = nil
	return err
}

// BatchID returns the batch id in a batch file's name.
func BatchID(name string) string {
	if m := batchName.FindStringSubmatch(name); m != nil {
		return m[2]
	}
	return ""
}

// Waiting counts what the queue in dir holds that the server has not answered: its batches, and a
// pending segment as one more. It does not change the queue, so it may be asked while an agent runs.
func Waiting(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("queue: %w", err)
	}
	n := 0
	for _, e := range entries {
		if batchName.MatchString(e.Name()) {
			n++
		}
		if e.Name() == pendingName {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				n++
			}
		}
	}
	return n, nil
}
