package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
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
