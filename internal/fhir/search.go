package fhir

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/vitals"
)

// Page sizes of an Observation search (_count).
const (
	DefaultCount = 100
	MaxCount     = 1000
)

// ObservationSearch is a parsed GET /fhir/r4/Observation?... search: one patient's observations,
// optionally of some codes and within a time range, one page of them, oldest first.
type ObservationSearch struct {
	// Patient is the patient's id (without "Patient/").
	Patient string
	// Codes are the signal codes asked for, canonical (59408-5 is asked as 2708-6), without
	// repeats; an observation of any of them matches. None means every code.
	Codes []string
	// From and To bound when the observation was measured: From <= time < To. A zero bound is open.
	From, To time.Time
	// Count is how many observations a page holds at most (0: none, only the total); Offset how many
	// matches come before this page.
	Count, Offset int
}

// ParamError is a search parameter that cannot be honored. The HTTP layer answers it with 400 and
// its OperationOutcome; the message names the parameter and the value sent.
type ParamError struct {
	Param string // the parameter, as sent: "date", "_count", "subject"
	Value string // its value, as sent ("" for a missing parameter)
	// Issue is the OperationOutcome issue code: IssueInvalid, or IssueNotSupported for a parameter
	// (or date prefix) the server does not support.
	Issue   string
	Message string // what is wrong with it and what would do
}

// Error names the parameter and its value, then says what is wrong.
func (e *ParamError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("search parameter %s: %s", e.Param, e.Message)
	}
	return fmt.Sprintf("search parameter %s=%s: %s", e.Param, clip(e.Value), e.Message)
}

// OperationOutcome is the 400 answer to the error.
func (e *ParamError) OperationOutcome() OperationOutcome {
	return NewOperationOutcome(e.Issue, e.Error())
}

func badParam(param, value, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Value: value, Issue: IssueInvalid, Message: fmt.Sprintf(format, args...)}
}

var supportedParams = []string{"patient", "code", "date", "_count", "_offset", "_format"}

// ParseObservationSearch reads the query of an Observation search. patient is required; code,
// date, _count and _offset are optional; _format is accepted and left to the HTTP layer. Every
// other parameter, modifiers (code:text) included, is refused rather than ignored, since ignoring a
// filter would return more than was asked. Its errors are *ParamError.
func ParseObservationSearch(q url.Values) (ObservationSearch, error) {
	s := ObservationSearch{Count: DefaultCount}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(supportedParams, name) {
			return s, &ParamError{Param: name, Value: strings.Join(q[name], ","), Issue: IssueNotSupported,
				Message: "is not supported by this server (Observation search supports: " + strings.Join(supportedParams, ", ") + ")"}
		}
	}

	patient, err := single(q, "patient")
	if err != nil {
		return s, err
	}
	if patient == "" {
		return s, badParam("patient", "", "is required: search one patient's observations with patient=<id> or patient=Patient/<id>")
	}
	if s.Patient, err = parsePatient(patient); err != nil {
		return s, err
	}

	code, err := single(q, "code")
	if err != nil {
		return s, err
	}
	if _, given := q["code"]; given {
		if s.Codes, err = parseCodes(code); err != nil {
			return s, err
		}
	}

	for _, v := range q["date"] {
		from, to, err := parseDateParam(v)
		if err != nil {
			return s, err
		}
		if !from.IsZero() && from.After(s.From) {
			s.From = from
		}
		if !to.IsZero() && (s.To.IsZero() || to.Before(s.To)) {
			s.To = to
		}
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		return s, badParam("date", strings.Join(q["date"], "&date="), "the dates leave no time between them: "+
			"for a range, give the start with ge and the end with le, such as date=ge2026-11-01&date=le2026-11-30")
	}

	if s.Count, err = intParam(q, "_count", DefaultCount); err != nil {
		return s, err
	}
	s.Count = min(s.Count, MaxCount)
	if s.Offset, err = intParam(q, "_offset", 0); err != nil {
		return s, err
	}
	return s, nil
}

// Query is the search as a query string in canonical form, for a bundle's self and next links:
// patient, code, date (ge and lt, in UTC), _count, _offset, in that order. ParseObservationSearch of
// it gives the search back.
func (s ObservationSearch) Query() string {
	params := []string{"patient=" + url.QueryEscape(s.Patient)}
	if len(s.Codes) > 0 {
		params = append(params, "code="+strings.ReplaceAll(url.QueryEscape(strings.Join(s.Codes, ",")), "%2C", ","))
	}
	if !s.From.IsZero() {
		params = append(params, "date=ge"+s.From.UTC().Format(time.RFC3339Nano))
	}
	if !s.To.IsZero() {
		params = append(params, "date=lt"+s.To.UTC().Format(time.RFC3339Nano))
	}
	params = append(params, "_count="+strconv.Itoa(s.Count))
	if s.Offset > 0 {
		params = append(params, "_offset="+strconv.Itoa(s.Offset))
	}
	return strings.Join(params, "&")
}

// single returns the one value of a parameter that may be given once ("" if absent).
func single(q url.Values, name string) (string, error) {
	vs := q[name]
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		msg := "is given more than once; give it once"
		if name == "code" {
			msg = "is given more than once; give one code parameter with the codes separated by commas (code=a,b matches a or b)"
		}
		return "", badParam(name, strings.Join(vs, "&"+name+"="), "%s", msg)
	case strings.TrimSpace(vs[0]) == "":
		return "", badParam(name, "", "is empty")
	}
	return strings.TrimSpace(vs[0]), nil
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func parsePatient(v string) (string, error) {
	id := strings.TrimPrefix(v, "Patient/")
	if !idPattern.MatchString(id) {
		return "", badParam("patient", v, "is not a patient id: give patient=<id> or patient=Patient/<id>")
	}
	return id, nil
}

// parseCodes reads a comma-separated list of tokens: code, system|code. Components (the systolic of a
// blood pressure) are refused with a pointer to their panel, since only panels are stored.
func parseCodes(v string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(v, ",") {
		tok = strings.TrimSpace(tok)
		system, code, hasSystem := strings.Cut(tok, "|")
		if !hasSystem {
			code = system
			system = ""
		}
		if code == "" {
			return nil, badParam("code", v, "has an empty code; give codes such as code=8867-4 or code=http://loinc.org|8867-4")
		}
		if hasSystem && system != vitals.SystemLOINC && system != vitals.SystemMDC {
			return nil, badParam("code", v, "system %s is not one telemed uses (%s for vital signs, %s for ECG)",
				clip(system), vitals.SystemLOINC, vitals.SystemMDC)
		}
		s, ok := vitals.Lookup(code)
		if !ok {
			return nil, badParam("code", v, "%s is not a signal telemed records (known: %s)", clip(code), strings.Join(knownCodes(), ", "))
		}
		if hasSystem && s.System != system {
			return nil, badParam("code", v, "%s is not a code of %s; it is %s", clip(code), system, s.System)
		}
		if panel, isComponent := panelOf(s.Code); isComponent {
			return nil, badParam("code", v, "%s (%s) is a component of the %s panel; search code=%s",
				s.Code, strings.ToLower(s.Display), strings.ToLower(panel.Name), panel.Code)
		}
		if !slices.Contains(out, s.Code) {
			out = append(out, s.Code)
		}
	}
	return out, nil
}

func panelOf(code string) (vitals.Signal, bool) {
	for _, s := range vitals.Signals() {
		for _, c := range s.Components {
			if c.Code == code {
				return s, true
			}
		}
	}
	return vitals.Signal{}, false
}

func knownCodes() []string {
	var out []string
	for _, s := range vitals.Signals() {
		out = append(out, s.Code)
	}
	return out
}

// A FHIR date search value, at any precision from a year to a fraction of a second.
var datePattern = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// parseDateParam reads one date parameter: an optional prefix and a date. It returns the half-open
// range [from, to) of the times that match (a zero bound is open). A date stands for the whole of
// its precision: 2026-11-24 is that day (in UTC), so ge starts at its start, le ends at its end.
func parseDateParam(v string) (from, to time.Time, err error) {
	raw := v
	v = strings.TrimSpace(v)
	prefix := "eq"
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	// An unencoded "+" of a time zone offset arrives as a space.
	v = strings.Replace(v, " ", "+", 1)
	start, end, err := dateRange(v)
	if err != nil {
		return from, to, badParam("date", raw, "%s", err.Error())
	}
	switch prefix {
	case "eq":
		return start, end, nil
	case "ge":
		return start, to, nil
	case "gt":
		return end, to, nil
	case "le":
		return from, end, nil
	case "lt":
		return from, start, nil
	case "ne", "sa", "eb", "ap":
		return from, to, &ParamError{Param: "date", Value: raw, Issue: IssueNotSupported,
			Message: "prefix " + prefix + " is not supported (supported: eq, ge, gt, le, lt)"}
	}
	return from, to, badParam("date", raw, "prefix %s is not a FHIR date prefix (supported: eq, ge, gt, le, lt)", clip(prefix))
}

// dateRange returns the range of times a FHIR date value stands for: [start, end).
func dateRange(v string) (start, end time.Time, err error) {
	m := datePattern.FindStringSubmatch(v)
	if m == nil {
		return start, end, fmt.Errorf("is not a FHIR date: give YYYY, YYYY-MM, YYYY-MM-DD or a date and time " +
			"with a time zone, such as 2026-11-24T10:00:00Z, after an optional prefix (ge, gt, le, lt, eq)")
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	year, month, day, hour, minute, sec := num(1, 0), num(2, 1), num(3, 1), num(4, 0), num(5, 0), num(6, 0)
	var nsec int
	if m[7] != "" {
		nsec, _ = strconv.Atoi((m[7] + "000000000")[:9])
	}
	loc := time.UTC
	if m[4] != "" {
		switch zone := m[8]; {
		case zone == "":
			return start, end, fmt.Errorf("has a time but no time zone: add Z (UTC) or an offset such as +01:00")
		case zone != "Z":
			h, _ := strconv.Atoi(zone[1:3])
			mm, _ := strconv.Atoi(zone[4:6])
			off := h*3600 + mm*60
			if zone[0] == '-' {
				off = -off
			}
			if h > 14 || mm > 59 {
				return start, end, fmt.Errorf("has a time zone offset out of range")
			}
			loc = time.FixedZone(zone, off)
		}
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return start, end, fmt.Errorf("is not a valid date or time")
	}
	start = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if start.Day() != day { // time.Date normalized an impossible day, such as February 30
		return start, end, fmt.Errorf("is not a valid date")
	}
	switch {
	case m[2] == "":
		end = start.AddDate(1, 0, 0)
	case m[3] == "":
		end = start.AddDate(0, 1, 0)
	case m[4] == "":
		end = start.AddDate(0, 0, 1)
	case m[6] == "":
		end = start.Add(time.Minute)
	case m[7] == "":
		end = start.Add(time.Second)
	default:
		step := time.Duration(1)
		for range 9 - len(m[7]) {
			step *= 10
		}
		end = start.Add(step)
	}
	return start.UTC(), end.UTC(), nil
}

func intParam(q url.Values, name string, def int) (int, error) {
	v, err := single(q, name)
	if err != nil || v == "" {
		return def, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return def, badParam(name, v, "must be a whole number, 0 or more")
	}
	return n, nil
}

// clip quotes a value for an error message, shortened if long.
func clip(v string) string {
	const n = 60
	if r := []rune(v); len(r) > n {
		return strconv.Quote(string(r[:n])) + "…"
	}
	return strconv.Quote(v)
}
