package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

const consultationCols = `id, provider_id, title, created_at, expires_at, ended_at, patient_id, patient_removed_at`

func scanConsultation(row scanner) (consult.Consultation, error) {
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
	_, err := s.exec(ctx, `INSERT INTO consultations (`+consultationCols+`) VALUES (?, ?, ?, ?, ?, NULL, ?, NULL)`,
		c.ID, c.ProviderID, c.Title, ms(c.CreatedAt), ms(c.ExpiresAt), nullString(c.PatientID))
	if s.dialect.IsUnique(err) {
		return fmt.Errorf("consultation %s: %w", c.ID, store.ErrConflict)
	}
	return err
}

// Consultation finds a consultation by id.
func (s *Store) Consultation(ctx context.Context, id string) (consult.Consultation, error) {
	return scanConsultation(s.row(ctx, `SELECT `+consultationCols+` FROM consultations WHERE id = ?`, id))
}

// ListConsultations returns a provider's consultations, newest first.
func (s *Store) ListConsultations(ctx context.Context, providerID string, limit int) ([]consult.Consultation, error) {
	return queryAll(ctx, s.conn, scanConsultation, `SELECT `+consultationCols+` FROM consultations
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
	_, err = s.exec(ctx, `INSERT INTO transcripts (consultation_id, saved_at, saved_by, messages) VALUES (?, ?, ?, ?)
		ON CONFLICT(consultation_id) DO UPDATE SET saved_at = excluded.saved_at, saved_by = excluded.saved_by, messages = excluded.messages`,
		t.ConsultationID, ms(t.SavedAt), t.SavedBy, string(body))
	if s.dialect.IsForeignKey(err) {
		return fmt.Errorf("transcript of %s: consultation %w", t.ConsultationID, store.ErrNotFound)
	}
	return err
}

// Transcript returns a consultation's saved transcript; store.ErrNotFound when there is none.
func (s *Store) Transcript(ctx context.Context, consultationID string) (consult.Transcript, error) {
	t := consult.Transcript{ConsultationID: consultationID}
	var saved int64
	var body string
	err := s.row(ctx, `SELECT saved_at, saved_by, messages FROM transcripts WHERE consultation_id = ?`,
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
