package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// testConsultations checks that consultations are listed newest first per provider, need their
// provider, and end once.
func testConsultations(t *testing.T, s ConsultationsStore) {
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
	must(t, s.CreateProvider(ctx, provider("u_2", "c@d.example")))
	for i := range 3 {
		must(t, s.CreateConsultation(ctx, consult.Consultation{ID: fmt.Sprintf("c_%d", i), ProviderID: "u_1",
			Title: "t", CreatedAt: t0.Add(time.Duration(i) * time.Minute), ExpiresAt: t0.Add(time.Hour)}))
	}
	must(t, s.CreateConsultation(ctx, consult.Consultation{ID: "c_other", ProviderID: "u_2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	if err := s.CreateConsultation(ctx, consult.Consultation{ID: "c_x", ProviderID: "u_nobody", CreatedAt: t0, ExpiresAt: t0}); err == nil {
		t.Fatal("consultation of a provider that does not exist was stored")
	}
	list, err := s.ListConsultations(ctx, "u_1", 10)
	if err != nil || len(list) != 3 || list[0].ID != "c_2" || list[2].ID != "c_0" {
		t.Fatalf("ListConsultations = %+v, %v; want c_2, c_1, c_0", list, err)
	}
	if list, _ := s.ListConsultations(ctx, "u_1", 2); len(list) != 2 {
		t.Fatalf("limit not applied: %d", len(list))
	}
	c, err := s.Consultation(ctx, "c_1")
	if err != nil || c.Title != "t" || !c.ExpiresAt.Equal(t0.Add(time.Hour)) || c.EndedAt != nil {
		t.Fatalf("Consultation = %+v, %v", c, err)
	}
	must(t, s.EndConsultation(ctx, "c_1", t0.Add(5*time.Minute)))
	must(t, s.EndConsultation(ctx, "c_1", t0.Add(9*time.Minute)))
	c, _ = s.Consultation(ctx, "c_1")
	if c.EndedAt == nil || !c.EndedAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("EndedAt = %v, want the first end", c.EndedAt)
	}
	if err := s.EndConsultation(ctx, "c_none", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("end missing: %v", err)
	}
}

// testTranscripts checks that a transcript reads back as saved, and that saving again replaces it.
func testTranscripts(t *testing.T, s ConsultationsStore) {
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
	for _, id := range []string{"c_1", "c_2"} {
		must(t, s.CreateConsultation(ctx, consult.Consultation{ID: id, ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	}
	if _, err := s.Transcript(ctx, "c_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no transcript saved yet: %v, want ErrNotFound", err)
	}
	first := consult.Transcript{ConsultationID: "c_1", SavedAt: t0.Add(time.Minute), SavedBy: "u_1", Messages: []consult.TranscriptMessage{
		{From: consult.RolePatient, Name: "Ada", Text: "Hello", At: t0.Add(123 * time.Millisecond)},
		{From: consult.RoleProvider, Name: "", Text: "Bonjour 👋 <b>\"quoted\"</b>\nline two", At: t0.Add(2*time.Second + 456789*time.Nanosecond)},
		{From: consult.RolePatient, Name: "Ada", Text: "Same time, kept in order", At: t0.Add(2*time.Second + 456789*time.Nanosecond)},
	}}
	must(t, s.PutTranscript(ctx, first))
	got, err := s.Transcript(ctx, "c_1")
	must(t, err)
	sameTranscript(t, got, first)
	if _, err := s.Transcript(ctx, "c_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another consultation's transcript: %v, want ErrNotFound", err)
	}

	// Saving again replaces the transcript, messages, time and actor alike.
	second := consult.Transcript{ConsultationID: "c_1", SavedAt: t0.Add(5 * time.Minute), SavedBy: "provider link",
		Messages: []consult.TranscriptMessage{{From: consult.RoleProvider, Name: "Dr u_1", Text: "Only this", At: t0}}}
	must(t, s.PutTranscript(ctx, second))
	got, err = s.Transcript(ctx, "c_1")
	must(t, err)
	sameTranscript(t, got, second)

	// An empty transcript is a transcript.
	must(t, s.PutTranscript(ctx, consult.Transcript{ConsultationID: "c_2", SavedAt: t0, SavedBy: "u_1"}))
	got, err = s.Transcript(ctx, "c_2")
	must(t, err)
	if len(got.Messages) != 0 || got.SavedBy != "u_1" {
		t.Fatalf("empty transcript = %+v", got)
	}

	if err := s.PutTranscript(ctx, consult.Transcript{ConsultationID: "c_none", SavedAt: t0, SavedBy: "u_1"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("transcript of a consultation that does not exist: %v, want ErrNotFound", err)
	}
}

// sameTranscript fails t unless got is want, times compared as instants (SavedAt to the millisecond).
func sameTranscript(t *testing.T, got, want consult.Transcript) {
	t.Helper()
	if got.ConsultationID != want.ConsultationID || got.SavedBy != want.SavedBy || !got.SavedAt.Equal(want.SavedAt) || len(got.Messages) != len(want.Messages) {
		t.Fatalf("Transcript = %+v, want %+v", got, want)
	}
	for i, m := range got.Messages {
		w := want.Messages[i]
		if m.From != w.From || m.Name != w.Name || m.Text != w.Text || !m.At.Equal(w.At) {
			t.Fatalf("message %d = %+v, want %+v", i, m, w)
		}
	}
}

// testInvitations checks that invitations read back as made, stop at their limit even when made at
// once, and are revoked once; and that removing a consultation's patient is kept.
func testInvitations(t *testing.T, s ConsultationsStore) {
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
	must(t, s.CreateConsultation(ctx, consult.Consultation{ID: "c_1", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, s.CreateConsultation(ctx, consult.Consultation{ID: "c_2", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	inv := consult.Invitation{ID: "i_1", ConsultationID: "c_1", Role: consult.RoleGuest, Name: "Marta (interpreter)", CreatedAt: t0}
	must(t, s.CreateInvitation(ctx, inv, 3))
	if err := s.CreateInvitation(ctx, inv, 3); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same id again: %v, want ErrConflict", err)
	}
	if err := s.CreateInvitation(ctx, consult.Invitation{ID: "i_x", ConsultationID: "c_none", Role: consult.RoleGuest, Name: "x", CreatedAt: t0}, 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("invitation to no consultation: %v, want ErrNotFound", err)
	}
	// Eight at once for the two places left: exactly two get in.
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			errs <- s.CreateInvitation(ctx, consult.Invitation{ID: fmt.Sprintf("i_r%d", i), ConsultationID: "c_1",
				Role: consult.RoleClinician, Name: "Dr R", CreatedAt: t0.Add(time.Duration(i+1) * time.Second)}, 3)
		}()
	}
	made := madeUnderLimit(t, errs, 8, "CreateInvitation")
	if made != 2 {
		t.Fatalf("%d invitations made for 2 places", made)
	}
	must(t, s.CreateInvitation(ctx, consult.Invitation{ID: "i_2", ConsultationID: "c_2", Role: consult.RoleGuest, Name: "Other", CreatedAt: t0}, 3))
	list, err := s.Invitations(ctx, "c_1")
	if err != nil || len(list) != 3 || list[0].ID != "i_1" || list[0].Name != inv.Name || list[0].Role != consult.RoleGuest ||
		!list[0].CreatedAt.Equal(t0) || list[0].RevokedAt != nil || list[1].Role != consult.RoleClinician {
		t.Fatalf("Invitations = %+v, %v", list, err)
	}
	must(t, s.RevokeInvitation(ctx, "i_1", t0.Add(time.Minute)))
	must(t, s.RevokeInvitation(ctx, "i_1", t0.Add(2*time.Minute)))
	got, err := s.Invitation(ctx, "i_1")
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("revoked invitation = %+v, %v; want revoked at the first time", got, err)
	}
	if _, err := s.Invitation(ctx, "i_none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing invitation: %v", err)
	}
	if err := s.RevokeInvitation(ctx, "i_none", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke missing: %v", err)
	}
	must(t, s.RemovePatient(ctx, "c_1", t0.Add(3*time.Minute)))
	must(t, s.RemovePatient(ctx, "c_1", t0.Add(4*time.Minute)))
	c, _ := s.Consultation(ctx, "c_1")
	if c.PatientRemovedAt == nil || !c.PatientRemovedAt.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("PatientRemovedAt = %v, want the first removal", c.PatientRemovedAt)
	}
	if c, _ := s.Consultation(ctx, "c_2"); c.PatientRemovedAt != nil {
		t.Fatal("removing one consultation's patient touched another's")
	}
}
