package queue

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func hr(v float64, i int) vitals.Reading {
	return vitals.Reading{Code: vitals.HeartRate, Value: vitals.Float(v), Unit: "/min", Time: t0.Add(time.Duration(i) * time.Second)}
}

func openTestQueue(t *testing.T, dir string) *Queue {
	t.Helper()
	q, err := Open(dir, slog.New(slog.DiscardHandler), func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// batchBody is an upload body as read back from a batch file.
type batchBody struct {
	BatchID  string           `json:"batch_id"`
	Readings []vitals.Reading `json:"readings"`
}

func readBatch(t *testing.T, q *Queue, name string) batchBody {
	t.Helper()
	data, err := q.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	var b batchBody
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatalf("batch %s is not an upload body: %v\n%s", name, err, data)
	}
	return b
}

func batchNames(t *testing.T, q *Queue) []string {
	t.Helper()
	return q.Batches()
}

func TestQueueSealsInOrder(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir)
	if err := q.Seal(); err != nil || len(batchNames(t, q)) != 0 {
		t.Fatalf("sealing nothing made a batch: %v", err)
	}
	for i := range 3 {
		for j := range 2 {
			if err := q.Append(hr(60+float64(i), j)); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Seal(); err != nil {
			t.Fatal(err)
		}
	}
	names := batchNames(t, q)
	if len(names) != 3 {
		t.Fatalf("batches %v", names)
	}
	ids := map[string]bool{}
	for i, n := range names {
		b := readBatch(t, q, n)
		if len(b.Readings) != 2 || *b.Readings[0].Value != 60+float64(i) || b.BatchID != BatchID(n) || ids[b.BatchID] {
			t.Errorf("batch %d (%s): %+v", i, n, b)
		}
		if !batchIDPattern.MatchString(b.BatchID) {
			t.Errorf("batch id %q is not one the server takes", b.BatchID)
		}
		ids[b.BatchID] = true
		fi, _ := os.Stat(filepath.Join(dir, n))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("batch %s has mode %v", n, fi.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, pendingName)); !os.IsNotExist(err) {
		t.Errorf("a sealed segment was left: %v", err)
	}
	// A new queue on the same folder numbers after them.
	q.Close()
	q2 := openTestQueue(t, dir)
	q2.Append(hr(70, 0))
	q2.Seal()
	names = batchNames(t, q2)
	if len(names) != 4 || readBatch(t, q2, names[3]).Readings[0].Value == nil || *readBatch(t, q2, names[3]).Readings[0].Value != 70 {
		t.Errorf("after reopening, the new batch is not last: %v", names)
	}
}

func TestQueueBatchLimit(t *testing.T) {
	q := openTestQueue(t, t.TempDir())
	for i := range MaxBatchReadings*2 + 5 {
		if err := q.Append(hr(60, i)); err != nil {
			t.Fatal(err)
		}
	}
	q.Seal()
	names := batchNames(t, q)
	if len(names) != 3 {
		t.Fatalf("%d batches", len(names))
	}
	for i, want := range []int{MaxBatchReadings, MaxBatchReadings, 5} {
		if n := len(readBatch(t, q, names[i]).Readings); n != want {
			t.Errorf("batch %d has %d readings, want %d", i, n, want)
		}
	}
	// Big waveforms: sealed before 900 KiB, so that a batch passes a proxy that takes 1 MiB (nginx's
	// default client_max_body_size), and full enough to be worth a request.
	q2 := openTestQueue(t, t.TempDir())
	samples := make([]float64, vitals.MaxSamples)
	for i := range samples {
		samples[i] = -1.23456789
	}
	const n = 400
	for i := range n {
		q2.Append(vitals.Reading{Code: vitals.ECG, Unit: "mV", PeriodMS: 4, Samples: samples, Time: t0.Add(time.Duration(i) * 20 * time.Second)})
	}
	q2.Seal()
	names = batchNames(t, q2)
	total := 0
	for i, name := range names {
		data, _ := q2.Read(name)
		if len(data) > 900<<10 {
			t.Errorf("batch %s is %d bytes: over 900 KiB", name, len(data))
		}
		b := readBatch(t, q2, name)
		total += len(b.Readings)
		// Each batch but the last is full: one more reading would have passed the limit.
		one, _ := json.Marshal(b.Readings[0])
		if i < len(names)-1 && len(data)+len(one)+1 <= 900<<10 {
			t.Errorf("batch %s is %d bytes: sealed early", name, len(data))
		}
	}
	if total != n {
		t.Errorf("%d readings in the batches, want %d", total, n)
	}
}

// TestQueueListsOnce: the queue lists its folder when it opens, and not as it seals and sends.
func TestQueueListsOnce(t *testing.T) {
	lists := countListings(t)
	dir := t.TempDir()
	q := openTestQueue(t, dir)
	for i := range 50 {
		q.Append(hr(60, i))
		if err := q.Seal(); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		name, ok := q.Oldest()
		if !ok {
			t.Fatal("the queue is empty")
		}
		q.Remove(name)
	}
	if n := q.Count(); n != 30 || len(q.Batches()) != 30 {
		t.Errorf("%d batches left, want 30", n)
	}
	if n := lists(); n != 1 {
		t.Errorf("the queue's folder was listed %d times, want once", n)
	}
	// What it keeps in memory is what the folder holds, oldest first.
	q.Close()
	q2 := openTestQueue(t, dir)
	if got, want := q2.Batches(), q.Batches(); !slices.Equal(got, want) || !slices.IsSorted(got) {
		t.Errorf("the folder holds %v, the queue had %v", got, want)
	}
	first, _ := q2.Oldest()
	if b := readBatch(t, q2, first); *b.Readings[0].Value != 60 || !b.Readings[0].Time.Equal(t0.Add(20*time.Second)) {
		t.Errorf("the oldest batch left is %s: %+v", first, b)
	}
}

// countListings counts the listings of a queue's folder until the test ends.
func countListings(t *testing.T) func() int {
	var mu sync.Mutex
	n := 0
	ListDir = func(dir string) ([]os.DirEntry, error) {
		mu.Lock()
		n++
		mu.Unlock()
		return os.ReadDir(dir)
	}
	t.Cleanup(func() { ListDir = os.ReadDir })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestQueueCrash: what a crash leaves is sealed at the next start, under the id its segment had, so
// that the server takes a batch sealed twice as one.
func TestQueueCrash(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir)
	for i := range 3 {
		q.Append(hr(80, i))
	}
	id := q.id
	q.Close() // the crash: no seal
	// It died writing a fourth reading, after a damaged third... and a half-written batch.
	f, _ := os.OpenFile(filepath.Join(dir, pendingName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("{\"code\":\"8867-4\",\"val")
	f.Close()
	os.WriteFile(filepath.Join(dir, tmpPrefix+"123"), []byte("{"), 0o600)

	q2 := openTestQueue(t, dir)
	names := batchNames(t, q2)
	if len(names) != 1 {
		t.Fatalf("batches after recovery: %v", names)
	}
	b := readBatch(t, q2, names[0])
	if b.BatchID != id || len(b.Readings) != 3 {
		t.Errorf("recovered batch %s with %d readings; want %s with 3 (the torn line left out)", b.BatchID, len(b.Readings), id)
	}
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"123")); !os.IsNotExist(err) {
		t.Error("a half-written batch was left")
	}
	first, _ := q2.Read(names[0])

	// A crash after the batch was renamed into place but before its segment was removed: the segment
	// is sealed again, into nothing new.
	q2.Append(hr(90, 0))
	q2.Append(hr(91, 1))
	seg, _ := os.ReadFile(filepath.Join(dir, pendingName))
	q2.Seal()
	q2.Close()
	os.WriteFile(filepath.Join(dir, pendingName), seg, 0o600)
	q3 := openTestQueue(t, dir)
	if names := batchNames(t, q3); len(names) != 2 {
		t.Errorf("sealing a segment twice made another batch: %v", names)
	}
	// And once that batch was uploaded and removed, sealing the segment again gives it byte for byte:
	// the server answers it as a duplicate.
	names = batchNames(t, q3)
	second, _ := q3.Read(names[1])
	q3.Remove(names[1])
	q3.Close()
	os.WriteFile(filepath.Join(dir, pendingName), seg, 0o600)
	q4 := openTestQueue(t, dir)
	names = batchNames(t, q4)
	again, _ := q4.Read(names[len(names)-1])
	if len(names) != 2 || string(again) != string(second) {
		t.Errorf("sealed again: %v\n%s\nwant\n%s", names, again, second)
	}
	if got, _ := q4.Read(names[0]); string(got) != string(first) {
		t.Error("the first batch changed")
	}
}

func TestQueueDamagedSegment(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir)
	q.Append(hr(80, 0))
	q.Close()
	f, _ := os.OpenFile(filepath.Join(dir, pendingName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("\x00\x00garbage\n")
	f.WriteString(`{"code":"8867-4","value":81,"unit":"/min","time":"2026-11-24T10:00:01Z"}` + "\n")
	f.Close()
	q2 := openTestQueue(t, dir)
	names := batchNames(t, q2)
	if len(names) != 1 || len(readBatch(t, q2, names[0]).Readings) != 2 {
		t.Fatalf("a damaged line in the middle should be left out, the rest kept: %v", names)
	}
	q2.Close()

	// A segment whose header is damaged: sealed under an id made of its content, the same each time.
	seg := "garbage header\n" + `{"code":"8867-4","value":81,"unit":"/min","time":"2026-11-24T10:00:01Z"}` + "\n"
	var ids []string
	for range 2 {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, pendingName), []byte(seg), 0o600)
		q := openTestQueue(t, d)
		names := batchNames(t, q)
		if len(names) != 1 {
			t.Fatalf("damaged header: %v", names)
		}
		ids = append(ids, readBatch(t, q, names[0]).BatchID)
	}
	if ids[0] != ids[1] || !strings.HasPrefix(ids[0], "b_r") {
		t.Errorf("ids of a segment with a damaged header: %v", ids)
	}
	// A segment torn in its header, or empty: nothing to seal, and no crash.
	for _, seg := range []string{"", `{"batch_id":"b_x","se`, `{"batch_id":"b_x","seq":3}` + "\n"} {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, pendingName), []byte(seg), 0o600)
		q := openTestQueue(t, d)
		if names := batchNames(t, q); len(names) != 0 {
			t.Errorf("segment %q sealed into %v", seg, names)
		}
	}
}
