// Package archtest holds the rules of telemed's layout as tests (docs/architecture.md): which
// packages may import which, how large a package or a function may grow, and that every error the
// use cases give the HTTP API has a status there.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
)

const module = "github.com/telemed/telemed"

// root is the module's folder, two levels up from this package.
var root = filepath.Join("..", "..")

// pkgFile is one parsed non-test Go file of the module.
type pkgFile struct {
	dir  string // slash-separated, relative to the module root ("internal/monitoring")
	path string
	fset *token.FileSet
	file *ast.File
	src  []byte
}

// sources parses every non-test Go file of the module, leaving out other modules (examples/) and
// testdata.
func sources(t *testing.T) []pkgFile {
	t.Helper()
	var out []pkgFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		out = append(out, pkgFile{dir: filepath.ToSlash(rel), path: path, fset: fset, file: f, src: src})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found %d Go files under %s; is this the module's root?", len(out), root)
	}
	return out
}

func imports(f *ast.File) []string {
	var out []string
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		out = append(out, p)
	}
	return out
}

// The layers (docs/architecture.md). Domain packages hold the rules and know nothing of how telemed
// is reached or where it keeps things; use cases know the store only through its interfaces.
var (
	domain   = []string{"errcode", "vitals", "protocol", "internal/consult", "internal/monitor", "internal/auth"}
	useCases = []string{"internal/accounts", "internal/consultations", "internal/monitoring", "internal/audit"}
	// adapters are what the domain and the use cases must not import.
	adapters = []string{"net/http", "database/sql", "github.com/coder/websocket", "github.com/pion/",
		module + "/internal/httpapi", module + "/internal/signal", module + "/internal/server",
		module + "/internal/store/sqlite", module + "/internal/store/sqlstore", module + "/internal/store/postgres", module + "/internal/store/storecopy",
		module + "/internal/turn", module + "/internal/fhir", module + "/client",
		module + "/internal/cluster", "github.com/redis/"}
)

func TestDependenciesPointInward(t *testing.T) {
	for _, f := range sources(t) {
		for _, im := range imports(f.file) {
			switch {
			case strings.HasPrefix(im, module+"/cmd"):
				t.Errorf("%s imports %s: nothing imports a command", f.path, im)
			case slices.Contains(domain, f.dir) && (strings.HasPrefix(im, module+"/") && !slices.Contains(domain, strings.TrimPrefix(im, module+"/")) || isAdapter(im)):
				t.Errorf("%s imports %s: a domain package imports only the standard library and other domain packages", f.path, im)
			case slices.Contains(useCases, f.dir) && isAdapter(im):
				t.Errorf("%s imports %s: a use case knows nothing of HTTP, SQL, WebRTC or signaling", f.path, im)
			case f.dir == "client" && strings.HasPrefix(im, module+"/internal/") && !slices.Contains([]string{module + "/internal/consult"}, im):
				t.Errorf("%s imports %s: the public client builds on public packages (and consult's pure rules) only", f.path, im)
			}
		}
	}
}

func isAdapter(im string) bool {
	for _, a := range adapters {
		if im == a || strings.HasSuffix(a, "/") && strings.HasPrefix(im, a) {
			return true
		}
	}
	return false
}

// maxPackageLines is how large a package under internal/ may grow (lines of its non-test files)
// before it should be split by what it serves.
const maxPackageLines = 1200

func TestNoPackageTooLarge(t *testing.T) {
	lines := map[string]int{}
	for _, f := range sources(t) {
		if strings.HasPrefix(f.dir, "internal/") {
			lines[f.dir] += strings.Count(string(f.src), "\n")
		}
	}
	for dir, n := range lines {
		if n > maxPackageLines {
			t.Errorf("%s has %d lines of code; split it by what it serves (at most %d)", dir, n, maxPackageLines)
		}
	}
}

// maxFuncLines is how long a function may be without a reason: a doc comment that says "It is long
// because".
const maxFuncLines = 80

func TestNoLongFunctions(t *testing.T) {
	for _, f := range sources(t) {
		for _, d := range f.file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			n := f.fset.Position(fd.End()).Line - f.fset.Position(fd.Pos()).Line + 1
			if n > maxFuncLines && !strings.Contains(fd.Doc.Text(), "It is long because") {
				t.Errorf("%s: %s is %d lines; split it, or say in its doc comment why not (\"It is long because ...\")", f.path, fd.Name.Name, n)
			}
		}
	}
}

// TestErrorsUseAPICodes checks every *errcode.Error that the use cases and the HTTP edge make: its
// code must be one of errcode.API(), which the HTTP edge maps to a status (and docs/api.md lists).
// A signaling-only code there would be answered as an internal error.
func TestErrorsUseAPICodes(t *testing.T) {
	names := codeNames(t)
	api := errcode.API()
	checked := 0
	for _, f := range sources(t) {
		if !slices.Contains(append(useCases, "internal/httpapi"), f.dir) {
			continue
		}
		ast.Inspect(f.file, func(n ast.Node) bool {
			var code ast.Expr
			switch n := n.(type) {
			case *ast.CallExpr:
				if isSelector(n.Fun, "errcode", "Errorf") || isSelector(n.Fun, "errcode", "New") {
					code = n.Args[0]
				}
			case *ast.CompositeLit:
				if isSelector(n.Type, "errcode", "Error") {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "Code") {
							code = kv.Value
						}
					}
				}
			}
			if code == nil {
				return true
			}
			checked++
			sel, ok := code.(*ast.SelectorExpr)
			if !ok || !isIdent(sel.X, "errcode") {
				t.Errorf("%s: an error's code must be an errcode constant, not %T", f.fset.Position(code.Pos()), code)
				return true
			}
			if c, ok := names[sel.Sel.Name]; !ok || !slices.Contains(api, c) {
				t.Errorf("%s: errcode.%s is not a code of the HTTP API (errcode.API)", f.fset.Position(code.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
	if checked < 50 {
		t.Fatalf("found only %d errors made with an errcode; is the check still looking in the right places?", checked)
	}
}

// codeNames reads errcode.go's constants: name to code.
func codeNames(t *testing.T) map[string]errcode.Code {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "errcode", "errcode.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]errcode.Code{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
					v, _ := strconv.Unquote(lit.Value)
					out[name.Name] = errcode.Code(v)
				}
			}
		}
	}
	return out
}

func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	return ok && isIdent(sel.X, pkg) && sel.Sel.Name == name
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// TestReadmeNamesEveryPackage holds the README's layout to the tree: every top-level package (and
// every one under internal/, cmd/ and examples/) is named there.
func TestReadmeNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "## Layout")
	if !ok {
		t.Fatal("README.md has no Layout section")
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(layout, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasSuffix(f[0], "/") {
			listed[strings.TrimSuffix(f[0], "/")] = true
		}
	}
	dirs := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		parts := strings.Split(filepath.ToSlash(rel), "/")
		n := 1
		if parts[0] == "internal" || parts[0] == "cmd" || parts[0] == "examples" {
			n = 2
		}
		if len(parts) >= n && rel != "." {
			dirs[strings.Join(parts[:n], "/")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		if !listed[dir] {
			t.Errorf("README.md's layout does not name %s/", dir)
		}
	}
	if len(dirs) < 20 {
		t.Fatalf("found only %d packages; is the walk still looking in the right place?", len(dirs))
	}
}
