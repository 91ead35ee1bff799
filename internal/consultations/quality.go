package consultations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// Limits of quality reports (docs/api.md, Call quality).
const (
	// MaxQualityReports is how many reports a consultation keeps, of everyone together.
	MaxQualityReports = 60
	// MaxQualityReportsPerPerson is how many of them one person (one link) may make.
	MaxQualityReportsPerPerson = 12
	// MaxQualityPeers is how many remote participants an end-of-call summary may describe.
	MaxQualityPeers = 8
	// MaxQualityWords is the length of a connection test's verdict in words, in Unicode code points.
	MaxQualityWords = 300
	// QualityGrace is how long after a link expires, or its consultation ends, a report is still
	// taken: a call's summary is made as the call ends, often because the provider ended it.
	QualityGrace = time.Hour
	// TestCredentialTTL is how long the TURN credential of a connection test works: long enough for
	// the test, short because the test's ICE servers are handed out before anyone is admitted.
	TestCredentialTTL = 10 * time.Minute
)

// Highest figures a report may give: far above any real connection, low enough to catch garbage.
const (
	maxMillis  = 60_000     // a round trip or jitter of a minute
	maxKbps    = 10_000_000 // 10 Gbit/s
	maxSeconds = 48 * 3600  // a call of two days
)

// Precall is the result of a connection test ("Test my connection" on the device check page). Its
// JSON form is part of the public API. It holds the address family the STUN server saw, never the
// address.
type Precall struct {
	// STUN is whether the STUN server answered with a public (server-reflexive) address.
	STUN *bool `json:"stun"`
	// PublicAddress is that address's family: "ipv4" or "ipv6"; "" when STUN found none.
	PublicAddress string `json:"public_address"`
	// UDP, TCP and TLS are whether a TURN allocation succeeded over each; TLS is null when the server
	// offers no TURN over TLS.
	UDP *bool `json:"udp"`
	TCP *bool `json:"tcp"`
	TLS *bool `json:"tls"`
	// Relay is the transport the loop through the relay used: "udp", "tcp", "tls", or "" for none.
	Relay string `json:"relay"`
	// RTTMs and ThroughputKbps are what the loop measured; null when it did not connect.
	RTTMs          *float64 `json:"rtt_ms"`
	ThroughputKbps *float64 `json:"throughput_kbps"`
	// Verdict is "good", "udp_blocked", "slow" or "no_relay"; Words is what the page told the person.
	Verdict string `json:"verdict"`
	Words   string `json:"words"`
}

// CallSummary is one person's view of a call's quality at its end. Its JSON form is part of the
// public API.
type CallSummary struct {
	// DurationS is how long the call lasted, in seconds; null if unknown.
	DurationS *float64 `json:"duration_s"`
	// Peers are the other participants, 1 to MaxQualityPeers.
	Peers []PeerQuality `json:"peers"`
}

// PeerQuality is the connection to one other participant, from getStats at the end of the call.
// Figures are null when unknown. Its JSON form is part of the public API.
type PeerQuality struct {
	// Role and Name are the other participant's, as the reporting page was told them by signaling.
	Role string `json:"role"`
	Name string `json:"name"`
	// Path is "direct" or "relay" (the selected candidate pair), "" if unknown.
	Path         string   `json:"path"`
	RTTMs        *float64 `json:"rtt_ms"`
	LossPct      *float64 `json:"loss_pct"`
	JitterMs     *float64 `json:"jitter_ms"`
	OutgoingKbps *float64 `json:"outgoing_kbps"` // the available outgoing bitrate
	// Quality is "good", "fair" or "poor".
	Quality string `json:"quality"`
}

// QualityInput is a report as a client sends it: its kind, and the part of that kind.
type QualityInput struct {
	Kind    string       `json:"kind"`
	Precall *Precall     `json:"precall,omitempty"`
	Call    *CallSummary `json:"call,omitempty"`
}

// Reporter is who made a quality report, as their link or session says. Its JSON form is part of
// the public API.
type Reporter struct {
	Role consult.Role `json:"role"`
	// Name is the invitation's or the provider's name; "" for the patient, whose name the server
	// does not know.
	Name string `json:"name"`
}

// QualityView is a kept quality report. Its JSON form is part of the public API.
type QualityView struct {
	ID      string              `json:"id"`
	Kind    consult.QualityKind `json:"kind"`
	At      time.Time           `json:"at"`
	From    Reporter            `json:"from"`
	Precall *Precall            `json:"precall,omitempty"`
	Call    *CallSummary        `json:"call,omitempty"`
}

// reporter is a person who may report on a consultation's connections.
type reporter struct {
	Reporter
	key   string // one person, for the per-person limit
	actor string // for the audit trail
}

// ConnectionTestUser checks that the caller may run a connection test before the visit (a valid,
// unexpired link of the open consultation, any person's role, or its provider), and returns a fresh
// name for the test's TURN credential.
func (s *Service) ConnectionTestUser(ctx context.Context, by Caller, consultationID string) (string, error) {
	if _, err := s.reporter(ctx, by, consultationID, 0); err != nil {
		return "", err
	}
	return auth.NewID("t_"), nil
}

// ReportQuality checks and keeps a quality report, made by the caller: a person holding one of the
// consultation's links (until QualityGrace after it expires or the consultation ends), or its
// provider. The report is written to the audit trail by kind, never with its figures.
func (s *Service) ReportQuality(ctx context.Context, by Caller, consultationID string, in QualityInput) (QualityView, error) {
	who, err := s.reporter(ctx, by, consultationID, QualityGrace)
	if err != nil {
		return QualityView{}, err
	}
	kind, figures, detail, err := checkQuality(in)
	if err != nil {
		return QualityView{}, err
	}
	r := consult.QualityReport{ID: auth.NewID("q_"), ConsultationID: consultationID, Kind: kind, Role: who.Role, Name: who.Name,
		Reporter: who.key, At: s.now().UTC().Truncate(time.Millisecond), Figures: string(figures)}
	err = s.store.AddQualityReport(ctx, r, MaxQualityReports, MaxQualityReportsPerPerson)
	switch {
	case errors.Is(err, store.ErrLimit):
		return QualityView{}, errcode.Errorf(errcode.BadField, "this consultation keeps at most %d quality reports, %d from one person, and has as many as it may",
			MaxQualityReports, MaxQualityReportsPerPerson)
	case errors.Is(err, store.ErrNotFound):
		return QualityView{}, errcode.Errorf(errcode.NotFound, "no consultation %s", consultationID)
	case err != nil:
		return QualityView{}, fmt.Errorf("quality report of %s: %w", consultationID, err)
	}
	s.audit.Record(ctx, consult.AuditEvent{At: r.At, Actor: who.actor, Action: consult.AuditQualityReported, ConsultationID: consultationID, Detail: detail})
	return qualityView(r)
}

// QualityReports lists a consultation's quality reports, oldest first, for its provider (signed in,
// with an API token or with the provider's link).
func (s *Service) QualityReports(ctx context.Context, by Caller, consultationID string) ([]QualityView, error) {
	if _, err := s.providerAccess(ctx, by, consultationID, "see the call quality reports"); err != nil {
		return nil, err
	}
	rs, err := s.store.QualityReports(ctx, consultationID)
	if err != nil {
		return nil, fmt.Errorf("quality reports of %s: %w", consultationID, err)
	}
	out := make([]QualityView, 0, len(rs))
	for _, r := range rs {
		v, err := qualityView(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func qualityView(r consult.QualityReport) (QualityView, error) {
	v := QualityView{ID: r.ID, Kind: r.Kind, At: r.At, From: Reporter{Role: r.Role, Name: r.Name}}
	var into any = &v.Precall
	if r.Kind == consult.QualityCall {
		into = &v.Call
	}
	if err := json.Unmarshal([]byte(r.Figures), into); err != nil {
		return QualityView{}, fmt.Errorf("quality report %s: figures: %w", r.ID, err)
	}
	return v, nil
}

// reporter checks who may report on a consultation: its provider, or a person with a valid link of
// it, not removed from it. grace is how long after the link's expiry and the consultation's end the
// link still counts.
func (s *Service) reporter(ctx context.Context, by Caller, consultationID string, grace time.Duration) (reporter, error) {
	if by.linkToken == "" {
		if by.provider.ID == "" {
			return reporter{}, errcode.Errorf(errcode.Unauthenticated, "sign in, or send a link token of this consultation")
		}
		if _, err := s.ownConsultation(ctx, by.provider, consultationID); err != nil {
			return reporter{}, err
		}
		return reporter{Reporter: Reporter{Role: consult.RoleProvider, Name: by.provider.Name}, key: string(consult.RoleProvider), actor: by.actor}, nil
	}
	now := s.now()
	claims, err := s.links.Verify(consultationID, by.linkToken, now)
	switch {
	case errors.Is(err, consult.ErrLinkExpired) && now.Before(claims.ExpiresAt.Add(grace)):
	case errors.Is(err, consult.ErrLinkExpired):
		return reporter{}, errcode.Errorf(errcode.BadToken, "this consultation's link has expired")
	case errors.Is(err, consult.ErrWrongConsultation):
		return reporter{}, errcode.Errorf(errcode.BadToken, "this link token is for another consultation")
	case err != nil:
		return reporter{}, errcode.Errorf(errcode.BadToken, "the link token is not valid")
	}
	if !claims.Role.Person() {
		return reporter{}, errcode.Errorf(errcode.BadToken, "a %s's link does not report call quality", claims.Role)
	}
	c, err := s.store.Consultation(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return reporter{}, errcode.Errorf(errcode.NotFound, "no consultation %s", consultationID)
	}
	if err != nil {
		return reporter{}, fmt.Errorf("consultation %s: %w", consultationID, err)
	}
	if c.EndedAt != nil && !now.Before(c.EndedAt.Add(grace)) {
		return reporter{}, errcode.Errorf(errcode.BadToken, "this consultation has ended, so its links no longer work")
	}
	return s.linkReporter(ctx, c, claims)
}

// linkReporter is the reporter a link names: an invitation must be of this consultation and
// unrevoked, and the patient link stops once the patient was removed.
func (s *Service) linkReporter(ctx context.Context, c consult.Consultation, claims auth.LinkClaims) (reporter, error) {
	name, err := s.admitPerson(ctx, c, claims.Role, claims.Subject)
	switch {
	case errors.Is(err, consult.ErrRemoved):
		return reporter{}, errcode.Errorf(errcode.BadToken, "this link no longer works: its holder was removed from the consultation")
	case errors.Is(err, consult.ErrBadToken):
		return reporter{}, errcode.Errorf(errcode.BadToken, "the link token is not valid")
	case err != nil:
		return reporter{}, err
	}
	key := strings.TrimSpace(string(claims.Role) + " " + claims.Subject)
	if claims.Role == consult.RoleProvider {
		p, err := s.store.ProviderByID(ctx, c.ProviderID)
		if err != nil {
			return reporter{}, fmt.Errorf("provider of %s: %w", c.ID, err)
		}
		name = p.Name
	}
	return reporter{Reporter: Reporter{Role: claims.Role, Name: name}, key: key, actor: key + " link"}, nil
}

// checkQuality checks a report as sent and returns its kind, its figures as kept, and the audit
// trail's detail.
func checkQuality(in QualityInput) (consult.QualityKind, []byte, string, error) {
	var part any
	var detail string
	switch consult.QualityKind(in.Kind) {
	case consult.QualityPrecall:
		if in.Call != nil {
			return "", nil, "", errcode.Errorf(errcode.BadField, "call is only for kind \"call\"")
		}
		if in.Precall == nil {
			return "", nil, "", errcode.Errorf(errcode.BadField, "precall is required for kind \"precall\"")
		}
		if err := checkPrecall(in.Precall); err != nil {
			return "", nil, "", err
		}
		part, detail = in.Precall, "precall "+in.Precall.Verdict
	case consult.QualityCall:
		if in.Precall != nil {
			return "", nil, "", errcode.Errorf(errcode.BadField, "precall is only for kind \"precall\"")
		}
		if in.Call == nil {
			return "", nil, "", errcode.Errorf(errcode.BadField, "call is required for kind \"call\"")
		}
		if err := checkCall(in.Call); err != nil {
			return "", nil, "", err
		}
		part, detail = in.Call, "call, "+plural(len(in.Call.Peers), "peer")
	default:
		return "", nil, "", errcode.Errorf(errcode.BadField, "kind must be \"precall\" or \"call\", not %s", errcode.Quote(in.Kind))
	}
	figures, err := json.Marshal(part)
	if err != nil {
		return "", nil, "", fmt.Errorf("encode quality figures: %w", err)
	}
	return consult.QualityKind(in.Kind), figures, detail, nil
}

// checkPrecall checks a connection test's result, naming the field in errors, and trims its words.
func checkPrecall(p *Precall) error {
	for _, f := range []struct {
		name string
		v    *bool
	}{{"stun", p.STUN}, {"udp", p.UDP}, {"tcp", p.TCP}} {
		if f.v == nil {
			return errcode.Errorf(errcode.BadField, "precall.%s is required: true or false", f.name)
		}
	}
	switch {
	case *p.STUN && p.PublicAddress != "ipv4" && p.PublicAddress != "ipv6":
		return errcode.Errorf(errcode.BadField, "precall.public_address must be \"ipv4\" or \"ipv6\" when stun is true (the family only, never the address), not %s", errcode.Quote(p.PublicAddress))
	case !*p.STUN && p.PublicAddress != "":
		return errcode.Errorf(errcode.BadField, "precall.public_address must be \"\" when stun is false")
	}
	worked := map[string]bool{"": true, "udp": *p.UDP, "tcp": *p.TCP, "tls": p.TLS != nil && *p.TLS}
	if ok, known := worked[p.Relay]; !known || !ok {
		return errcode.Errorf(errcode.BadField, "precall.relay must be \"udp\", \"tcp\" or \"tls\", a transport whose allocation worked, or \"\"; not %s", errcode.Quote(p.Relay))
	}
	if err := checkFigure("precall.rtt_ms", p.RTTMs, maxMillis); err != nil {
		return err
	}
	if err := checkFigure("precall.throughput_kbps", p.ThroughputKbps, maxKbps); err != nil {
		return err
	}
	switch p.Verdict {
	case "good", "udp_blocked", "slow", "no_relay":
	default:
		return errcode.Errorf(errcode.BadField, "precall.verdict must be \"good\", \"udp_blocked\", \"slow\" or \"no_relay\", not %s", errcode.Quote(p.Verdict))
	}
	words, err := checkText("precall.words", p.Words, MaxQualityWords)
	p.Words = words
	return err
}

// checkCall checks an end-of-call summary, naming the field in errors.
func checkCall(c *CallSummary) error {
	if err := checkFigure("call.duration_s", c.DurationS, maxSeconds); err != nil {
		return err
	}
	if len(c.Peers) == 0 || len(c.Peers) > MaxQualityPeers {
		return errcode.Errorf(errcode.BadField, "call.peers must list 1 to %d participants, not %d", MaxQualityPeers, len(c.Peers))
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		field := func(name string) string { return fmt.Sprintf("call.peers[%d].%s", i, name) }
		if !consult.Role(p.Role).Person() {
			return errcode.Errorf(errcode.BadField, "%s must be \"provider\", \"patient\", \"guest\" or \"clinician\", not %s", field("role"), errcode.Quote(p.Role))
		}
		name, err := checkText(field("name"), p.Name, MaxInvitationNameLen)
		if err != nil {
			return err
		}
		p.Name = name
		if p.Path != "" && p.Path != "direct" && p.Path != "relay" {
			return errcode.Errorf(errcode.BadField, "%s must be \"direct\", \"relay\" or \"\", not %s", field("path"), errcode.Quote(p.Path))
		}
		for _, f := range []struct {
			name string
			v    *float64
			max  float64
		}{{"rtt_ms", p.RTTMs, maxMillis}, {"loss_pct", p.LossPct, 100}, {"jitter_ms", p.JitterMs, maxMillis}, {"outgoing_kbps", p.OutgoingKbps, maxKbps}} {
			if err := checkFigure(field(f.name), f.v, f.max); err != nil {
				return err
			}
		}
		if p.Quality != "good" && p.Quality != "fair" && p.Quality != "poor" {
			return errcode.Errorf(errcode.BadField, "%s must be \"good\", \"fair\" or \"poor\", not %s", field("quality"), errcode.Quote(p.Quality))
		}
	}
	return nil
}

// checkFigure checks that a figure, if given, is from 0 to max.
func checkFigure(field string, v *float64, max float64) error {
	if v != nil && (*v < 0 || *v > max) {
		num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
		return errcode.Errorf(errcode.BadField, "%s must be from 0 to %s, or null; not %s", field, num(max), num(*v))
	}
	return nil
}

// checkText trims a line of text and checks it has at most max characters and no control characters.
func checkText(field, v string, max int) (string, error) {
	v = strings.TrimSpace(v)
	if n := utf8.RuneCountInString(v); n > max || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", errcode.Errorf(errcode.BadField, "%s must be at most %d characters of text on one line", field, max)
	}
	return v, nil
}
