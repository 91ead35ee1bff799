package errcode_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
)

// surfaces says where each list of codes is documented: the table of codes that follows a heading of a
// page in docs/. The table is the first one after the heading, before the next heading, whose first
// column is headed "code"; every row of it names one code, in backquotes, in its first cell.
var surfaces = []struct {
	list    string
	codes   func() []errcode.Code
	doc     string
	heading string
}{
	{"API", errcode.API, "api.md", "## Error codes"},
	{"Signaling", errcode.Signaling, "signaling.md", "### `error`"},
	{"Rejection", errcode.Rejection, "monitoring.md", "## Uploading readings: `POST /api/v1/observations`"},
	{"Transfer", errcode.Transfer, "datachannels.md", "### Either side"},
}

// TestCodesAreDocumented holds each list against its page: every code of the list has a row, and every
// row is a code of the list.
func TestCodesAreDocumented(t *testing.T) {
	for _, s := range surfaces {
		t.Run(s.list, func(t *testing.T) {
			path := filepath.Join("..", "docs", s.doc)
			documented := codeTable(t, path, s.heading)
			inList := map[errcode.Code]bool{}
			for _, c := range s.codes() {
				inList[c] = true
			}
			inDoc := map[errcode.Code]bool{}
			for _, row := range documented {
				if inDoc[row.code] {
					t.Errorf("%s:%d: %s is documented twice", path, row.line, row.code)
				}
				inDoc[row.code] = true
				if !inList[row.code] {
					t.Errorf("%s:%d: %s is documented, but errcode.%s() does not list it", path, row.line, row.code, s.list)
				}
			}
			for _, c := range s.codes() {
				if !inDoc[c] {
					t.Errorf("errcode.%s() lists %s, but %s has no row for it in the table under %q", s.list, c, path, s.heading)
				}
			}
		})
	}
}

type docRow struct {
	code errcode.Code
	line int
}

var backquoted = regexp.MustCompile("^`([^`]+)`$")

// codeTable returns the codes of the table of codes under heading in the markdown file at path.
func codeTable(t *testing.T, path, heading string) []docRow {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == heading {
			if start >= 0 {
				t.Fatalf("%s: the heading %q appears twice", path, heading)
			}
			start = i
		}
	}
	if start < 0 {
		t.Fatalf("%s: no heading %q, under which the error codes' table should be", path, heading)
	}
	for i := start + 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "#") {
			break
		}
		if !strings.HasPrefix(l, "|") || cells(l)[0] != "code" {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[i+1]), "| ---") {
			t.Fatalf("%s:%d: a table header without its separator row", path, i+1)
		}
		var rows []docRow
		for j := i + 2; j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "|"); j++ {
			first := cells(strings.TrimSpace(lines[j]))[0]
			m := backquoted.FindStringSubmatch(first)
			if m == nil {
				t.Errorf("%s:%d: the first cell of a row of the code table is %q, not a code in backquotes", path, j+1, first)
				continue
			}
			rows = append(rows, docRow{errcode.Code(m[1]), j + 1})
		}
		if len(rows) == 0 {
			t.Fatalf("%s:%d: the code table has no rows", path, i+1)
		}
		return rows
	}
	t.Fatalf("%s: no table with a first column \"code\" under %q", path, heading)
	return nil
}

// cells splits a markdown table row into its trimmed cells.
func cells(row string) []string {
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	out := strings.Split(row, "|")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

var snake = regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)

// TestListsAreWellFormed checks that no list names a code twice and that every code is lower_snake_case.
func TestListsAreWellFormed(t *testing.T) {
	for _, s := range surfaces {
		t.Run(s.list, func(t *testing.T) {
			codes := s.codes()
			if len(codes) == 0 {
				t.Fatalf("errcode.%s() is empty", s.list)
			}
			seen := map[errcode.Code]bool{}
			for _, c := range codes {
				if seen[c] {
					t.Errorf("errcode.%s() lists %s twice", s.list, c)
				}
				seen[c] = true
				if !snake.MatchString(string(c)) {
					t.Errorf("errcode.%s() lists %q, which is not lower_snake_case", s.list, c)
				}
				if c.String() != string(c) {
					t.Errorf("%q.String() = %q", string(c), c.String())
				}
			}
		})
	}
}
