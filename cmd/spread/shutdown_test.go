package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/frontend"
)

// TestSIGTERMCutsRequestsWithAnAnswer: a frontend request longer than the grace, cut by
// SIGTERM, still answers with well-formed partial JSON marked interrupted, and the
// shutdown, clean because of it, exits 0.
func TestSIGTERMCutsRequestsWithAnAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSpread(t)
	be := echotest.Start(t, "pod-a", "zone-a")
	for _, query := range []string{"n=30&interval=1s", "n=30&interval=1s&stream=true"} {
		addr, adminAddr := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
		var out syncBuffer
		cmd := exec.Command(bin, "frontend", "--addr="+addr, "--admin-addr="+adminAddr, "--grace=4s", "--mode=a=passthrough:///"+be.Addr)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + adminAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-exited
				t.Fatalf("frontend never ready: %v\n%s", err, out.String())
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
		calls := be.Calls()
		type answer struct {
			res  frontend.Result
			body string
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			var a answer
			resp, err := http.Get("http://" + addr + "/call/a?" + query)
			if err != nil {
				a.err = err
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				a.body = string(b)
				a.err = json.Unmarshal(b, &a.res)
				if a.err == nil && resp.StatusCode != 200 {
					a.err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			got <- a
		}()
		for be.Calls() == calls { // the request is making its calls
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-exited
				t.Fatalf("%s: no call reached the backend\n%s", query, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		var a answer
		select {
		case a = <-got:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no answer 20s after SIGTERM", query)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s: exit after a clean shutdown: %v\n%s", query, err, out.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Fatalf("%s: still running 20s after SIGTERM", query)
		}
		if a.err != nil {
			t.Fatalf("%s: answer %q: %v\n%s", query, a.body, a.err, out.String())
		}
		if !a.res.Interrupted || a.res.OK < 1 || a.res.Failed < 1 || a.res.OK+a.res.Failed != 30 {
			t.Errorf("%s: answer %s; want interrupted, ok >= 1, failed >= 1, ok+failed = 30", query, a.body)
		}
	}
}

// TestUncleanShutdownExitsOne: a client holds a connection with half a request (headers
// never finished) through SIGTERM. The HTTP server's Shutdown waits for it until the
// grace runs out, then cuts it: the shutdown is not clean, and the frontend says so and
// exits 1, not 0 (the issue: "http shutdown not clean" and still exit 0).
func TestUncleanShutdownExitsOne(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSpread(t)
	be := echotest.Start(t, "pod-a", "zone-a")
	addr, adminAddr := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	var out syncBuffer
	// A 1 s grace: far below the 5 s after which net/http counts a connection that has
	// sent no whole request as idle, and the 10 s header timeout.
	cmd := exec.Command(bin, "frontend", "--addr="+addr, "--admin-addr="+adminAddr, "--grace=1s", "--mode=a=passthrough:///"+be.Addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	get := func(url string) error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for get("http://"+adminAddr+"/readyz") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("frontend never ready\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	half, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := io.WriteString(half, "GET /call/a HTTP/1.1\r\nHost: "+addr+"\r\n"); err != nil {
		t.Fatal(err)
	}
	// The server accepts connections in order: once a later connection is answered, the
	// half-open one has been accepted (it is being served, not waiting in the backlog).
	later := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := later.Get("http://" + addr + "/call/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the deferred Wait
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit after an unclean shutdown: %v, want exit status 1\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "not clean") {
			t.Errorf("the log does not say the shutdown was not clean:\n%s", out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM\n%s", out.String())
	}
}
