// Package fhir maps telemed's records to FHIR R4 (4.0.1) resources in JSON, the form in which an EHR
// reads a patient's monitoring data: Patient, vital-sign Observations, searchset Bundles, the server's
// CapabilityStatement and OperationOutcome errors. It also parses the search parameters of
// GET /fhir/r4/Observation. It does no I/O: the HTTP layer authenticates, loads, audits, and writes
// what this package builds with Marshal (or encoding/json). docs/monitoring.md ("FHIR R4") is the
// contract, and testdata/fhir.schema.json.gz, HL7's JSON schema of R4, checks every resource in tests.
//
// FHIR forbids empty strings, arrays and objects, so every optional field is omitted when empty.
package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/vitals"
)

// Version is the FHIR version the resources conform to, as CapabilityStatement.fhirVersion says.
const Version = "4.0.1"

// MediaType is the content type of FHIR JSON, for the Content-Type of every /fhir/r4 answer.
const MediaType = "application/fhir+json"

// BasePath is where the FHIR API is mounted, below the server's base URL; resource URLs (Bundle
// entries' fullUrl, paging links) are built from it.
const BasePath = "/fhir/r4"

// Resource is a FHIR resource this package builds. Its JSON carries "resourceType"; ResourceType
// returns the same name, for the HTTP layer's audit records and logs.
type Resource interface {
	ResourceType() string
}

// Meta is a resource's metadata: here only the profiles it claims to conform to.
type Meta struct {
	Profile []string `json:"profile,omitempty"`
}

// Coding is one code of a code system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a concept as codes of one or more systems, and as text for people.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Reference points at another resource ("Patient/p-1"), or only names it (Display).
type Reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

// HumanName is a person's name. telemed keeps a name as one string, so only Text is set.
type HumanName struct {
	Text string `json:"text,omitempty"`
}

// Patient is the FHIR form of consult.Patient.
type Patient struct {
	ID        string      `json:"id,omitempty"`
	Name      []HumanName `json:"name,omitempty"`
	BirthDate string      `json:"birthDate,omitempty"`
}

// ResourceType returns "Patient".
func (Patient) ResourceType() string { return "Patient" }

// MarshalJSON writes the patient with its resourceType.
func (p Patient) MarshalJSON() ([]byte, error) {
	type plain Patient
	return marshalTyped(p.ResourceType(), plain(p))
}

// NewPatient maps a patient: id, name as text, and birth date when it is known.
func NewPatient(p consult.Patient) Patient {
	out := Patient{ID: p.ID, BirthDate: p.BirthDate}
	if name := strings.TrimSpace(p.Name); name != "" {
		out.Name = []HumanName{{Text: name}}
	}
	return out
}

// Bundle is a searchset: one page of the results of a search.
type Bundle struct {
	Type      string        `json:"type"`
	Timestamp string        `json:"timestamp,omitempty"`
	Total     *int          `json:"total,omitempty"`
	Link      []BundleLink  `json:"link,omitempty"`
	Entry     []BundleEntry `json:"entry,omitempty"`
}

// ResourceType returns "Bundle".
func (Bundle) ResourceType() string { return "Bundle" }

// MarshalJSON writes the bundle with its resourceType.
func (b Bundle) MarshalJSON() ([]byte, error) {
	type plain Bundle
	return marshalTyped(b.ResourceType(), plain(b))
}

// BundleLink is a link of a bundle: "self" (this page) or "next" (the following page).
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one resource of a bundle, with its absolute URL and why it is there.
type BundleEntry struct {
	FullURL  string        `json:"fullUrl,omitempty"`
	Resource Resource      `json:"resource,omitempty"`
	Search   *BundleSearch `json:"search,omitempty"`
}

// BundleSearch says why an entry is in a searchset: "match", it matched the search.
type BundleSearch struct {
	Mode string `json:"mode,omitempty"`
}

// NewSearchSet builds the page of an Observation search: q is the parsed search (its Offset and
// Count place the page), total the number of observations matching it across all pages, and page the
// observations of this page, in order. baseURL is the server's external URL ("https://tm.example"),
// from which the entries' fullUrl and the self and next links are built; there is a next link when
// observations are left after this page. now is the bundle's timestamp.
func NewSearchSet(baseURL string, q ObservationSearch, total int, page []Observation, now time.Time) Bundle {
	base := strings.TrimRight(baseURL, "/") + BasePath
	b := Bundle{Type: "searchset", Timestamp: instant(now), Total: &total}
	b.Link = []BundleLink{{Relation: "self", URL: base + "/Observation?" + q.Query()}}
	if q.Count > 0 && q.Offset+len(page) < total {
		next := q
		next.Offset = q.Offset + len(page)
		b.Link = append(b.Link, BundleLink{Relation: "next", URL: base + "/Observation?" + next.Query()})
	}
	for _, o := range page {
		b.Entry = append(b.Entry, BundleEntry{
			FullURL:  base + "/Observation/" + o.ID,
			Resource: o,
			Search:   &BundleSearch{Mode: "match"},
		})
	}
	return b
}

// CapabilityStatement describes what this server's FHIR API does, for GET /fhir/r4/metadata.
type CapabilityStatement struct {
	Name           string           `json:"name,omitempty"`
	Title          string           `json:"title,omitempty"`
	Status         string           `json:"status"`
	Date           string           `json:"date"`
	Kind           string           `json:"kind"`
	Software       *Software        `json:"software,omitempty"`
	Implementation *Implementation  `json:"implementation,omitempty"`
	FHIRVersion    string           `json:"fhirVersion"`
	Format         []string         `json:"format"`
	Rest           []CapabilityRest `json:"rest,omitempty"`
}

// ResourceType returns "CapabilityStatement".
func (CapabilityStatement) ResourceType() string { return "CapabilityStatement" }

// MarshalJSON writes the capability statement with its resourceType.
func (c CapabilityStatement) MarshalJSON() ([]byte, error) {
	type plain CapabilityStatement
	return marshalTyped(c.ResourceType(), plain(c))
}

// Software names the program behind the API.
type Software struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Implementation is the running instance a CapabilityStatement of kind "instance" describes.
type Implementation struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

// CapabilityRest is what the server offers over REST.
type CapabilityRest struct {
	Mode     string               `json:"mode"`
	Security *CapabilitySecurity  `json:"security,omitempty"`
	Resource []CapabilityResource `json:"resource,omitempty"`
}

// CapabilitySecurity tells a client how to authenticate.
type CapabilitySecurity struct {
	Description string `json:"description,omitempty"`
}

// CapabilityResource is one resource type the server serves, and how.
type CapabilityResource struct {
	Type             string                  `json:"type"`
	SupportedProfile []string                `json:"supportedProfile,omitempty"`
	Documentation    string                  `json:"documentation,omitempty"`
	Interaction      []CapabilityInteraction `json:"interaction,omitempty"`
	SearchParam      []CapabilitySearchParam `json:"searchParam,omitempty"`
}

// CapabilityInteraction is one interaction on a resource type: "read" or "search-type".
type CapabilityInteraction struct {
	Code string `json:"code"`
}

// CapabilitySearchParam is a search parameter the server supports on a resource type.
type CapabilitySearchParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// NewCapabilityStatement describes this server at baseURL (its external URL, without BasePath),
// running softwareVersion ("" when unknown), as of now: Patient read, Observation read and search,
// JSON only, behind a provider's credentials.
func NewCapabilityStatement(baseURL, softwareVersion string, now time.Time) CapabilityStatement {
	var profiles []string
	for _, s := range vitals.Signals() {
		if s.Profile != "" {
			profiles = append(profiles, s.Profile)
		}
	}
	read := CapabilityInteraction{Code: "read"}
	return CapabilityStatement{
		Name:        "telemed",
		Title:       "telemed FHIR R4 API",
		Status:      "active",
		Date:        dateTime(now),
		Kind:        "instance",
		Software:    &Software{Name: "telemed", Version: softwareVersion},
		FHIRVersion: Version,
		Format:      []string{"json", MediaType},
		Implementation: &Implementation{
			Description: "telemed remote patient monitoring: patients and their vital signs, read-only",
			URL:         strings.TrimRight(baseURL, "/") + BasePath,
		},
		Rest: []CapabilityRest{{
			Mode: "server",
			Security: &CapabilitySecurity{Description: "Every request but GET /metadata needs a provider's credentials: " +
				"a provider API token as \"Authorization: Bearer tm_...\", or a signed-in provider's session. " +
				"A provider sees only their own patients. Every read and search is written to the patient's audit trail."},
			Resource: []CapabilityResource{
				{Type: "Patient", Interaction: []CapabilityInteraction{read}},
				{
					Type:             "Observation",
					SupportedProfile: append([]string{vitalSignsProfile}, profiles...),
					Documentation: "Vital signs (heart rate, oxygen saturation, blood pressure, body temperature, " +
						"respiratory rate) and single-lead ECG waveforms (MDC 131329, as SampledData) sent by a patient's devices.",
					Interaction: []CapabilityInteraction{read, {Code: "search-type"}},
					SearchParam: []CapabilitySearchParam{
						{Name: "patient", Type: "reference", Definition: "http://hl7.org/fhir/SearchParameter/clinical-patient",
							Documentation: "Required: the patient, as id or Patient/id."},
						{Name: "code", Type: "token", Definition: "http://hl7.org/fhir/SearchParameter/clinical-code",
							Documentation: "LOINC or MDC code, with or without system; a comma-separated list matches any."},
						{Name: "date", Type: "date", Definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
							Documentation: "When it was measured; prefixes eq (default), ge, gt, le, lt; may be given twice for a range."},
						{Name: "_count", Type: "number",
							Documentation: fmt.Sprintf("Page size, default %d, at most %d.", DefaultCount, MaxCount)},
						{Name: "_offset", Type: "number",
							Documentation: "How many matches to skip; the next link of a page sets it."},
					},
				},
			},
		}},
	}
}

// Issue types of an OperationOutcome (FHIR's IssueType value set) that the HTTP layer answers with.
const (
	IssueInvalid      = "invalid"       // 400: a bad request, such as a bad search parameter
	IssueNotSupported = "not-supported" // 400: a search parameter or format the server does not support
	IssueSecurity     = "security"      // 401: no or bad credentials
	IssueForbidden    = "forbidden"     // 403: not allowed to see it
	IssueNotFound     = "not-found"     // 404: no such resource (or not the caller's)
	IssueTooCostly    = "too-costly"    // 413: too much asked at once
	IssueThrottled    = "throttled"     // 429: asked too often
	IssueException    = "exception"     // 500: the server failed
)

// OperationOutcome is the body of every FHIR error answer.
type OperationOutcome struct {
	Issue []OutcomeIssue `json:"issue"`
}

// ResourceType returns "OperationOutcome".
func (OperationOutcome) ResourceType() string { return "OperationOutcome" }

// MarshalJSON writes the outcome with its resourceType.
func (o OperationOutcome) MarshalJSON() ([]byte, error) {
	type plain OperationOutcome
	return marshalTyped(o.ResourceType(), plain(o))
}

// OutcomeIssue is one problem of an OperationOutcome.
type OutcomeIssue struct {
	Severity    string `json:"severity"`
	Code        string `json:"code"`
	Diagnostics string `json:"diagnostics,omitempty"`
}

// NewOperationOutcome returns an error outcome of one issue: code is one of the Issue constants,
// diagnostics says what went wrong for the person reading it.
func NewOperationOutcome(code, diagnostics string) OperationOutcome {
	if code == "" {
		code = IssueException
	}
	return OperationOutcome{Issue: []OutcomeIssue{{Severity: "error", Code: code, Diagnostics: strings.TrimSpace(diagnostics)}}}
}

// marshalTyped writes v, a struct without methods, as a JSON object whose first member is
// "resourceType": every resource needs it, and no caller can forget it this way.
// It leaves <, > and & as they are, for Marshal; json.Marshal escapes them all the same.
func marshalTyped(resourceType string, v any) ([]byte, error) {
	b, err := marshalPlain(v)
	if err != nil {
		return nil, fmt.Errorf("fhir: marshal %s: %w", resourceType, err)
	}
	head := `{"resourceType":"` + resourceType + `"`
	if len(b) > 2 {
		head += ","
	}
	return append([]byte(head), b[1:]...), nil
}

// Marshal writes a resource as the body of an answer: compact JSON, with the & of URLs as they are
// (json.Marshal would write \u0026, which is valid but unreadable).
func Marshal(r Resource) ([]byte, error) {
	return marshalPlain(r)
}

// MarshalIndent is Marshal, indented by two spaces, for people and documentation.
func MarshalIndent(r Resource) ([]byte, error) {
	b, err := marshalPlain(r)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("fhir: indent: %w", err)
	}
	return out.Bytes(), nil
}

func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// instant formats t as a FHIR instant (and dateTime): UTC, with milliseconds unless they are zero.
func instant(t time.Time) string {
	t = t.UTC().Truncate(time.Millisecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05Z")
	}
	return t.Format("2006-01-02T15:04:05.000Z")
}

// dateTime formats t as a FHIR dateTime; a measured time is as precise as an instant.
func dateTime(t time.Time) string { return instant(t) }
