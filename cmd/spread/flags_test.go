package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/certgen"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/compare"
	"github.com/spread-grpc/spread/internal/demo"
	"github.com/spread-grpc/spread/internal/flagalias"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/load"
	"github.com/spread-grpc/spread/internal/xdscmd"
)

// canonical maps the names commands once used for the same thing to the one name every
// command uses now (STYLE.md: --addr, --admin-addr, --grace, --tls-*).
var canonical = map[string]string{
	"listen":            "addr",
	"admin-listen":      "admin-addr",
	"shutdown-grace":    "grace",
	"ca-file":           "tls-ca",
	"cert-file":         "tls-cert",
	"key-file":          "tls-key",
	"tls-ca-file":       "tls-ca",
	"listen-addr":       "addr",
	"admin-listen-addr": "admin-addr",
	"shutdown-timeout":  "grace",
}

// subcommands lists every command line that has a flag set of its own.
func subcommands() [][]string {
	var out [][]string
	for name := range commands {
		out = append(out, []string{name})
	}
	out = append(out, []string{"xds", "bootstrap"})
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}

// flagsOf runs `spread <cmd> -h` and reads back the flags it lists with their usage
// (flag.PrintDefaults' format: "  -name type" then the usage indented by a tab).
func flagsOf(t *testing.T, cmd []string) map[string]string {
	t.Helper()
	code, out := runCmd(append(slices.Clone(cmd), "-h")...)
	if code != 0 {
		t.Fatalf("spread %v -h: exit %d: %s", cmd, code, out)
	}
	flags := map[string]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			name, usage, _ := strings.Cut(name, "\t") // a bool flag's usage may share the line
			cur = name
			flags[cur] = strings.TrimSpace(usage)
		case strings.HasPrefix(line, "    \t") && cur != "":
			flags[cur] = strings.TrimSpace(flags[cur] + " " + strings.TrimSpace(line))
		}
	}
	if len(flags) == 0 {
		t.Fatalf("spread %v -h listed no flags: %s", cmd, out)
	}
	return flags
}

// TestFlagNamesAreConsistent walks every subcommand's flag set: an old name for a concept
// (--listen, --ca-file, ...) may only be a deprecated alias that says so in -h and names the
// canonical flag, which the same command has; every deprecated alias names a flag of its
// command.
func TestFlagNamesAreConsistent(t *testing.T) {
	for _, cmd := range subcommands() {
		flags := flagsOf(t, cmd)
		for name, usage := range flags {
			target, deprecated := flagalias.Target(usage)
			if want, old := canonical[name]; old {
				if !deprecated || target != want {
					t.Errorf("spread %v --%s: an old name; want it only as a deprecated alias of --%s (usage %q)", cmd, name, want, usage)
				}
			}
			if deprecated {
				if _, ok := flags[target]; !ok {
					t.Errorf("spread %v --%s: deprecated alias of --%s, which the command does not have", cmd, name, target)
				}
			}
		}
	}
}

// TestDeprecatedAliasesShareTheirDefault checks in every subcommand's -h that an alias is
// not a second declaration of its flag's default: it shows exactly its target's default.
func TestDeprecatedAliasesShareTheirDefault(t *testing.T) {
	defaultOf := func(usage string) string {
		if i := strings.LastIndex(usage, "(default "); i >= 0 {
			return usage[i:]
		}
		return ""
	}
	aliases := 0
	for _, cmd := range subcommands() {
		flags := flagsOf(t, cmd)
		for name, usage := range flags {
			target, ok := flagalias.Target(usage)
			if !ok {
				continue
			}
			aliases++
			if got, want := defaultOf(usage), defaultOf(flags[target]); got != want {
				t.Errorf("spread %v --%s shows default %q, its flag --%s %q", cmd, name, got, target, want)
			}
		}
	}
	if aliases == 0 {
		t.Error("no deprecated alias found in any -h: the walk reads nothing")
	}
}

// TestDemoFlagDefaultsAreTheLibrarys fails when a `spread demo` flag declares a cluster
// default of its own instead of showing cluster.DefaultConfig's.
func TestDemoFlagDefaultsAreTheLibrarys(t *testing.T) {
	d := cluster.DefaultConfig()
	flags := flagsOf(t, []string{"demo"})
	for name, want := range map[string]string{
		"replicas":      strconv.Itoa(d.Replicas),
		"first-pod-ip":  strconv.Quote(d.FirstPodIP.String()),
		"pod-port":      strconv.Itoa(d.PodPort),
		"dns-addr":      strconv.Quote(d.DNSAddr),
		"dns-ttl":       d.DNSTTL.String(),
		"pod-grace":     d.Grace.String(),
		"restart-delay": d.RestartDelay.String(),
		"canary-weight": strconv.Itoa(d.CanaryWeight),
	} {
		if usage, ok := flags[name]; !ok || !strings.HasSuffix(usage, "(default "+want+")") {
			t.Errorf("spread demo --%s: usage %q, want the library default %s", name, usage, want)
		}
	}
}

// TestFlagDefaultsAreTheLibrarys fails when a command's -h shows a default other than its
// library's DefaultConfig: the flag declared a default of its own, a second declaration.
func TestFlagDefaultsAreTheLibrarys(t *testing.T) {
	dur := func(d time.Duration) string { return d.String() }
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	fe, be, ld, cp, dm, xd := frontend.DefaultConfig(), backend.DefaultConfig(), load.DefaultConfig(), compare.DefaultConfig(), demo.DefaultConfig(), xdscmd.DefaultConfig()
	certs := certgen.DefaultBundle()
	want := map[string]map[string]string{
		"frontend": {"call-timeout": dur(fe.CallTimeout), "request-timeout": dur(fe.RequestTimeout)},
		"backend":  {"grace": dur(be.Grace)},
		"load": {"rate": num(ld.Rate), "duration": dur(ld.Duration), "concurrency": strconv.Itoa(ld.MaxInFlight),
			"window": dur(ld.Window), "call-timeout": dur(ld.CallTimeout)},
		"compare": {"rate": num(cp.Rate), "duration": dur(cp.Duration), "event-at": num(cp.EventAt),
			"call-timeout": dur(cp.CallTimeout), "dns-refresh-interval": dur(cp.ModeOptions.DNSRefreshInterval)},
		"demo": {"frontend-addr": strconv.Quote(dm.FrontendAddr), "admin-addr": strconv.Quote(dm.AdminAddr), "grace": dur(dm.Grace),
			"dns-refresh-interval": dur(dm.ModeOptions.DNSRefreshInterval)},
		"xds": {"addr": strconv.Quote(xd.Listen), "admin-addr": strconv.Quote(xd.AdminListen), "grace": dur(xd.ShutdownGrace),
			"zone-min-healthy": strconv.Itoa(xd.ZoneMinHealthy)},
		"certs": {"out": strconv.Quote(certs.Dir), "namespace": strconv.Quote(certs.Namespace),
			"cluster-domain": strconv.Quote(certs.ClusterDomain), "valid-for": dur(certs.ValidFor)},
	}
	for cmd, flags := range want {
		shown := flagsOf(t, []string{cmd})
		for name, def := range flags {
			usage, ok := shown[name]
			if !ok {
				t.Errorf("spread %s has no --%s", cmd, name)
				continue
			}
			if !strings.HasSuffix(usage, "(default "+def+")") {
				t.Errorf("spread %s --%s: usage %q, want the library default %s", cmd, name, usage, def)
			}
		}
	}
}

// registerFlagsPackages are the libraries whose configs bind their own flags (RegisterFlags).
var registerFlagsPackages = []string{"backend", "certgen", "compare", "demo", "frontend", "load", "xdscmd"}

// TestNoFlagDeclaresALibraryDefault reads cmd/spread's source and the RegisterFlags methods
// of the libraries: a flag bound to a field of a library's configuration (a variable the
// command got from another package: var v pkg.T or v := pkg.F(); in a library, the receiver
// of RegisterFlags) must take its default from that value, not from a literal of its own, so
// the default is declared once, in the library's DefaultConfig. Zero literals (off, unset)
// are allowed.
func TestNoFlagDeclaresALibraryDefault(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range registerFlagsPackages {
		lib, err := filepath.Glob(filepath.Join("..", "..", "internal", pkg, "*.go"))
		if err != nil || len(lib) == 0 {
			t.Fatalf("internal/%s: no source files (%v)", pkg, err)
		}
		files = append(files, lib...)
	}
	checked := 0
	registerFlags := map[string]bool{} // directories with a RegisterFlags method
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		imported := map[string]bool{}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			n := p[strings.LastIndex(p, "/")+1:]
			if im.Name != nil {
				n = im.Name.Name
			}
			imported[n] = true
		}
		fromPkg := func(e ast.Expr) bool { // pkg.T, pkg.F(), pkg.T{}
			switch x := e.(type) {
			case *ast.CallExpr:
				e = x.Fun
			case *ast.CompositeLit:
				e = x.Type
			}
			sel, ok := e.(*ast.SelectorExpr)
			if !ok {
				return false
			}
			id, ok := sel.X.(*ast.Ident)
			return ok && imported[id.Name]
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			library := map[string]bool{} // local variables holding another package's config
			if fn.Name.Name == "RegisterFlags" && fn.Recv != nil && len(fn.Recv.List[0].Names) == 1 {
				library[fn.Recv.List[0].Names[0].Name] = true // the library's own config
				registerFlags[filepath.Dir(name)] = true
			}
			rootOf := func(e ast.Expr) ast.Expr {
				for {
					x, ok := e.(*ast.SelectorExpr)
					if !ok {
						return e
					}
					e = x.X
				}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch s := n.(type) {
				case *ast.AssignStmt:
					for i, l := range s.Lhs {
						id, ok := l.(*ast.Ident)
						if !ok || i >= len(s.Rhs) {
							continue
						}
						if fromPkg(s.Rhs[i]) {
							library[id.Name] = true
						}
						// f := &c.Part, c a library config: f is part of it.
						if u, ok := s.Rhs[i].(*ast.UnaryExpr); ok && u.Op == token.AND {
							if _, sel := u.X.(*ast.SelectorExpr); sel {
								if r, ok := rootOf(u.X).(*ast.Ident); ok && library[r.Name] {
									library[id.Name] = true
								}
							}
						}
					}
				case *ast.ValueSpec:
					for _, id := range s.Names {
						if s.Type != nil && fromPkg(s.Type) {
							library[id.Name] = true
						}
					}
				case *ast.CallExpr:
					sel, ok := s.Fun.(*ast.SelectorExpr)
					if !ok || !strings.HasSuffix(sel.Sel.Name, "Var") || len(s.Args) < 3 {
						return true
					}
					dst, ok := s.Args[0].(*ast.UnaryExpr)
					if !ok || dst.Op != token.AND {
						return true
					}
					root := rootOf(dst.X)
					id, ok := root.(*ast.Ident)
					if !ok || !library[id.Name] || root == dst.X {
						return true
					}
					checked++
					if literalDefault(s.Args[2]) {
						flagName := "?"
						if lit, ok := s.Args[1].(*ast.BasicLit); ok {
							flagName = lit.Value
						}
						t.Errorf("%s: flag %s declares its default %s; take it from the library's DefaultConfig", fset.Position(s.Pos()), flagName, types.ExprString(s.Args[2]))
					}
				}
				return true
			})
		}
	}
	for _, pkg := range registerFlagsPackages {
		if dir := filepath.Join("..", "..", "internal", pkg); !registerFlags[dir] {
			t.Errorf("%s has no RegisterFlags method: the walk reads nothing there", dir)
		}
	}
	if checked < 20 {
		t.Errorf("only %d flags bound to library configs found: the walk reads too little", checked)
	}
}

// literalDefault reports a non-zero constant written out: "x", 5, 10*time.Second, true.
func literalDefault(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return x.Value != "0" && x.Value != `""` && x.Value != "``" && x.Value != "0.0"
	case *ast.Ident:
		return x.Name == "true"
	case *ast.BinaryExpr:
		return constantish(x.X) && constantish(x.Y)
	}
	return false
}

// constantish: a literal or a time unit (time.Second), as in 10*time.Second.
func constantish(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.BinaryExpr:
		return constantish(x.X) && constantish(x.Y)
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && id.Name == "time"
	case *ast.ParenExpr:
		return constantish(x.X)
	}
	return false
}
