// Package docs holds the project's documentation. Its test checks that the
// Go names the documents mention still exist.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// packages are the library's packages, by the name the docs use.
var packages = map[string]string{
	"actor":           "../actor",
	"raftserver":      "../raftserver",
	"core":            "../raftserver/core",
	"wal":             "../wal",
	"segment":         "../segment",
	"snapshot":        "../snapshot",
	"meta":            "../meta",
	"failuredetector": "../failuredetector",
	"leaderboard":     "../leaderboard",
	"metrics":         "../metrics",
	"promexport":      "../promexport",
	"fleet":           "../fleet",
}

// decls is what one package declares: its top-level names, and the fields
// and methods of each of its types.
type decls struct {
	names   map[string]bool
	members map[string]map[string]bool // type -> field or method
}

func parsePackage(t *testing.T, dir string) decls {
	t.Helper()
	d := decls{names: map[string]bool{}, members: map[string]map[string]bool{}}
	member := func(typ, name string) {
		if d.members[typ] == nil {
			d.members[typ] = map[string]bool{}
		}
		d.members[typ][name] = true
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.FuncDecl:
				if decl.Recv == nil {
					d.names[decl.Name.Name] = true
					continue
				}
				typ := decl.Recv.List[0].Type
				for {
					switch x := typ.(type) {
					case *ast.StarExpr:
						typ = x.X
						continue
					case *ast.IndexExpr:
						typ = x.X
						continue
					case *ast.IndexListExpr:
						typ = x.X
						continue
					}
					break
				}
				if id, ok := typ.(*ast.Ident); ok {
					member(id.Name, decl.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range decl.Specs {
					switch spec := spec.(type) {
					case *ast.ValueSpec:
						for _, n := range spec.Names {
							d.names[n.Name] = true
						}
					case *ast.TypeSpec:
						d.names[spec.Name.Name] = true
						var fields *ast.FieldList
						switch st := spec.Type.(type) {
						case *ast.StructType:
							fields = st.Fields
						case *ast.InterfaceType:
							fields = st.Methods
						}
						if fields == nil {
							continue
						}
						for _, fld := range fields.List {
							for _, n := range fld.Names {
								member(spec.Name.Name, n.Name)
							}
							if len(fld.Names) == 0 { // embedded: its name is the type's
								typ := fld.Type
								if s, ok := typ.(*ast.StarExpr); ok {
									typ = s.X
								}
								switch x := typ.(type) {
								case *ast.Ident:
									member(spec.Name.Name, x.Name)
								case *ast.SelectorExpr:
									member(spec.Name.Name, x.Sel.Name)
								}
							}
						}
					}
				}
			}
		}
	}
	return d
}

// qualified matches pkg.Name, pkg.Type.Member or Type.Member at the start
// of a code span.
var qualified = regexp.MustCompile("`([a-z][a-z]*|[A-Z][A-Za-z0-9]*)\\.([A-Z][A-Za-z0-9]*)(?:\\.([A-Z][A-Za-z0-9]*))?")

// TestDocumentedNamesExist reads the README, the changelog and docs/*.md
// and checks every code span that starts with a package's name and an
// exported name (`raftserver.SystemConfig`, `segment.Store.DeleteUID`) or
// with an exported type and one of its fields or methods
// (`SystemConfig.Raft`): the names must be declared. A
// rename that the documents did not follow fails here.
func TestDocumentedNamesExist(t *testing.T) {
	pkgs := map[string]decls{}
	for name, dir := range packages {
		pkgs[name] = parsePackage(t, dir)
	}
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, "../README.md", "../CHANGELOG.md")
	checked := 0
	for _, path := range docs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range qualified.FindAllStringSubmatch(string(b), -1) {
			left, right, third := m[1], m[2], m[3]
			if d, ok := pkgs[left]; ok {
				checked++
				if !d.names[right] {
					t.Errorf("%s: `%s.%s`: package %s declares no %s", path, left, right, left, right)
				} else if third != "" && d.members[right] != nil && !d.members[right][third] {
					t.Errorf("%s: `%s.%s.%s`: %s.%s has no field or method %s", path, left, right, third, left, right, third)
				}
				continue
			}
			if left[0] < 'A' || left[0] > 'Z' {
				continue // another package's name (os, time, slog...)
			}
			declared, isType := false, false
			for _, d := range pkgs {
				if d.names[left] {
					isType = true
				}
				if d.members[left][right] {
					declared = true
				}
			}
			if isType {
				checked++
				if !declared {
					t.Errorf("%s: `%s.%s`: no type %s of ours has a field or method %s", path, left, right, left, right)
				}
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d names checked: the pattern no longer matches the documents", checked)
	}
	t.Logf("%d documented names checked", checked)
}
