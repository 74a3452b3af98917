package xdsinterop

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/spread-grpc/spread/echo"
)

// EnvRequire set to 1 turns a missing client runtime (Node dependencies, python3-grpcio)
// into a test failure instead of a skip.
const EnvRequire = "SPREAD_REQUIRE_INTEROP"

// request is one line of the client line protocol (examples/node/client.js).
type request struct {
	Target   string `json:"target,omitempty"`
	N        int    `json:"n,omitempty"`
	Name     string `json:"name,omitempty"`
	Header   string `json:"header,omitempty"`
	Key      string `json:"key,omitempty"`
	Distinct bool   `json:"distinct,omitempty"`
	UntilPod string `json:"until_pod,omitempty"`
	State    bool   `json:"state,omitempty"`
	// Node client only (examples/node/client.js).
	Method       string `json:"method,omitempty"`
	Concurrency  int    `json:"concurrency,omitempty"`
	StreakPrefix string `json:"streak_prefix,omitempty"`
	Streak       int    `json:"streak,omitempty"`
}

// reply is one answer line.
type reply struct {
	Counts map[string]int `json:"counts"`
	Errors map[string]int `json:"errors"`
	State  string         `json:"state"`
	// First and Last: per pod, when it answered first and last (ms since the epoch; Node).
	First map[string]int64 `json:"first"`
	Last  map[string]int64 `json:"last"`
}

func (r reply) failed() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// client is one xDS client (one process or one set of in-process channels, one bootstrap),
// with a channel per target.
type client interface {
	do(ctx context.Context, r request) (reply, error)
}

// missing skips the test, or fails it under EnvRequire.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf(format+" ("+EnvRequire+"=1)", args...)
	}
	t.Skipf(format, args...)
}

// repoRoot is the module root (this package is internal/xdsinterop).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// nodeModules finds the Node dependencies `make node-deps` installed for the committed
// lockfile: $SPREAD_NODE_MODULES, else .cache/node/<first 12 hex of the lockfile's
// sha256>/node_modules.
func nodeModules(t testing.TB) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node not installed (apt-get install nodejs)")
	}
	modules = os.Getenv("SPREAD_NODE_MODULES")
	if modules == "" {
		lock, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "node", "package-lock.json"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(lock)
		modules = filepath.Join(repoRoot(t), ".cache", "node", hex.EncodeToString(sum[:])[:12], "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "@grpc", "grpc-js-xds", "package.json")); err != nil {
		missing(t, "Node dependencies missing in %s: run make node-deps", modules)
	}
	return node, modules
}

// python finds Debian's python3 with python3-grpcio (C-core).
func python(t testing.TB) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import grpc; print(grpc.__version__)").CombinedOutput(); err != nil {
		missing(t, "python3-grpcio not installed (apt-get install python3-grpcio): %v: %s", err, out)
	}
	return py
}

// procClient is a client in a child process speaking the line protocol.
type procClient struct {
	name   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	mu     sync.Mutex // one request at a time
	stderr *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc starts argv with the bootstrap in GRPC_XDS_BOOTSTRAP (a file, as users do) plus
// env, and stops it at the end of the test.
func startProc(t testing.TB, name string, boot []byte, env []string, argv ...string) *procClient {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(f, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+f), env...)
	p := &procClient{name: name, cmd: cmd, lines: make(chan string, 1), stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	var err error
	if p.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		p.in.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, tail(p.stderr.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func (p *procClient) do(ctx context.Context, r request) (reply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(r)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return reply{}, fmt.Errorf("%s: write: %w (stderr: %s)", p.name, err, tail(p.stderr.String(), 2000))
	}
	select {
	case l, ok := <-p.lines:
		if !ok {
			err := p.cmd.Wait()
			return reply{}, fmt.Errorf("%s exited: %v (stderr: %s)", p.name, err, tail(p.stderr.String(), 2000))
		}
		var rep reply
		if err := json.Unmarshal([]byte(l), &rep); err != nil {
			return reply{}, fmt.Errorf("%s: answer %q: %w", p.name, l, err)
		}
		return rep, nil
	case <-ctx.Done():
		_ = p.cmd.Process.Kill() // the answer would come after the next request
		return reply{}, fmt.Errorf("%s: no answer: %w", p.name, ctx.Err())
	}
}

// goClient is grpc-go in this process: one channel per target, all from one bootstrap.
type goClient struct {
	boot []byte
	opts []grpc.DialOption
	t    testing.TB

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newGoClient(t testing.TB, boot []byte, opts ...grpc.DialOption) *goClient {
	g := &goClient{boot: boot, opts: opts, t: t, conns: map[string]*grpc.ClientConn{}}
	t.Cleanup(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, cc := range g.conns {
			cc.Close()
		}
	})
	return g
}

func (g *goClient) conn(target string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cc, ok := g.conns[target]; ok {
		return cc, nil
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(g.boot)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithResolvers(rb),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, g.opts...)...)
	if err != nil {
		return nil, err
	}
	g.conns[target] = cc
	return cc, nil
}

func (g *goClient) do(ctx context.Context, r request) (reply, error) {
	cc, err := g.conn(r.Target)
	if err != nil {
		return reply{}, err
	}
	if r.State {
		s := cc.GetState()
		if s == connectivity.TransientFailure {
			return reply{State: "TRANSIENT_FAILURE"}, nil
		}
		return reply{State: strings.ToUpper(s.String())}, nil
	}
	c := echo.NewEchoServerClient(cc)
	rep := reply{Counts: map[string]int{}, Errors: map[string]int{}}
	name := r.Name
	if name == "" {
		name = "go"
	}
	for i := range max(r.N, 1) {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if r.Header != "" {
			v := r.Key
			if r.Distinct {
				v += fmt.Sprint(i)
			}
			callCtx = metadata.AppendToOutgoingContext(callCtx, r.Header, v)
		}
		res, err := c.SayHello(callCtx, &echo.EchoRequest{Name: name})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			s := status.Convert(err)
			rep.Errors[s.Code().String()+": "+s.Message()]++
			continue
		}
		rep.Counts[res.GetPod()]++
		if r.UntilPod != "" && res.GetPod() == r.UntilPod {
			break
		}
	}
	return rep, nil
}
