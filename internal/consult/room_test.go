package consult

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestRoom(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	r := NewRoom(0)
	if m := mustAdd(t, r, Member{ID: "doc", Role: RoleProvider, Name: "Dr", Since: t0}); !m.Admitted() {
		t.Fatal("provider should be admitted on arrival")
	}
	if m := mustAdd(t, r, Member{ID: "ada", Role: RolePatient, Name: "Ada", Since: t0.Add(2 * time.Second)}); m.Admitted() {
		t.Fatal("patient should wait")
	}
	mustAdd(t, r, Member{ID: "bob", Role: RolePatient, Name: "Bob", Since: t0.Add(time.Second)})

	if w := r.Waiting(); len(w) != 2 || w[0].ID != "bob" || w[1].ID != "ada" {
		t.Fatalf("waiting = %v, want bob then ada (longest waiting first)", w)
	}
	if err := r.CanSignal("ada", "doc"); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("waiting patient signals: %v, want ErrNotAdmitted", err)
	}

	steps := []struct {
		name    string
		op      func() error
		wantErr error
	}{
		{"patient cannot admit", func() error { _, err := r.Admit("ada", "bob"); return err }, ErrForbidden},
		{"unknown member", func() error { _, err := r.Admit("doc", "zed"); return err }, ErrUnknownPeer},
		{"admit ada", func() error { _, err := r.Admit("doc", "ada"); return err }, nil},
		{"admit ada twice", func() error { _, err := r.Admit("doc", "ada"); return err }, ErrUnknownPeer},
		{"one patient at a time", func() error { _, err := r.Admit("doc", "bob"); return err }, ErrRoomFull},
		{"decline bob", func() error { _, err := r.Decline("doc", "bob"); return err }, nil},
		{"bob is gone", func() error { _, err := r.Decline("doc", "bob"); return err }, ErrUnknownPeer},
	}
	for _, s := range steps {
		if err := s.op(); !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
		}
	}
	if err := r.CanSignal("ada", "doc"); err != nil {
		t.Fatalf("admitted patient signals provider: %v", err)
	}
	if err := r.CanSignal("ada", "ada"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("signal to self: %v, want ErrUnknownPeer", err)
	}
	if !r.Polite("doc", "ada") || r.Polite("ada", "doc") {
		t.Fatal("the member admitted first must be the polite one")
	}
	if a := r.Admitted(); len(a) != 2 || a[0].ID != "doc" || a[1].ID != "ada" {
		t.Fatalf("admitted = %v, want doc, ada in admission order", a)
	}
	if ids := r.Admitters(); len(ids) != 1 || ids[0] != "doc" {
		t.Fatalf("providers = %v", ids)
	}
	// When the patient leaves, another may be admitted.
	mustAdd(t, r, Member{ID: "cy", Role: RolePatient, Name: "Cy", Since: t0})
	r.Remove("ada")
	if _, err := r.Admit("doc", "cy"); err != nil {
		t.Fatalf("admit after the first patient left: %v", err)
	}
	r.Remove("cy")
	r.Remove("doc")
	if r.Len() != 0 {
		t.Fatalf("room has %d members after all left", r.Len())
	}
}

func TestConsultationStatus(t *testing.T) {
	now := time.Now()
	c := Consultation{ExpiresAt: now.Add(time.Hour)}
	if c.Status(now) != StatusOpen {
		t.Fatal("want open")
	}
	if c.Status(now.Add(time.Hour)) != StatusExpired {
		t.Fatal("want expired at the expiry instant")
	}
	c.EndedAt = &now
	if c.Status(now) != StatusEnded {
		t.Fatal("want ended")
	}
}

func mustAdd(t *testing.T, r *Room, m Member) Member {
	t.Helper()
	got, err := r.Add(m)
	if err != nil {
		t.Fatalf("add %s: %v", m.ID, err)
	}
	return got
}

func TestWaitingRoomIsBounded(t *testing.T) {
	r := NewRoom(0)
	for i := range MaxWaiting {
		mustAdd(t, r, Member{ID: string(rune('a' + i)), Role: RolePatient})
	}
	if _, err := r.Add(Member{ID: "late", Role: RolePatient}); !errors.Is(err, ErrWaitingRoomFull) {
		t.Fatalf("patient past the bound: %v, want ErrWaitingRoomFull", err)
	}
	if _, err := r.Add(Member{ID: "doc", Role: RoleProvider}); err != nil {
		t.Fatalf("the provider must always get in: %v", err)
	}
}

func TestRoomDevices(t *testing.T) {
	r := NewRoom(0)
	if r.Present() {
		t.Fatal("empty room: someone present")
	}
	d, err := r.Add(Member{ID: "d1", Role: RoleDevice, Name: "Oximeter"})
	if err != nil || !d.Admitted() {
		t.Fatalf("device: %+v, %v; want admitted at once", d, err)
	}
	if r.Present() {
		t.Fatal("a device alone counts as someone present")
	}
	if _, err := r.Add(Member{ID: "pr", Role: RoleProvider}); err != nil || !r.Present() {
		t.Fatalf("provider: %v, present %v", err, r.Present())
	}
	if _, err := r.Admit("d1", "x"); err != ErrForbidden {
		t.Fatalf("a device admitting: %v, want ErrForbidden", err)
	}
	for i := 1; i < MaxDevices; i++ {
		if _, err := r.Add(Member{ID: fmt.Sprint("d", i+1), Role: RoleDevice}); err != nil {
			t.Fatalf("device %d: %v", i+1, err)
		}
	}
	if _, err := r.Add(Member{ID: "dx", Role: RoleDevice}); err != ErrTooManyDevices {
		t.Fatalf("device %d: %v, want ErrTooManyDevices", MaxDevices+1, err)
	}
	if err := r.CanSignal("d1", "pr"); err != nil {
		t.Fatalf("device to provider: %v", err)
	}
	if err := r.CanSignal("d1", "d2"); err != ErrUnknownPeer {
		t.Fatalf("device to device: %v, want ErrUnknownPeer", err)
	}
}

// TestGroupRoom walks a group visit: invited people wait, a clinician admits like the provider, the
// call fills at its limit, and only those who admit may remove or let others share.
func TestGroupRoom(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	r := NewRoom(4)
	mustAdd(t, r, Member{ID: "doc", Role: RoleProvider, Since: t0})
	for i, m := range []Member{
		{ID: "ada", Role: RolePatient}, {ID: "int", Role: RoleGuest}, {ID: "gp", Role: RoleClinician},
		{ID: "fam", Role: RoleGuest}, {ID: "aunt", Role: RoleGuest},
	} {
		m.Since = t0.Add(time.Duration(i+1) * time.Second)
		if got := mustAdd(t, r, m); got.Admitted() {
			t.Fatalf("%s (%s) admitted on arrival; everyone but the provider waits", m.ID, m.Role)
		}
	}
	mustAdd(t, r, Member{ID: "spo2", Role: RoleDevice, Since: t0})

	steps := []struct {
		name    string
		op      func() error
		wantErr error
	}{
		{"a waiting clinician cannot admit yet", func() error { _, err := r.Admit("gp", "ada"); return err }, ErrNotAdmitted},
		{"admit the clinician", func() error { _, err := r.Admit("doc", "gp"); return err }, nil},
		{"the clinician admits the patient", func() error { _, err := r.Admit("gp", "ada"); return err }, nil},
		{"a patient cannot admit", func() error { _, err := r.Admit("ada", "int"); return err }, ErrForbidden},
		{"a device cannot admit", func() error { _, err := r.Admit("spo2", "int"); return err }, ErrForbidden},
		{"admit the interpreter: 4 people", func() error { _, err := r.Admit("doc", "int"); return err }, nil},
		{"a fifth is over the limit", func() error { _, err := r.Admit("doc", "fam"); return err }, ErrCallFull},
		{"a guest cannot remove", func() error { _, err := r.RemoveBy("int", "ada"); return err }, ErrForbidden},
		{"nobody removes the provider", func() error { _, err := r.RemoveBy("gp", "doc"); return err }, ErrForbidden},
		{"nobody removes a device", func() error { _, err := r.RemoveBy("doc", "spo2"); return err }, ErrForbidden},
		{"nor themselves", func() error { _, err := r.RemoveBy("gp", "gp"); return err }, ErrUnknownPeer},
		{"the clinician removes the interpreter", func() error { _, err := r.RemoveBy("gp", "int"); return err }, nil},
		{"now the family member fits", func() error { _, err := r.Admit("doc", "fam"); return err }, nil},
		{"a waiting person can be removed too", func() error { _, err := r.RemoveBy("doc", "aunt"); return err }, nil},
		{"a guest may not share unasked", func() error { _, err := r.SetMedia("fam", Media{Screen: true}); return err }, ErrForbidden},
		{"a guest cannot allow sharing", func() error { _, err := r.AllowShare("fam", "ada", true); return err }, ErrForbidden},
		{"the provider allows the family member", func() error { _, err := r.AllowShare("doc", "fam", true); return err }, nil},
		{"who then shares", func() error { _, err := r.SetMedia("fam", Media{Audio: true, Screen: true}); return err }, nil},
		{"the clinician shares, always allowed", func() error { _, err := r.SetMedia("gp", Media{Screen: true}); return err }, nil},
	}
	for _, s := range steps {
		if err := s.op(); !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
		}
	}
	if _, err := r.Add(Member{ID: "late", Role: RoleGuest, Since: t0}); !errors.Is(err, ErrCallFull) {
		t.Fatalf("a join into a full call: %v, want ErrCallFull", err)
	}
	if _, err := r.Add(Member{ID: "doc2", Role: RoleProvider, Since: t0}); !errors.Is(err, ErrCallFull) {
		t.Fatalf("a provider's join into a full call: %v, want ErrCallFull", err)
	}
	if m, _ := r.Member("fam"); !m.Media.Screen || !m.CanShare {
		t.Fatalf("family member %+v, want sharing", m)
	}
	m, err := r.AllowShare("doc", "fam", false)
	if err != nil || m.CanShare || m.Media.Screen || !m.Media.Audio {
		t.Fatalf("taking sharing back: %+v, %v; want the share ended, the microphone kept", m, err)
	}
	if ids := r.Admitters(); len(ids) != 2 || ids[0] != "doc" || ids[1] != "gp" {
		t.Fatalf("admitters = %v, want doc and gp", ids)
	}
	if m, _ := r.Member("ada"); !m.Media.Audio || !m.Media.Video || m.CanShare {
		t.Fatalf("patient %+v: a person starts with microphone and camera on, and may not share", m)
	}
	// Polite: every pair has one polite side, the earlier admitted.
	for _, a := range r.Admitted() {
		for _, b := range r.Admitted() {
			if a.ID != b.ID && r.Polite(a.ID, b.ID) == r.Polite(b.ID, a.ID) {
				t.Fatalf("%s and %s are both polite or both impolite", a.ID, b.ID)
			}
		}
	}
}

func TestRoomSnapshotRestoresTheSameRoom(t *testing.T) {
	r := NewRoom(3)
	t0 := time.Unix(1000, 0)
	for i, m := range []Member{{ID: "prov", Role: RoleProvider}, {ID: "pat", Role: RolePatient}, {ID: "g", Role: RoleGuest}} {
		m.Since = t0.Add(time.Duration(i) * time.Second)
		if _, err := r.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Admit("prov", "pat"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetMedia("pat", Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	got := RestoreRoom(r.Snapshot())
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("restored room differs:\n got %+v\nwant %+v", got.Snapshot(), r.Snapshot())
	}
	// The restored room goes on where the first left off: the guest is admitted after the patient.
	if _, err := got.Admit("prov", "g"); err != nil {
		t.Fatal(err)
	}
	if !got.Polite("pat", "g") || got.Polite("g", "pat") {
		t.Fatal("admission order was not kept")
	}
}
