// Package storetest is the conformance suite every store implementation passes: the same behaviour
// whether telemed runs on SQLite or on a shared database.
//
// There is one suite per context interface of package store (Accounts, Consultations, CallQuality,
// Monitoring, AuditLog, Settings), so that an implementation of only some of them can be checked against those,
// and Run, which runs them all against a whole store.Store. The suites are in this file; the checks
// they run are in a file per context.
package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// Run runs every suite of the package against a whole store, and checks Ping. open returns a new,
// empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Accounts", func(t *testing.T) {
		Accounts(t, func(t *testing.T) store.Accounts { return open(t) })
	})
	t.Run("Consultations", func(t *testing.T) {
		Consultations(t, func(t *testing.T) ConsultationsStore { return open(t) })
	})
	t.Run("CallQuality", func(t *testing.T) {
		CallQuality(t, func(t *testing.T) CallQualityStore { return open(t) })
	})
	t.Run("Monitoring", func(t *testing.T) {
		Monitoring(t, func(t *testing.T) MonitoringStore { return open(t) })
	})
	t.Run("AuditLog", func(t *testing.T) {
		AuditLog(t, func(t *testing.T) store.AuditLog { return open(t) })
	})
	t.Run("Settings", func(t *testing.T) {
		Settings(t, func(t *testing.T) store.Settings { return open(t) })
	})
	// Ping belongs to no context interface, only to store.Store.
	t.Run("ping", func(t *testing.T) {
		must(t, open(t).Ping(context.Background()))
	})
}

// Accounts checks a store.Accounts: providers, sign-in sessions and API tokens. open returns a new,
// empty store for each subtest.
func Accounts(t *testing.T, open func(t *testing.T) store.Accounts) {
	t.Run("providers", func(t *testing.T) { testProviders(t, open(t)) })
	t.Run("sessions and tokens", func(t *testing.T) { testSessionsAndTokens(t, open(t)) })
}

// ConsultationsStore is what the Consultations suite opens: the consultations and, for the providers
// they belong to, the accounts.
type ConsultationsStore interface {
	store.Accounts
	store.Consultations
}

// Consultations checks a store.Consultations: consultations and their transcripts. open returns a
// new, empty store for each subtest. It opens a ConsultationsStore, not a bare store.Consultations,
// because every consultation it stores needs its provider stored first, and one check is that a
// consultation of a provider that does not exist is refused.
func Consultations(t *testing.T, open func(t *testing.T) ConsultationsStore) {
	t.Run("consultations", func(t *testing.T) { testConsultations(t, open(t)) })
	t.Run("transcripts", func(t *testing.T) { testTranscripts(t, open(t)) })
	t.Run("invitations", func(t *testing.T) { testInvitations(t, open(t)) })
}

// CallQualityStore is what the CallQuality suite opens: the quality reports and, for the
// consultations they belong to, the accounts and the consultations.
type CallQualityStore interface {
	store.Accounts
	store.Consultations
	store.CallQuality
}

// CallQuality checks a store.CallQuality: connection tests and end-of-call summaries. open returns a
// new, empty store for each subtest.
func CallQuality(t *testing.T, open func(t *testing.T) CallQualityStore) {
	t.Run("reports", func(t *testing.T) { testQualityReports(t, open(t)) })
	t.Run("limits", func(t *testing.T) { testQualityLimits(t, open(t)) })
}

// MonitoringStore is what the Monitoring suite opens: the monitoring records and, for the providers
// and consultations they refer to, the accounts and the consultations.
type MonitoringStore interface {
	store.Accounts
	store.Consultations
	store.Monitoring
}

// Monitoring checks a store.Monitoring: patients, enrollment, devices, batches, observations,
// alerts and thresholds. open returns a new, empty store for each subtest. It opens a
// MonitoringStore, not a bare store.Monitoring, because each patient needs its provider stored
// first, and OpenConsultationsOfPatient is checked against consultations stored beside them.
func Monitoring(t *testing.T, open func(t *testing.T) MonitoringStore) {
	t.Run("patients and enrollment", func(t *testing.T) {
		s := open(t)
		testPatientsAndEnrollment(t, s, enrolledDevice(t, s))
	})
	t.Run("batches and observations", func(t *testing.T) {
		s := open(t)
		testBatchesAndObservations(t, s, enrolledDevice(t, s))
	})
	t.Run("thresholds", func(t *testing.T) {
		s := open(t)
		enrolledDevice(t, s)
		testThresholds(t, s)
	})
}

// AuditLog checks a store.AuditLog: a consultation's trail and a patient's. open returns a new, empty
// store for each subtest. An audit line names its consultation and patient by id and needs neither to
// be stored, so the suite needs no other context.
func AuditLog(t *testing.T, open func(t *testing.T) store.AuditLog) {
	t.Run("audit", func(t *testing.T) { testAudit(t, open(t)) })
	t.Run("patient audit", func(t *testing.T) { testPatientAudit(t, open(t)) })
}

// Settings checks a store.Settings: the server's named values. open returns a new, empty store for
// each subtest.
func Settings(t *testing.T, open func(t *testing.T) store.Settings) {
	t.Run("settings", func(t *testing.T) { testSettings(t, open(t)) })
	t.Run("take once", func(t *testing.T) { testTakeSetting(t, open(t)) })
}

// t0 is the suites' "now": a fixed instant, so that times read back can be compared exactly.
var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// provider returns a provider to store, created at t0.
func provider(id, email string) consult.Provider {
	return consult.Provider{ID: id, Email: email, Name: "Dr " + id, PasswordHash: "$argon2id$x", CreatedAt: t0}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testSettings checks that EnsureSetting keeps the first value stored, and that a setting can be
// replaced and deleted.
func testSettings(t *testing.T, s store.Settings) {
	ctx := context.Background()
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
}

// testTakeSetting checks that a setting is taken only with its value, and that of many takers at once
// exactly one wins: the setup token relies on it to be single-use.
func testTakeSetting(t *testing.T, s store.Settings) {
	ctx := context.Background()
	must(t, s.PutSetting(ctx, "once", "v"))
	if ok, err := s.TakeSetting(ctx, "once", "other"); ok || err != nil {
		t.Fatalf("TakeSetting with another value = %v, %v; want false, nil", ok, err)
	}
	const takers = 20
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := s.TakeSetting(ctx, "once", "v")
			if err != nil {
				t.Errorf("TakeSetting: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of %d concurrent takers won; want exactly 1", n, takers)
	}
	if _, err := s.Setting(ctx, "once"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("taken setting: %v", err)
	}
	if ok, err := s.TakeSetting(ctx, "once", "v"); ok || err != nil {
		t.Fatalf("TakeSetting of a missing key = %v, %v; want false, nil", ok, err)
	}
}

// testAudit checks that a consultation's trail holds its lines, oldest first, and no other's.
func testAudit(t *testing.T, s store.AuditLog) {
	ctx := context.Background()
	for i, a := range []string{consult.AuditCreated, consult.AuditJoined, consult.AuditLeft} {
		must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0.Add(time.Duration(i) * time.Second), Actor: "x", Action: a, ConsultationID: "c_1"}))
	}
	must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "y", Action: consult.AuditCreated, ConsultationID: "c_2"}))
	trail, err := s.Audit(ctx, "c_1")
	if err != nil || len(trail) != 3 || trail[0].Action != consult.AuditCreated || trail[2].Action != consult.AuditLeft || !trail[1].At.Equal(t0.Add(time.Second)) {
		t.Fatalf("Audit = %+v, %v", trail, err)
	}
}

// testPatientAudit checks that a patient's trail holds the lines about them and no other.
func testPatientAudit(t *testing.T, s store.AuditLog) {
	ctx := context.Background()
	must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "u_1", Action: consult.AuditExported, PatientID: "p-1", Detail: "Patient/p-1"}))
	must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "u_1", Action: consult.AuditCreated, ConsultationID: "c_1"}))
	got, err := s.PatientAudit(ctx, "p-1")
	if err != nil || len(got) != 1 || got[0].Detail != "Patient/p-1" || got[0].PatientID != "p-1" {
		t.Fatalf("PatientAudit = %+v, %v", got, err)
	}
}

// madeUnderLimit reads n results of concurrent writes that a limit bounds and returns how many
// succeeded; any error but store.ErrLimit fails the test.
func madeUnderLimit(t *testing.T, errs <-chan error, n int, what string) int {
	t.Helper()
	made := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			made++
		case !errors.Is(err, store.ErrLimit):
			t.Fatalf("%s over the limit: %v, want ErrLimit", what, err)
		}
	}
	return made
}
