package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// ConsultationView is a consultation as its provider sees it, with its two links. Its JSON form is part
// of the public API.
type ConsultationView struct {
	ID        string         `json:"id"`
	Title     string         `json:"title"`
	PatientID string         `json:"patient_id,omitempty"`
	Status    consult.Status `json:"status"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	StartURL  string         `json:"start_url"`
	JoinURL   string         `json:"join_url"`
}

// NewConsultation holds what a caller may choose about a new consultation.
type NewConsultation struct {
	Title string
	// TTL is how long the links work; DefaultLinkTTL if zero.
	TTL time.Duration
	// PatientID, if set, makes it a consultation of one of the provider's patients, which the
	// patient's devices join.
	PatientID string
}

// CreateConsultation creates a consultation for the provider and returns it with its links.
func (s *Service) CreateConsultation(ctx context.Context, p consult.Provider, actor string, n NewConsultation) (ConsultationView, error) {
	title := strings.TrimSpace(n.Title)
	if utf8.RuneCountInString(title) > MaxTitleLength {
		return ConsultationView{}, errcode.Errorf(errcode.BadField, "title must be at most %d characters", MaxTitleLength)
	}
	ttl := n.TTL
	if ttl == 0 {
		ttl = DefaultLinkTTL
	}
	if ttl < MinLinkTTL || ttl > MaxLinkTTL {
		return ConsultationView{}, errcode.Errorf(errcode.BadField, "expires_in must be between %s and %s", MinLinkTTL, "720h")
	}
	if n.PatientID != "" {
		if _, err := s.ownPatient(ctx, p, n.PatientID); err != nil {
			return ConsultationView{}, errcode.Errorf(errcode.BadField, "patient_id: no patient %s", clip(n.PatientID))
		}
	}
	now := s.now().UTC().Truncate(time.Second)
	c := consult.Consultation{ID: auth.NewID("c_"), ProviderID: p.ID, PatientID: n.PatientID, Title: title, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.CreateConsultation(ctx, c); err != nil {
		return ConsultationView{}, fmt.Errorf("create consultation: %w", err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditCreated, ConsultationID: c.ID,
		Detail: "expires " + c.ExpiresAt.Format(time.RFC3339)})
	return s.view(c), nil
}

func (s *Service) view(c consult.Consultation) ConsultationView {
	return ConsultationView{
		ID: c.ID, Title: c.Title, PatientID: c.PatientID, Status: c.Status(s.now()), CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
		StartURL: s.link(c, consult.RoleProvider), JoinURL: s.link(c, consult.RolePatient),
	}
}

func (s *Service) link(c consult.Consultation, role consult.Role) string {
	token := s.links.Sign(auth.LinkClaims{ConsultationID: c.ID, Role: role, ExpiresAt: c.ExpiresAt})
	return s.baseURL + "/c/" + c.ID + "#t=" + token
}

// ProviderConsultation returns one of the provider's consultations.
func (s *Service) ProviderConsultation(ctx context.Context, p consult.Provider, id string) (ConsultationView, error) {
	c, err := s.ownConsultation(ctx, p, id)
	if err != nil {
		return ConsultationView{}, err
	}
	return s.view(c), nil
}

func (s *Service) ownConsultation(ctx context.Context, p consult.Provider, id string) (consult.Consultation, error) {
	c, err := s.store.Consultation(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.ProviderID != p.ID) {
		return consult.Consultation{}, errcode.Errorf(errcode.NotFound, "no consultation %s", id)
	}
	return c, err
}

// ListConsultations returns the provider's most recent consultations.
func (s *Service) ListConsultations(ctx context.Context, p consult.Provider) ([]ConsultationView, error) {
	cs, err := s.store.ListConsultations(ctx, p.ID, 200)
	if err != nil {
		return nil, fmt.Errorf("list consultations: %w", err)
	}
	out := make([]ConsultationView, 0, len(cs))
	for _, c := range cs {
		out = append(out, s.view(c))
	}
	return out, nil
}

// EndConsultation ends one of the provider's consultations: its links stop working.
func (s *Service) EndConsultation(ctx context.Context, p consult.Provider, actor, id string) (ConsultationView, error) {
	c, err := s.ownConsultation(ctx, p, id)
	if err != nil {
		return ConsultationView{}, err
	}
	if err := s.store.EndConsultation(ctx, id, s.now()); err != nil {
		return ConsultationView{}, fmt.Errorf("end consultation %s: %w", id, err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditEnded, ConsultationID: id})
	c, err = s.store.Consultation(ctx, id)
	return s.view(c), err
}

// Ticket is what a valid link entitles its holder to.
type Ticket struct {
	Consultation consult.Consultation
	Role         consult.Role
	ProviderName string
	// Expired is set when the link has expired. A holder may still resume a place it already had.
	Expired bool
	// Subject is the device a device's link was issued to.
	Subject string
}

// Admit checks a link token for a consultation. It returns the consult.Err* errors for a bad, expired
// or foreign link and for an ended consultation.
func (s *Service) Admit(ctx context.Context, consultationID, token string) (Ticket, error) {
	claims, err := s.links.Verify(consultationID, token, s.now())
	expired := errors.Is(err, consult.ErrLinkExpired)
	if err != nil && !expired {
		return Ticket{}, err
	}
	c, err := s.store.Consultation(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return Ticket{}, consult.ErrWrongConsultation
	}
	if err != nil {
		return Ticket{}, fmt.Errorf("admit to %s: %w", consultationID, err)
	}
	if c.EndedAt != nil {
		return Ticket{}, consult.ErrEnded
	}
	if claims.Role == consult.RoleDevice {
		// A device's link names it: a device revoked since, or moved to another patient, is refused,
		// on a resume too.
		d, err := s.store.Device(ctx, claims.Subject)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (d.RevokedAt != nil || c.PatientID == "" || d.PatientID != c.PatientID)) {
			return Ticket{}, consult.ErrDeviceRevoked
		}
		if err != nil {
			return Ticket{}, fmt.Errorf("admit device to %s: %w", consultationID, err)
		}
	}
	p, err := s.store.ProviderByID(ctx, c.ProviderID)
	if err != nil {
		return Ticket{}, fmt.Errorf("admit to %s: %w", consultationID, err)
	}
	return Ticket{Consultation: c, Role: claims.Role, Subject: claims.Subject, ProviderName: p.Name, Expired: expired}, nil
}

// AuditTrail returns a consultation's audit trail, oldest first.
func (s *Service) AuditTrail(ctx context.Context, consultationID string) ([]consult.AuditEvent, error) {
	return s.store.Audit(ctx, consultationID)
}

// Limits of a saved chat transcript. The text limit is the chat protocol's (docs/datachannels.md).
const (
	MaxTranscriptMessages = 5000
	MaxTranscriptText     = 4000 // Unicode code points, after trimming
	MaxTranscriptName     = 80   // Unicode code points, after trimming
)

// Caller is who asks for a consultation's transcript: a provider (signed in or with an API token), or
// the holder of a consultation link token. Make one with ProviderCaller or LinkCaller.
type Caller struct {
	provider  consult.Provider
	actor     string
	linkToken string
}

// ProviderCaller is a signed-in provider or an API token acting as one; actor is how the audit trail
// names them.
func ProviderCaller(p consult.Provider, actor string) Caller {
	return Caller{provider: p, actor: actor}
}

// LinkCaller is whoever holds a consultation link token. Only the provider's link gives access to a
// transcript.
func LinkCaller(token string) Caller { return Caller{linkToken: token} }

// linkActor is how the audit trail names a caller with the provider's link.
const linkActor = "provider link"

// TranscriptMessage is one chat message of a transcript as the API takes and gives it. Its JSON form
// is part of the public API.
type TranscriptMessage struct {
	From string `json:"from"` // "provider" or "patient"
	Name string `json:"name"` // the sender's display name, 0 to 80 characters
	Text string `json:"text"` // 1 to 4000 characters
	At   string `json:"at"`   // RFC 3339, fractional seconds allowed
}

// TranscriptView is a saved transcript. Its JSON form is part of the public API.
type TranscriptView struct {
	ConsultationID string              `json:"consultation_id"`
	SavedAt        time.Time           `json:"saved_at"`
	SavedBy        string              `json:"saved_by"`
	Messages       []TranscriptMessage `json:"messages"`
}

// SavedTranscript is the answer to a save. Its JSON form is part of the public API.
type SavedTranscript struct {
	ConsultationID string    `json:"consultation_id"`
	SavedAt        time.Time `json:"saved_at"`
	Messages       int       `json:"messages"`
}

// CheckTranscriptAccess reports whether the caller may save and read the consultation's transcript,
// with the error SaveTranscript and Transcript would give otherwise. It lets the HTTP layer refuse a
// caller before reading a large body.
func (s *Service) CheckTranscriptAccess(ctx context.Context, by Caller, consultationID string) error {
	_, err := s.transcriptAccess(ctx, by, consultationID)
	return err
}

// transcriptAccess checks that the caller may see the consultation's transcript and returns the
// actor for the audit trail. A provider must own the consultation; a link token must be the
// provider's, for this consultation, unexpired, and the consultation not ended.
func (s *Service) transcriptAccess(ctx context.Context, by Caller, consultationID string) (string, error) {
	if by.linkToken == "" {
		if by.provider.ID == "" {
			return "", errcode.Errorf(errcode.Unauthenticated, "sign in, or send the provider's link token or an API token")
		}
		if _, err := s.ownConsultation(ctx, by.provider, consultationID); err != nil {
			return "", err
		}
		return by.actor, nil
	}
	claims, err := s.links.Verify(consultationID, by.linkToken, s.now())
	switch {
	case errors.Is(err, consult.ErrWrongConsultation):
		return "", errcode.Errorf(errcode.BadToken, "this link token is for another consultation")
	case errors.Is(err, consult.ErrLinkExpired):
		return "", errcode.Errorf(errcode.BadToken, "this consultation's link has expired; sign in to save the transcript")
	case err != nil:
		return "", errcode.Errorf(errcode.BadToken, "the link token is not valid")
	case claims.Role != consult.RoleProvider:
		return "", errcode.Errorf(errcode.BadToken, "only the provider can save the transcript")
	}
	c, err := s.store.Consultation(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return "", errcode.Errorf(errcode.NotFound, "no consultation %s", consultationID)
	}
	if err != nil {
		return "", fmt.Errorf("transcript of %s: %w", consultationID, err)
	}
	if c.EndedAt != nil {
		return "", errcode.Errorf(errcode.BadToken, "this consultation has ended, so its links no longer work; sign in to save the transcript")
	}
	return linkActor, nil
}

// SaveTranscript checks and stores a consultation's chat transcript, replacing any earlier one, and
// writes the save to the audit trail (the number of messages, never their text).
func (s *Service) SaveTranscript(ctx context.Context, by Caller, consultationID string, msgs []TranscriptMessage) (SavedTranscript, error) {
	actor, err := s.transcriptAccess(ctx, by, consultationID)
	if err != nil {
		return SavedTranscript{}, err
	}
	if msgs == nil {
		return SavedTranscript{}, errcode.Errorf(errcode.BadField, "messages is required: an array of 0 to %d messages", MaxTranscriptMessages)
	}
	if len(msgs) > MaxTranscriptMessages {
		return SavedTranscript{}, errcode.Errorf(errcode.BadField, "a transcript may have at most %d messages, this one has %d", MaxTranscriptMessages, len(msgs))
	}
	t := consult.Transcript{ConsultationID: consultationID, SavedAt: s.now().UTC().Truncate(time.Millisecond), SavedBy: actor,
		Messages: make([]consult.TranscriptMessage, len(msgs))}
	for i, m := range msgs {
		if t.Messages[i], err = transcriptMessage(i, m); err != nil {
			return SavedTranscript{}, err
		}
	}
	if err := s.store.PutTranscript(ctx, t); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return SavedTranscript{}, errcode.Errorf(errcode.NotFound, "no consultation %s", consultationID)
		}
		return SavedTranscript{}, fmt.Errorf("save transcript of %s: %w", consultationID, err)
	}
	s.Audit(ctx, consult.AuditEvent{At: t.SavedAt, Actor: actor, Action: consult.AuditTranscriptSaved, ConsultationID: consultationID,
		Detail: plural(len(msgs), "message")})
	return SavedTranscript{ConsultationID: consultationID, SavedAt: t.SavedAt, Messages: len(msgs)}, nil
}

// transcriptMessage checks message i of a transcript to be saved, naming it and the field in errors.
func transcriptMessage(i int, m TranscriptMessage) (consult.TranscriptMessage, error) {
	bad := func(field, format string, args ...any) error {
		return errcode.Errorf(errcode.BadField, "messages[%d].%s %s", i, field, fmt.Sprintf(format, args...))
	}
	from := consult.Role(m.From)
	if !from.Person() {
		return consult.TranscriptMessage{}, bad("from", "must be \"provider\" or \"patient\", not %s", clip(m.From))
	}
	name := consult.TrimChatText(m.Name)
	if n := utf8.RuneCountInString(name); n > MaxTranscriptName {
		return consult.TranscriptMessage{}, bad("name", "must be at most %d characters, it has %d", MaxTranscriptName, n)
	}
	text := consult.TrimChatText(m.Text)
	if text == "" {
		return consult.TranscriptMessage{}, bad("text", "is empty: a message has 1 to %d characters", MaxTranscriptText)
	}
	if n := utf8.RuneCountInString(text); n > MaxTranscriptText {
		return consult.TranscriptMessage{}, bad("text", "must be at most %d characters, it has %d", MaxTranscriptText, n)
	}
	at, err := time.Parse(time.RFC3339Nano, m.At)
	if err != nil {
		return consult.TranscriptMessage{}, bad("at", "must be an RFC 3339 time such as \"2026-11-24T10:00:00.123Z\", not %s", clip(m.At))
	}
	return consult.TranscriptMessage{From: from, Name: name, Text: text, At: at.UTC()}, nil
}

// clip quotes a value for an error message, shortened if long: errors repeat what was sent, not all of it.
func clip(v string) string {
	const n = 40
	if utf8.RuneCountInString(v) <= n {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%q…", string([]rune(v)[:n]))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Transcript returns a consultation's saved transcript, or not_found when none has been saved.
func (s *Service) Transcript(ctx context.Context, by Caller, consultationID string) (TranscriptView, error) {
	if _, err := s.transcriptAccess(ctx, by, consultationID); err != nil {
		return TranscriptView{}, err
	}
	t, err := s.store.Transcript(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return TranscriptView{}, errcode.Errorf(errcode.NotFound, "no transcript has been saved for this consultation")
	}
	if err != nil {
		return TranscriptView{}, fmt.Errorf("transcript of %s: %w", consultationID, err)
	}
	v := TranscriptView{ConsultationID: t.ConsultationID, SavedAt: t.SavedAt, SavedBy: t.SavedBy,
		Messages: make([]TranscriptMessage, len(t.Messages))}
	for i, m := range t.Messages {
		v.Messages[i] = TranscriptMessage{From: string(m.From), Name: m.Name, Text: m.Text, At: m.At.UTC().Format(time.RFC3339Nano)}
	}
	return v, nil
}
