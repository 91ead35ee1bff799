package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/telemed/telemed/vitals"
)

// MaxLine is the longest line a LineSource reads: a 5000-sample waveform fits with room to spare.
const MaxLine = 1 << 20

// LineSource reads readings as JSON lines (docs/monitoring.md), so that a real device's bridge can
// pipe into the agent. A line that is not a valid reading is reported and skipped; the source goes
// on. It ends at the end of its input.
type LineSource struct {
	// R is the input, usually standard input.
	R io.Reader
	// OnBadLine is told of each line skipped: its number (from 1) and why. Default: none.
	OnBadLine func(line int, err error)
	// Now is the clock readings are checked against (not in the future). Default: time.Now.
	Now func() time.Time
}

// Name is what the agent calls the source.
func (s *LineSource) Name() string { return "stdin" }

// Run reads lines until the input ends or ctx does. Cancelling ctx does not interrupt a read that
// is blocked; the agent does not wait for it.
func (s *LineSource) Run(ctx context.Context, emit func(vitals.Reading)) error {
	now := s.Now
	if now == nil {
		now = time.Now
	}
	bad := s.OnBadLine
	if bad == nil {
		bad = func(int, error) {}
	}
	br := bufio.NewReaderSize(s.R, 64<<10)
	for n := 1; ctx.Err() == nil; n++ {
		line, tooLong, err := readLine(br)
		if tooLong {
			bad(n, fmt.Errorf("longer than %d bytes", MaxLine))
		} else if len(bytes.TrimSpace(line)) > 0 {
			r, perr := parseReading(line, now())
			if perr != nil {
				bad(n, perr)
			} else {
				emit(r)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stdin: line %d: %w", n, err)
		}
	}
	return nil
}

// readLine reads one line without its end. A line over MaxLine is read to its end and dropped.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > MaxLine+2 { // with room for \r\n
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), tooLong, err
	}
}

// parseReading reads one JSON line as a reading and checks it as the server will.
func parseReading(line []byte, now time.Time) (vitals.Reading, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var r vitals.Reading
	if err := dec.Decode(&r); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return r, fmt.Errorf("not JSON (at byte %d): %v", se.Offset, err)
		case errors.As(err, &te) && te.Field == "":
			return r, fmt.Errorf("not a reading: a reading is a JSON object, not a JSON %s", te.Value)
		case errors.As(err, &te):
			return r, fmt.Errorf("field %s must be %s, not a JSON %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return r, fmt.Errorf("not a reading: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, errors.New("more than one JSON value on the line: send one reading per line")
	}
	r, err := vitals.Validate(r, now)
	if err != nil {
		return r, err
	}
	return r, nil
}

// jsonKind names what JSON a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Float64, reflect.Float32, reflect.Int, reflect.Int64, reflect.Uint64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}
