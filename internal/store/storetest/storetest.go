// Package storetest is the conformance suite every store.Store implementation passes: the same
// behaviour whether telemed runs on SQLite or on a shared database.
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

// Run runs the suite. open returns a new, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	provider := func(id, email string) consult.Provider {
		return consult.Provider{ID: id, Email: email, Name: "Dr " + id, PasswordHash: "$argon2id$x", CreatedAt: t0}
	}

	runMonitoring(t, open, t0)

	t.Run("providers", func(t *testing.T) {
		s := open(t)
		if n, err := s.CountProviders(ctx); err != nil || n != 0 {
			t.Fatalf("CountProviders = %d, %v", n, err)
		}
		p := provider("u_1", "Grace@Clinic.example")
		must(t, s.CreateProvider(ctx, p))
		if err := s.CreateProvider(ctx, provider("u_2", "grace@clinic.example")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate email (other case): %v, want ErrConflict", err)
		}
		got, err := s.ProviderByEmail(ctx, "grace@clinic.EXAMPLE")
		if err != nil || got != p {
			t.Fatalf("ProviderByEmail = %+v, %v; want %+v", got, err, p)
		}
		if got, err := s.ProviderByID(ctx, "u_1"); err != nil || got != p {
			t.Fatalf("ProviderByID = %+v, %v", got, err)
		}
		if _, err := s.ProviderByID(ctx, "u_9"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing provider: %v, want ErrNotFound", err)
		}
		if n, _ := s.CountProviders(ctx); n != 1 {
			t.Fatalf("CountProviders = %d", n)
		}
	})

	t.Run("sessions and tokens", func(t *testing.T) {
		s := open(t)
		must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
		must(t, s.CreateSession(ctx, "h1", "u_1", t0.Add(time.Hour)))
		if p, err := s.SessionProvider(ctx, "h1", t0); err != nil || p.ID != "u_1" {
			t.Fatalf("SessionProvider = %+v, %v", p, err)
		}
		if _, err := s.SessionProvider(ctx, "h1", t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired session: %v, want ErrNotFound", err)
		}
		must(t, s.CreateSession(ctx, "h2", "u_1", t0.Add(2*time.Hour)))
		must(t, s.DeleteExpiredSessions(ctx, t0.Add(time.Hour)))
		if _, err := s.SessionProvider(ctx, "h2", t0); err != nil {
			t.Fatalf("unexpired session pruned: %v", err)
		}
		if _, err := s.SessionProvider(ctx, "h1", t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired session kept: %v", err)
		}
		must(t, s.DeleteSession(ctx, "h1"))
		if _, err := s.SessionProvider(ctx, "h1", t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted session: %v", err)
		}
		must(t, s.CreateAPIToken(ctx, "t1", "u_1", "ehr", t0))
		if p, err := s.APITokenProvider(ctx, "t1"); err != nil || p.ID != "u_1" {
			t.Fatalf("APITokenProvider = %+v, %v", p, err)
		}
		if _, err := s.APITokenProvider(ctx, "t2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
	})

	t.Run("consultations", func(t *testing.T) {
		s := open(t)
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
	})

	t.Run("transcripts", func(t *testing.T) {
		s := open(t)
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
	})

	t.Run("audit", func(t *testing.T) {
		s := open(t)
		for i, a := range []string{consult.AuditCreated, consult.AuditJoined, consult.AuditLeft} {
			must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0.Add(time.Duration(i) * time.Second), Actor: "x", Action: a, ConsultationID: "c_1"}))
		}
		must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "y", Action: consult.AuditCreated, ConsultationID: "c_2"}))
		trail, err := s.Audit(ctx, "c_1")
		if err != nil || len(trail) != 3 || trail[0].Action != consult.AuditCreated || trail[2].Action != consult.AuditLeft || !trail[1].At.Equal(t0.Add(time.Second)) {
			t.Fatalf("Audit = %+v, %v", trail, err)
		}
	})

	t.Run("settings", func(t *testing.T) {
		s := open(t)
		if _, err := s.Setting(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing setting: %v", err)
		}
		v, err := s.EnsureSetting(ctx, "k", "first")
		must(t, err)
		v2, err := s.EnsureSetting(ctx, "k", "second")
		must(t, err)
		if v != "first" || v2 != "first" {
			t.Fatalf("EnsureSetting = %q, %q; want the first value kept", v, v2)
		}
		must(t, s.PutSetting(ctx, "k", "third"))
		if v, _ := s.Setting(ctx, "k"); v != "third" {
			t.Fatalf("after PutSetting: %q", v)
		}
		must(t, s.DeleteSetting(ctx, "k"))
		if _, err := s.Setting(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted setting: %v", err)
		}
		must(t, s.Ping(ctx))
	})
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

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
