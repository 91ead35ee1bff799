package consultations

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

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
	From string `json:"from"` // a person's role: "provider", "patient", "guest" or "clinician"
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
// actor for the audit trail.
func (s *Service) transcriptAccess(ctx context.Context, by Caller, consultationID string) (string, error) {
	return s.providerAccess(ctx, by, consultationID, "save the transcript")
}

// providerAccess checks that the caller acts for the consultation's provider, and returns the actor
// for the audit trail; doing says what for, in the errors. A provider must own the consultation; a
// link token must be the provider's, for this consultation, unexpired, and the consultation not ended.
func (s *Service) providerAccess(ctx context.Context, by Caller, consultationID, doing string) (string, error) {
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
		return "", errcode.Errorf(errcode.BadToken, "this consultation's link has expired; sign in to %s", doing)
	case err != nil:
		return "", errcode.Errorf(errcode.BadToken, "the link token is not valid")
	case claims.Role != consult.RoleProvider:
		return "", errcode.Errorf(errcode.BadToken, "only the provider can %s", doing)
	}
	c, err := s.store.Consultation(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return "", errcode.Errorf(errcode.NotFound, "no consultation %s", consultationID)
	}
	if err != nil {
		return "", fmt.Errorf("transcript of %s: %w", consultationID, err)
	}
	if c.EndedAt != nil {
		return "", errcode.Errorf(errcode.BadToken, "this consultation has ended, so its links no longer work; sign in to %s", doing)
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
	s.audit.Record(ctx, consult.AuditEvent{At: t.SavedAt, Actor: actor, Action: consult.AuditTranscriptSaved, ConsultationID: consultationID,
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
		return consult.TranscriptMessage{}, bad("from", "must be \"provider\", \"patient\", \"guest\" or \"clinician\", not %s", errcode.Quote(m.From))
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
		return consult.TranscriptMessage{}, bad("at", "must be an RFC 3339 time such as \"2026-11-24T10:00:00.123Z\", not %s", errcode.Quote(m.At))
	}
	return consult.TranscriptMessage{From: from, Name: name, Text: text, At: at.UTC()}, nil
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
