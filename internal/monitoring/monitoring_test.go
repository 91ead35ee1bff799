package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/audit"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/internal/store/sqlite"
)

// pausingStates is a store whose AlertStates, for an upload whose context carries a pause, tells
// the test it has read the states and waits to be let go: the test decides what happens between an
// upload's reading its patient's alert states and its writing them back.
type pausingStates struct{ store.Store }

type pauseKey struct{}

type pause struct{ read, resume chan struct{} }

func (s pausingStates) AlertStates(ctx context.Context, patientID string) (monitor.States, error) {
	st, err := s.Store.AlertStates(ctx, patientID)
	if p, ok := ctx.Value(pauseKey{}).(pause); ok {
		close(p.read)
		<-p.resume
	}
	return st, err
}

// TestConcurrentUploadsKeepAlertState: two devices of one patient upload at the same time; neither
// hides the other's threshold crossings by writing back a stale state.
func TestConcurrentUploadsKeepAlertState(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Options{Store: pausingStates{st}, Audit: audit.New(st, nil, nil), DeviceLinks: noLinks{}})
	if err != nil {
		t.Fatal(err)
	}
	p := consult.Provider{ID: "u_1", Email: "a@b.example", Name: "Dr A", PasswordHash: "x", CreatedAt: time.Now()}
	if err := st.CreateProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	pt, _ := s.AddPatient(ctx, p, "t", "Ada", "")
	device := func(name string) monitor.Device {
		e, err := s.CreateEnrollment(ctx, p, "t", pt.ID)
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.EnrollDevice(ctx, e.Code, name, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		dev, err := s.DeviceByToken(ctx, d.Token)
		if err != nil {
			t.Fatal(err)
		}
		return dev
	}
	oxi, cuff := device("oximeter"), device("cuff")
	start := time.Now().Add(-time.Hour)
	at := func(i int) string { return start.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano) }
	spo2 := func(i, v int) int {
		res, err := s.Upload(ctx, oxi, testBatch(fmt.Sprint("oxi-", i), fmt.Sprintf(`{"code":"2708-6","value":%d,"unit":"%%","time":%q}`, v, at(i))))
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Alerts)
	}
	if n := spo2(0, 88); n != 1 {
		t.Fatalf("SpO2 88: %d alerts, want 1", n)
	}
	// The cuff's upload reads the states (SpO2 low) and is held there...
	hold := pause{read: make(chan struct{}), resume: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		bp := fmt.Sprintf(`{"code":"85354-9","time":%q,"components":[{"code":"8480-6","value":120,"unit":"mm[Hg]"},{"code":"8462-4","value":80,"unit":"mm[Hg]"}]}`, at(1))
		if _, err := s.Upload(context.WithValue(ctx, pauseKey{}, hold), cuff, testBatch("cuff-1", bp)); err != nil {
			t.Error(err)
		}
	})
	<-hold.read
	// ...while the oximeter's SpO2 comes back in range (it waits for the cuff, if uploads of one
	// patient take turns)...
	wg.Go(func() { spo2(2, 97) })
	time.Sleep(100 * time.Millisecond)
	close(hold.resume)
	wg.Wait()
	// ...so the next low SpO2 is a new crossing, whatever the cuff wrote.
	if n := spo2(3, 87); n != 1 {
		t.Fatalf("SpO2 87 after 97: %d alerts, want 1 (the cuff's upload wrote back a stale state)", n)
	}
}

// noLinks makes no device links: these tests join no consultation.
type noLinks struct{}

func (noLinks) DeviceURL(consult.Consultation, string, time.Time) string { return "" }

// testBatch is a batch of readings as a device sends it.
func testBatch(id string, readings ...string) Batch {
	b := Batch{ID: id}
	for _, r := range readings {
		b.Readings = append(b.Readings, json.RawMessage(r))
	}
	return b
}
