// Repository checks that belong to no package: the Dockerfile's build stage produces a static
// binary, and no private key is committed.
package spread_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dockerfile is the parsed subset of the Dockerfile the checks need.
type dockerfile struct {
	stages  []string // FROM lines, in order
	buildGo string   // the build stage's `RUN ... go build ...` command
	user    string   // the final stage's USER
	entry   string   // the final stage's ENTRYPOINT
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			d.stages = append(d.stages, rest)
			d.user, d.entry = "", ""
		case "RUN":
			if strings.Contains(rest, "go build") {
				if strings.HasSuffix(rest, `\`) {
					t.Fatalf("the go build line continues on the next line; keep it on one: %s", line)
				}
				d.buildGo = rest
			}
		case "USER":
			d.user = rest
		case "ENTRYPOINT":
			d.entry = rest
		}
	}
	return d
}

// shellWords splits a simple shell command line: words, single and double quotes (no
// expansions; the Dockerfile's build line uses none).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("$`;&|<>", r):
			t.Fatalf("the go build line uses shell syntax %q the test does not run: %s", r, s)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %s", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestDockerfileShape(t *testing.T) {
	d := parseDockerfile(t)
	if len(d.stages) < 2 {
		t.Fatalf("want a multi-stage build, got stages %q", d.stages)
	}
	final := d.stages[len(d.stages)-1]
	if !strings.Contains(final, "distroless/static") && !strings.HasPrefix(final, "scratch") {
		t.Errorf("final stage %q: want distroless/static or scratch", final)
	}
	if d.user != "65532:65532" && d.user != "65532" {
		t.Errorf("final stage USER %q: want 65532 (non-root)", d.user)
	}
	if !strings.Contains(d.entry, "spread") {
		t.Errorf("ENTRYPOINT %q does not run spread", d.entry)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "./cmd/spread"} {
		if !strings.Contains(d.buildGo, want) {
			t.Errorf("build line %q lacks %q", d.buildGo, want)
		}
	}
}

// TestDockerfileBuildsStaticBinary runs the Dockerfile's go build line here (no container
// engine needed), into a temporary folder, and checks the binary is static and runs.
func TestDockerfileBuildsStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary with -trimpath (a full build): skipped with -short")
	}
	d := parseDockerfile(t)
	words := shellWords(t, d.buildGo)
	env := os.Environ()
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("build line %q: want [VAR=value ...] go build ...", d.buildGo)
	}
	out := filepath.Join(t.TempDir(), "spread")
	replaced := false
	for i := range words {
		if words[i] == "-o" && i+1 < len(words) {
			words[i+1], replaced = out, true
		}
	}
	if !replaced {
		t.Fatalf("build line %q has no -o", d.buildGo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", words[1:]...)
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(words[1:], " "), err, b)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Error("binary has a .dynamic section: not static")
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}
	if s := f.Section(".symtab"); s != nil {
		t.Error("binary has a symbol table: -s was not applied")
	}

	help, err := exec.CommandContext(ctx, out, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("spread --help: %v\n%s", err, help)
	}
	for _, sub := range []string{"backend", "frontend", "demo", "certs"} {
		if !strings.Contains(string(help), sub) {
			t.Errorf("spread --help does not list %q:\n%s", sub, help)
		}
	}
}

// privateKeyPEM matches a PEM private key block header (RSA, EC, PKCS#8, encrypted, ...).
// Assembled so this file does not match itself.
var privateKeyPEM = regexp.MustCompile("-----BEGIN [A-Z0-9 ]*" + "PRIVATE KEY-----")

// TestNoPrivateKeyCommitted reads every file git tracks (committed or staged) and fails on a
// PEM private key block: keys are generated (spread certs, tests) and live in Secrets.
func TestNoPrivateKeyCommitted(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	if len(files) < 10 {
		t.Fatalf("git ls-files listed %d files; expected the repository", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if loc := privateKeyPEM.FindIndex(b); loc != nil {
			line := bytes.Count(b[:loc[0]], []byte("\n")) + 1
			t.Errorf("%s:%d holds a PEM private key: remove it from the repository (and rotate it)", f, line)
		}
	}
}

func TestPrivateKeyPatternMatches(t *testing.T) {
	for _, s := range []string{"RSA ", "EC ", "", "ENCRYPTED ", "OPENSSH "} {
		if block := "-----BEGIN " + s + "PRIVATE KEY-----"; !privateKeyPEM.MatchString(block) {
			t.Errorf("pattern misses %q", block)
		}
	}
	if privateKeyPEM.MatchString("-----BEGIN CERTIFICATE-----") {
		t.Error("pattern matches a certificate")
	}
}
