package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

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
