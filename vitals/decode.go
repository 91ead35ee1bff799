package vitals

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/telemed/telemed/errcode"
)

// Decode reads one reading from its JSON form, refusing unknown fields. Its error is an *Error with
// code errcode.BadReading whose message says what is wrong in words, without Go's type names ("value
// must be a number, not a string"). The reading still has to pass Validate.
func Decode(data []byte) (Reading, error) {
	var r Reading
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Reading{}, &Error{Code: errcode.BadReading, Message: "not a reading: " + jsonProblem(err)}
	}
	return r, nil
}

// jsonProblem says what is wrong with a reading's JSON, without Go's type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		switch {
		case te.Field == "":
			return fmt.Sprintf("a reading must be a JSON object, not %s", article(te.Value))
		case strings.HasPrefix(te.Value, "number") && te.Type.Kind().String() == "float64":
			return fmt.Sprintf("%s is %s: too large for any reading", te.Field, te.Value)
		}
		return fmt.Sprintf("%s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), article(te.Value))
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("time must be RFC 3339 such as \"2026-11-24T10:00:00.250Z\", not %s", errcode.Quote(pe.Value))
	}
	return err.Error()
}

// article puts "a" or "an" before a JSON kind as encoding/json names it ("array", "number 1e400").
func article(v string) string {
	if v != "" && strings.ContainsRune("aeiou", rune(v[0])) {
		return "an " + v
	}
	return "a " + v
}

func jsonKind(k string) string {
	switch k {
	case "float64", "ptr":
		return "a number"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct":
		return "an object"
	}
	return k
}
