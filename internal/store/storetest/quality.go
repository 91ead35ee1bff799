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

// qualityReport is a report to store in consultation c by reporter, made i seconds after t0.
func qualityReport(id, c, reporter string, i int) consult.QualityReport {
	return consult.QualityReport{ID: id, ConsultationID: c, Kind: consult.QualityPrecall, Role: consult.RolePatient,
		Reporter: reporter, At: t0.Add(time.Duration(i) * time.Second), Figures: `{"stun":true,"rtt_ms":12.5}`}
}

// testQualityReports checks that reports read back as stored, oldest first, each consultation its own,
// and that a report needs its consultation.
func testQualityReports(t *testing.T, s CallQualityStore) {
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
	for _, id := range []string{"c_1", "c_2"} {
		must(t, s.CreateConsultation(ctx, consult.Consultation{ID: id, ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	}
	if got, err := s.QualityReports(ctx, "c_1"); err != nil || len(got) != 0 {
		t.Fatalf("QualityReports before any = %+v, %v; want none", got, err)
	}
	call := consult.QualityReport{ID: "q_2", ConsultationID: "c_1", Kind: consult.QualityCall, Role: consult.RoleGuest,
		Name: "Marta (interpreter) 👋", Reporter: "guest i_1", At: t0.Add(2 * time.Second),
		Figures: `{"peers":[{"role":"provider","quality":"good"}]}`}
	must(t, s.AddQualityReport(ctx, call, 10, 10))
	must(t, s.AddQualityReport(ctx, qualityReport("q_1", "c_1", "patient", 1), 10, 10))
	must(t, s.AddQualityReport(ctx, qualityReport("q_3", "c_2", "patient", 0), 10, 10))
	if err := s.AddQualityReport(ctx, call, 10, 10); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same id again: %v, want ErrConflict", err)
	}
	if err := s.AddQualityReport(ctx, qualityReport("q_x", "c_none", "patient", 0), 10, 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("report of no consultation: %v, want ErrNotFound", err)
	}
	got, err := s.QualityReports(ctx, "c_1")
	if err != nil || len(got) != 2 || got[0].ID != "q_1" || got[1].ID != "q_2" {
		t.Fatalf("QualityReports = %+v, %v; want q_1 then q_2", got, err)
	}
	g := got[1]
	if g.ConsultationID != "c_1" || g.Kind != consult.QualityCall || g.Role != consult.RoleGuest || g.Name != call.Name ||
		g.Reporter != call.Reporter || !g.At.Equal(call.At) || g.Figures != call.Figures {
		t.Fatalf("report read back as %+v, want %+v", g, call)
	}
}

// testQualityLimits checks that the limits per consultation and per reporter hold, even for reports
// made at once.
func testQualityLimits(t *testing.T, s CallQualityStore) {
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
	must(t, s.CreateConsultation(ctx, consult.Consultation{ID: "c_1", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	// One reporter: 2 of its own at most.
	must(t, s.AddQualityReport(ctx, qualityReport("q_p1", "c_1", "patient", 0), 5, 2))
	must(t, s.AddQualityReport(ctx, qualityReport("q_p2", "c_1", "patient", 1), 5, 2))
	if err := s.AddQualityReport(ctx, qualityReport("q_p3", "c_1", "patient", 2), 5, 2); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("a reporter's third of 2: %v, want ErrLimit", err)
	}
	// Eight reporters at once for the three places left in the consultation: exactly three get in.
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			errs <- s.AddQualityReport(ctx, qualityReport(fmt.Sprintf("q_r%d", i), "c_1", fmt.Sprintf("guest i_%d", i), 3+i), 5, 2)
		}()
	}
	made := madeUnderLimit(t, errs, 8, "AddQualityReport")
	if made != 3 {
		t.Fatalf("%d reports stored for 3 places", made)
	}
	if got, _ := s.QualityReports(ctx, "c_1"); len(got) != 5 {
		t.Fatalf("%d reports kept, want 5", len(got))
	}
}
