// Package sqlite is the embedded Store: one SQLite file in the data folder, in WAL mode with foreign
// keys on, migrated on open from the SQL files embedded in the binary.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store on SQLite.
type Store struct {
	db *sql.DB
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies pending migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	// Built as a URL so that a '#', '?' or '%' in the folder's name stays part of the path.
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		version := strings.TrimSuffix(filepath.Base(name), ".sql")
		if err := s.applyMigration(ctx, name, version); err != nil {
			return fmt.Errorf("migration %s: %w", version, err)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, name, version string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	body, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		version, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// fromNullMS is fromMS of a column that may be NULL (nil then).
func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// queryAll runs a query and scans each of its rows with scan.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(row interface{ Scan(...any) error }) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func nullString(v string) sql.NullString { return sql.NullString{String: v, Valid: v != ""} }

func isUnique(err error) bool {
	// SQLite reports primary key and UNIQUE violations alike.
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func isForeignKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

const providerCols = `id, email, name, password_hash, created_at`

func scanProvider(row interface{ Scan(...any) error }) (consult.Provider, error) {
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
	_, err := s.db.ExecContext(ctx, `INSERT INTO providers (`+providerCols+`) VALUES (?, ?, ?, ?, ?)`,
		p.ID, p.Email, p.Name, p.PasswordHash, ms(p.CreatedAt))
	if isUnique(err) {
		return fmt.Errorf("provider %s: %w", p.Email, store.ErrConflict)
	}
	return err
}

// ProviderByEmail finds a provider by email, ignoring case.
func (s *Store) ProviderByEmail(ctx context.Context, email string) (consult.Provider, error) {
	return scanProvider(s.db.QueryRowContext(ctx, `SELECT `+providerCols+` FROM providers WHERE email = ?`, email))
}

// ProviderByID finds a provider by id.
func (s *Store) ProviderByID(ctx context.Context, id string) (consult.Provider, error) {
	return scanProvider(s.db.QueryRowContext(ctx, `SELECT `+providerCols+` FROM providers WHERE id = ?`, id))
}

// CountProviders counts provider accounts.
func (s *Store) CountProviders(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM providers`).Scan(&n)
	return n, err
}

// CreateSession stores a session.
func (s *Store) CreateSession(ctx context.Context, tokenHash, providerID string, expiresAt time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (token_hash, provider_id, expires_at) VALUES (?, ?, ?)`,
		tokenHash, providerID, ms(expiresAt))
	return err
}

// SessionProvider returns the provider of an unexpired session.
func (s *Store) SessionProvider(ctx context.Context, tokenHash string, now time.Time) (consult.Provider, error) {
	return scanProvider(s.db.QueryRowContext(ctx, `SELECT p.id, p.email, p.name, p.password_hash, p.created_at
		FROM sessions s JOIN providers p ON p.id = s.provider_id WHERE s.token_hash = ? AND s.expires_at > ?`,
		tokenHash, ms(now)))
}

// DeleteSession removes a session.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash)
	return err
}

// DeleteExpiredSessions removes sessions that expired before now.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, ms(now))
	return err
}

// CreateAPIToken stores an API token.
func (s *Store) CreateAPIToken(ctx context.Context, tokenHash, providerID, name string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (token_hash, provider_id, name, created_at) VALUES (?, ?, ?, ?)`,
		tokenHash, providerID, name, ms(now))
	return err
}

// APITokenProvider returns the provider of an unrevoked API token.
func (s *Store) APITokenProvider(ctx context.Context, tokenHash string) (consult.Provider, error) {
	return scanProvider(s.db.QueryRowContext(ctx, `SELECT p.id, p.email, p.name, p.password_hash, p.created_at
		FROM api_tokens t JOIN providers p ON p.id = t.provider_id WHERE t.token_hash = ? AND t.revoked_at IS NULL`,
		tokenHash))
}

const consultationCols = `id, provider_id, title, created_at, expires_at, ended_at, patient_id, patient_removed_at`

func scanConsultation(row interface{ Scan(...any) error }) (consult.Consultation, error) {
	var c consult.Consultation
	var created, expires int64
	var ended, removed sql.NullInt64
	var patient sql.NullString
	if err := row.Scan(&c.ID, &c.ProviderID, &c.Title, &created, &expires, &ended, &patient, &removed); err != nil {
		return consult.Consultation{}, notFound(err)
	}
	c.PatientID = patient.String
	c.CreatedAt, c.ExpiresAt = fromMS(created), fromMS(expires)
	c.EndedAt, c.PatientRemovedAt = fromNullMS(ended), fromNullMS(removed)
	return c, nil
}

// CreateConsultation stores a new consultation.
func (s *Store) CreateConsultation(ctx context.Context, c consult.Consultation) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO consultations (`+consultationCols+`) VALUES (?, ?, ?, ?, ?, NULL, ?, NULL)`,
		c.ID, c.ProviderID, c.Title, ms(c.CreatedAt), ms(c.ExpiresAt), nullString(c.PatientID))
	if isUnique(err) {
		return fmt.Errorf("consultation %s: %w", c.ID, store.ErrConflict)
	}
	return err
}

// Consultation finds a consultation by id.
func (s *Store) Consultation(ctx context.Context, id string) (consult.Consultation, error) {
	return scanConsultation(s.db.QueryRowContext(ctx, `SELECT `+consultationCols+` FROM consultations WHERE id = ?`, id))
}

// ListConsultations returns a provider's consultations, newest first.
func (s *Store) ListConsultations(ctx context.Context, providerID string, limit int) ([]consult.Consultation, error) {
	return queryAll(ctx, s.db, scanConsultation, `SELECT `+consultationCols+` FROM consultations
		WHERE provider_id = ? ORDER BY created_at DESC, id LIMIT ?`, providerID, limit)
}

// EndConsultation marks a consultation ended; ending it twice keeps the first time.
func (s *Store) EndConsultation(ctx context.Context, id string, at time.Time) error {
	return s.setOnce(ctx, `UPDATE consultations SET ended_at = coalesce(ended_at, ?) WHERE id = ?`, at, id)
}

// transcriptMessage is how a transcript's message is kept in the messages column's JSON array.
type transcriptMessage struct {
	From string `json:"from"`
	Name string `json:"name"`
	Text string `json:"text"`
	At   string `json:"at"` // RFC 3339 in UTC, to the nanosecond
}

// PutTranscript stores a consultation's transcript, replacing any earlier one; store.ErrNotFound if
// the consultation does not exist.
func (s *Store) PutTranscript(ctx context.Context, t consult.Transcript) error {
	msgs := make([]transcriptMessage, len(t.Messages))
	for i, m := range t.Messages {
		msgs[i] = transcriptMessage{From: string(m.From), Name: m.Name, Text: m.Text, At: m.At.UTC().Format(time.RFC3339Nano)}
	}
	body, err := json.Marshal(msgs)
	if err != nil {
		return fmt.Errorf("transcript of %s: %w", t.ConsultationID, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO transcripts (consultation_id, saved_at, saved_by, messages) VALUES (?, ?, ?, ?)
		ON CONFLICT(consultation_id) DO UPDATE SET saved_at = excluded.saved_at, saved_by = excluded.saved_by, messages = excluded.messages`,
		t.ConsultationID, ms(t.SavedAt), t.SavedBy, string(body))
	if isForeignKey(err) {
		return fmt.Errorf("transcript of %s: consultation %w", t.ConsultationID, store.ErrNotFound)
	}
	return err
}

// Transcript returns a consultation's saved transcript; store.ErrNotFound when there is none.
func (s *Store) Transcript(ctx context.Context, consultationID string) (consult.Transcript, error) {
	t := consult.Transcript{ConsultationID: consultationID}
	var saved int64
	var body string
	err := s.db.QueryRowContext(ctx, `SELECT saved_at, saved_by, messages FROM transcripts WHERE consultation_id = ?`,
		consultationID).Scan(&saved, &t.SavedBy, &body)
	if err != nil {
		return consult.Transcript{}, notFound(err)
	}
	t.SavedAt = fromMS(saved)
	var msgs []transcriptMessage
	if err := json.Unmarshal([]byte(body), &msgs); err != nil {
		return consult.Transcript{}, fmt.Errorf("transcript of %s: %w", consultationID, err)
	}
	t.Messages = make([]consult.TranscriptMessage, len(msgs))
	for i, m := range msgs {
		at, err := time.Parse(time.RFC3339Nano, m.At)
		if err != nil {
			return consult.Transcript{}, fmt.Errorf("transcript of %s, message %d: %w", consultationID, i, err)
		}
		t.Messages[i] = consult.TranscriptMessage{From: consult.Role(m.From), Name: m.Name, Text: m.Text, At: at}
	}
	return t, nil
}

// AppendAudit adds a line to the audit trail.
func (s *Store) AppendAudit(ctx context.Context, e consult.AuditEvent) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit (at, actor, action, consultation_id, patient_id, detail) VALUES (?, ?, ?, ?, ?, ?)`,
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
	rows, err := s.db.QueryContext(ctx, `SELECT at, actor, action, consultation_id, patient_id, detail FROM audit
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
	if _, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING`, key, value); err != nil {
		return "", err
	}
	return s.Setting(ctx, key)
}

// Setting returns the value stored under key.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	return v, notFound(err)
}

// PutSetting stores value under key, replacing any earlier value.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// DeleteSetting removes key.
func (s *Store) DeleteSetting(ctx context.Context, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, key)
	return err
}
