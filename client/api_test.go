package client

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestAPINamesNoInternalType holds the package to what a program in another module can use: no
// exported declaration may mention a type of an internal/ package, which such a program cannot name
// (docs: issue 11, "go doc -all ./client names no internal/ type"). The package may use internal
// packages in its bodies and unexported declarations.
func TestAPINamesNoInternalType(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no source files found")
	}
	for _, m := range internalInAPI(fset, files) {
		t.Error(m)
	}
}

// TestAPICheckFindsInternalTypes shows that the check above finds what it is for, in every kind of
// exported declaration, and leaves alone what a program never sees.
func TestAPICheckFindsInternalTypes(t *testing.T) {
	const src = `package client

import (
	"github.com/telemed/telemed/internal/consult"
	room "github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/protocol"
)

func Func() consult.Role { return "" }                    // 1: result
func Param(r []*room.Role) {}                             // 2: parameter, under an alias
type Exported struct {
	Field   map[string]consult.Role                       // 3: exported field
	private consult.Role
	consult.Participant                                   // 4: embedded, so exported
	Hidden  hidden                                        // (reaches hidden)
}
func (Exported) Method() (protocol.Welcome, consult.Role) { return protocol.Welcome{}, "" } // 5: method
func (Exported) private() consult.Role { return "" }
type hidden struct{ Leak consult.Role }                   // 6: reached through Exported.Hidden
func (hidden) Also() consult.Role { return "" }           // 7: method of a reachable type
type unreached struct{ Leak consult.Role }
func (unreached) Method() consult.Role { return "" }
type Alias = consult.Role                                 // 8: alias
type Iface interface{ Get() consult.Role }                // 9: interface method
var Var consult.Role                                      // 10: var type
var Init = consult.RolePatient                            // 11: var value
const (
	First consult.Role = "x"                              // 12: const type
	Second                                                // 13: its implied type
)
func Generic[T consult.Role]() {}                         // 14: type parameter
func private() consult.Role { return "" }
var private2 consult.Role
func Body() { _ = consult.RolePatient }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "leak.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := internalInAPI(fset, []*ast.File{f})
	want := []string{"Func", "Param", "Exported.Field", "Exported.Participant", "Exported.Method",
		"hidden.Leak", "hidden.Also", "Alias", "Iface", "Var", "Init", "First", "Second", "Generic"}
	if len(got) != len(want) {
		t.Errorf("found %d mentions, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.Contains(g, " "+w+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: not found in:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// internalInAPI returns, for each exported declaration of the package made of files that mentions a
// type of an internal/ package, a line naming both. What is checked is what a program in another
// module can reach: exported functions, exported methods of reachable types, exported vars and consts
// (their type and value), and reachable types: exported ones, and unexported ones that a checked
// declaration mentions (a program gets their values and may use their exported fields and methods).
// Of a struct, exported and embedded fields; of an interface, all of it.
func internalInAPI(fset *token.FileSet, files []*ast.File) []string {
	type typeDecl struct {
		file *ast.File
		spec *ast.TypeSpec
	}
	types := map[string]typeDecl{}
	methods := map[string][]*ast.FuncDecl{}
	methodFile := map[*ast.FuncDecl]*ast.File{}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if ts, ok := s.(*ast.TypeSpec); ok {
						types[ts.Name.Name] = typeDecl{f, ts}
					}
				}
			case *ast.FuncDecl:
				if d.Recv != nil && len(d.Recv.List) == 1 {
					recv := baseName(d.Recv.List[0].Type)
					methods[recv] = append(methods[recv], d)
					methodFile[d] = f
				}
			}
		}
	}

	var out []string
	reached := map[string]bool{}
	var queue []string
	// check reports the internal selectors in n, found in file f, as mentioned by decl; local types it
	// names join the queue.
	check := func(f *ast.File, decl string, n ast.Node) {
		if n == nil || n == (*ast.FieldList)(nil) { // ast.Inspect cannot walk a nil *FieldList
			return
		}
		internal := internalImports(f)
		ast.Inspect(n, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					if p, ok := internal[x.Name]; ok {
						out = append(out, fmt.Sprintf("%s: exported %s mentions %s.%s (%s)",
							fset.Position(n.Pos()), decl, x.Name, n.Sel.Name, p))
					}
					return false
				}
			case *ast.Ident:
				if _, ok := types[n.Name]; ok && !reached[n.Name] {
					reached[n.Name] = true
					queue = append(queue, n.Name)
				}
			}
			return true
		})
	}
	for _, f := range files {
		if p, ok := internalImports(f)["."]; ok {
			out = append(out, fmt.Sprintf("%s: %s is dot-imported, which this check cannot follow", fset.Position(f.Package), p))
		}
	}

	for name := range types {
		if ast.IsExported(name) {
			reached[name] = true
			queue = append(queue, name)
		}
	}
	sort.Strings(queue)
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					check(f, d.Name.Name, d.Type)
				}
			case *ast.GenDecl:
				if d.Tok != token.VAR && d.Tok != token.CONST {
					continue
				}
				var typ ast.Expr
				var values []ast.Expr
				for _, s := range d.Specs {
					vs := s.(*ast.ValueSpec)
					if d.Tok == token.VAR || vs.Type != nil || len(vs.Values) > 0 {
						typ, values = vs.Type, vs.Values // a const without either repeats the one before
					}
					for _, n := range vs.Names {
						if !n.IsExported() {
							continue
						}
						if typ != nil {
							check(f, n.Name, typ)
						}
						for _, v := range values {
							check(f, n.Name, v)
						}
					}
				}
			}
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		td := types[name]
		check(td.file, name, td.spec.TypeParams)
		if st, ok := td.spec.Type.(*ast.StructType); ok && td.spec.Assign == 0 {
			for _, fld := range st.Fields.List {
				if len(fld.Names) == 0 {
					if n := baseName(fld.Type); ast.IsExported(n) {
						check(td.file, name+"."+n, fld.Type)
					}
					continue
				}
				for _, n := range fld.Names {
					if n.IsExported() {
						check(td.file, name+"."+n.Name, fld.Type)
					}
				}
			}
		} else {
			check(td.file, name, td.spec.Type)
		}
		for _, m := range methods[name] {
			if m.Name.IsExported() {
				check(methodFile[m], name+"."+m.Name.Name, m.Type)
			}
		}
	}
	return out
}

// internalImports maps the names under which file f imports packages of an internal/ directory to
// their paths.
func internalImports(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil || !(strings.Contains(p, "/internal/") || strings.HasPrefix(p, "internal/") || strings.HasSuffix(p, "/internal")) {
			continue
		}
		name := path.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		m[name] = p
	}
	return m
}

// baseName is the name a type expression stands for: T of T, *T, pkg.T and their instantiations. It
// names a method's receiver type and an embedded field.
func baseName(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.SelectorExpr:
			return x.Sel.Name
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
