package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

const invitationCols = `id, consultation_id, role, name, created_at, revoked_at`

func scanInvitation(row scanner) (consult.Invitation, error) {
	var inv consult.Invitation
	var role string
	var created int64
	var revoked sql.NullInt64
	if err := row.Scan(&inv.ID, &inv.ConsultationID, &role, &inv.Name, &created, &revoked); err != nil {
		return consult.Invitation{}, notFound(err)
	}
	inv.Role, inv.CreatedAt, inv.RevokedAt = consult.Role(role), fromMS(created), fromNullMS(revoked)
	return inv, nil
}

// CreateInvitation stores an invitation unless its consultation has limit already. The count and the
// insert are one statement, under the consultation's row lock where the engine locks rows, so that
// two at once cannot both take the last place.
func (s *Store) CreateInvitation(ctx context.Context, inv consult.Invitation, limit int) error {
	return s.inTx(ctx, func(c conn) error {
		if err := s.lockConsultation(ctx, c, inv.ConsultationID); err != nil {
			return fmt.Errorf("invitation to %s: %w", inv.ConsultationID, err)
		}
		res, err := c.exec(ctx, `INSERT INTO invitations (`+invitationCols+`)
			SELECT ?, ?, ?, ?, ?, NULL WHERE (SELECT count(*) FROM invitations WHERE consultation_id = ?) < ?`,
			inv.ID, inv.ConsultationID, string(inv.Role), inv.Name, ms(inv.CreatedAt), inv.ConsultationID, limit)
		if s.dialect.IsUnique(err) {
			return fmt.Errorf("invitation %s: %w", inv.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("invitation to %s: %w", inv.ConsultationID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("invitation to %s: %w", inv.ConsultationID, store.ErrLimit)
		}
		return nil
	})
}

// lockConsultation holds a consultation's row until the transaction of c ends (on SQLite the
// transaction holds the database already); store.ErrNotFound if there is no such consultation.
func (s *Store) lockConsultation(ctx context.Context, c conn, id string) error {
	var found string
	err := c.row(ctx, `SELECT id FROM consultations WHERE id = ?`+s.dialect.LockRow, id).Scan(&found)
	return notFound(err)
}

// Invitation finds an invitation by id.
func (s *Store) Invitation(ctx context.Context, id string) (consult.Invitation, error) {
	return scanInvitation(s.row(ctx, `SELECT `+invitationCols+` FROM invitations WHERE id = ?`, id))
}

// Invitations returns a consultation's invitations, oldest first.
func (s *Store) Invitations(ctx context.Context, consultationID string) ([]consult.Invitation, error) {
	return queryAll(ctx, s.conn, scanInvitation, `SELECT `+invitationCols+` FROM invitations
		WHERE consultation_id = ? ORDER BY created_at, `+s.dialect.InsertOrder, consultationID)
}

// RevokeInvitation marks an invitation revoked, keeping the first time.
func (s *Store) RevokeInvitation(ctx context.Context, id string, at time.Time) error {
	return s.setOnce(ctx, `UPDATE invitations SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, at, id)
}

// RemovePatient records the patient's removal from a consultation, keeping the first time.
func (s *Store) RemovePatient(ctx context.Context, consultationID string, at time.Time) error {
	return s.setOnce(ctx, `UPDATE consultations SET patient_removed_at = coalesce(patient_removed_at, ?) WHERE id = ?`, at, consultationID)
}
