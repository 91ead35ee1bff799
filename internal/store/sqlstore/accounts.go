package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

const providerCols = `id, email, name, password_hash, created_at`

func scanProvider(row scanner) (consult.Provider, error) {
	var p consult.Provider
	var created int64
	if err := row.Scan(&p.ID, &p.Email, &p.Name, &p.PasswordHash, &created); err != nil {
		return consult.Provider{}, notFound(err)
	}
	p.CreatedAt = fromMS(created)
	return p, nil
}

// CreateProvider adds a provider; store.ErrConflict if the email is taken.
func (s *Store) CreateProvider(ctx context.Context, p consult.Provider) error {
	_, err := s.exec(ctx, `INSERT INTO providers (`+providerCols+`) VALUES (?, ?, ?, ?, ?)`,
		p.ID, p.Email, p.Name, p.PasswordHash, ms(p.CreatedAt))
	if s.dialect.IsUnique(err) {
		return fmt.Errorf("provider %s: %w", p.Email, store.ErrConflict)
	}
	return err
}

// ProviderByEmail finds a provider by email, ignoring case.
func (s *Store) ProviderByEmail(ctx context.Context, email string) (consult.Provider, error) {
	return scanProvider(s.row(ctx, `SELECT `+providerCols+` FROM providers WHERE email = ?`, email))
}

// ProviderByID finds a provider by id.
func (s *Store) ProviderByID(ctx context.Context, id string) (consult.Provider, error) {
	return scanProvider(s.row(ctx, `SELECT `+providerCols+` FROM providers WHERE id = ?`, id))
}

// CountProviders counts provider accounts.
func (s *Store) CountProviders(ctx context.Context) (int, error) {
	var n int
	err := s.row(ctx, `SELECT count(*) FROM providers`).Scan(&n)
	return n, err
}

// CreateSession stores a session.
func (s *Store) CreateSession(ctx context.Context, tokenHash, providerID string, expiresAt time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO sessions (token_hash, provider_id, expires_at) VALUES (?, ?, ?)`,
		tokenHash, providerID, ms(expiresAt))
	return err
}

// SessionProvider returns the provider of an unexpired session.
func (s *Store) SessionProvider(ctx context.Context, tokenHash string, now time.Time) (consult.Provider, error) {
	return scanProvider(s.row(ctx, `SELECT p.id, p.email, p.name, p.password_hash, p.created_at
		FROM sessions s JOIN providers p ON p.id = s.provider_id WHERE s.token_hash = ? AND s.expires_at > ?`,
		tokenHash, ms(now)))
}

// DeleteSession removes a session.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash)
	return err
}

// DeleteExpiredSessions removes sessions that expired before now.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, ms(now))
	return err
}

// CreateAPIToken stores an API token.
func (s *Store) CreateAPIToken(ctx context.Context, tokenHash, providerID, name string, now time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO api_tokens (token_hash, provider_id, name, created_at) VALUES (?, ?, ?, ?)`,
		tokenHash, providerID, name, ms(now))
	return err
}

// APITokenProvider returns the provider of an unrevoked API token.
func (s *Store) APITokenProvider(ctx context.Context, tokenHash string) (consult.Provider, error) {
	return scanProvider(s.row(ctx, `SELECT p.id, p.email, p.name, p.password_hash, p.created_at
		FROM api_tokens t JOIN providers p ON p.id = t.provider_id WHERE t.token_hash = ? AND t.revoked_at IS NULL`,
		tokenHash))
}

// AppendAudit adds a line to the audit trail.
func (s *Store) AppendAudit(ctx context.Context, e consult.AuditEvent) error {
	_, err := s.exec(ctx, `INSERT INTO audit (at, actor, action, consultation_id, patient_id, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		ms(e.At), e.Actor, e.Action, e.ConsultationID, e.PatientID, e.Detail)
	return err
}

// Audit returns a consultation's audit trail, oldest first.
func (s *Store) Audit(ctx context.Context, consultationID string) ([]consult.AuditEvent, error) {
	return s.audit(ctx, `consultation_id = ?`, consultationID)
}

// PatientAudit returns the audit lines about a patient, oldest first.
func (s *Store) PatientAudit(ctx context.Context, patientID string) ([]consult.AuditEvent, error) {
	if patientID == "" {
		return nil, nil
	}
	return s.audit(ctx, `patient_id = ?`, patientID)
}

func (s *Store) audit(ctx context.Context, where string, arg string) ([]consult.AuditEvent, error) {
	rows, err := s.query(ctx, `SELECT at, actor, action, consultation_id, patient_id, detail FROM audit
		WHERE `+where+` ORDER BY seq`, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []consult.AuditEvent
	for rows.Next() {
		var e consult.AuditEvent
		var at int64
		if err := rows.Scan(&at, &e.Actor, &e.Action, &e.ConsultationID, &e.PatientID, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// EnsureSetting returns the stored value of key, storing value first if there is none.
func (s *Store) EnsureSetting(ctx context.Context, key, value string) (string, error) {
	if _, err := s.exec(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING`, key, value); err != nil {
		return "", err
	}
	return s.Setting(ctx, key)
}

// Setting returns the value stored under key.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.row(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	return v, notFound(err)
}

// PutSetting stores value under key, replacing any earlier value.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	_, err := s.exec(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// DeleteSetting removes key.
func (s *Store) DeleteSetting(ctx context.Context, key string) error {
	_, err := s.exec(ctx, `DELETE FROM settings WHERE key = ?`, key)
	return err
}

// TakeSetting removes key if it holds value, reporting whether this call removed it. One conditional
// DELETE is atomic in both engines, so of concurrent takers only one sees a row affected.
func (s *Store) TakeSetting(ctx context.Context, key, value string) (bool, error) {
	res, err := s.exec(ctx, `DELETE FROM settings WHERE key = ? AND value = ?`, key, value)
	if err != nil {
		return false, fmt.Errorf("take setting %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("take setting %s: %w", key, err)
	}
	return n == 1, nil
}
