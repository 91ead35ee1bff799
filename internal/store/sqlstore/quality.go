package sqlstore

import (
	"context"
	"fmt"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

const qualityCols = `id, consultation_id, kind, role, name, reporter, created_at, figures`

func scanQualityReport(row scanner) (consult.QualityReport, error) {
	var r consult.QualityReport
	var kind, role string
	var created int64
	if err := row.Scan(&r.ID, &r.ConsultationID, &kind, &role, &r.Name, &r.Reporter, &created, &r.Figures); err != nil {
		return consult.QualityReport{}, notFound(err)
	}
	r.Kind, r.Role, r.At = consult.QualityKind(kind), consult.Role(role), fromMS(created)
	return r, nil
}

// AddQualityReport stores a quality report unless its consultation, or its reporter in it, has as
// many as the limits allow. The counts and the insert are one statement, under the consultation's
// row lock where the engine locks rows, so that two at once cannot both take the last place.
func (s *Store) AddQualityReport(ctx context.Context, r consult.QualityReport, perConsultation, perReporter int) error {
	return s.inTx(ctx, func(c conn) error {
		if err := s.lockConsultation(ctx, c, r.ConsultationID); err != nil {
			return fmt.Errorf("quality report of %s: %w", r.ConsultationID, err)
		}
		res, err := c.exec(ctx, `INSERT INTO quality_reports (`+qualityCols+`)
			SELECT ?, ?, ?, ?, ?, ?, ?, ?
			WHERE (SELECT count(*) FROM quality_reports WHERE consultation_id = ?) < ?
			  AND (SELECT count(*) FROM quality_reports WHERE consultation_id = ? AND reporter = ?) < ?`,
			r.ID, r.ConsultationID, string(r.Kind), string(r.Role), r.Name, r.Reporter, ms(r.At), r.Figures,
			r.ConsultationID, perConsultation, r.ConsultationID, r.Reporter, perReporter)
		if s.dialect.IsUnique(err) {
			return fmt.Errorf("quality report %s: %w", r.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("quality report of %s: %w", r.ConsultationID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("quality report of %s: %w", r.ConsultationID, store.ErrLimit)
		}
		return nil
	})
}

// QualityReports returns a consultation's quality reports, oldest first.
func (s *Store) QualityReports(ctx context.Context, consultationID string) ([]consult.QualityReport, error) {
	return queryAll(ctx, s.conn, scanQualityReport, `SELECT `+qualityCols+` FROM quality_reports
		WHERE consultation_id = ? ORDER BY created_at, `+s.dialect.InsertOrder, consultationID)
}
