package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runCmd(args ...string) (int, string) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, args, &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	return code, out.String() + errb.String()
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage: spread"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"backend", "--grace=-1s"}, "negative"},
		{[]string{"backend", "--pod="}, "pod name is empty"},
		{[]string{"backend", "--tls-cert=x"}, "both a certificate and a key"},
		{[]string{"backend", "--nope"}, "flag provided but not defined"},
		{[]string{"backend", "extra"}, "unexpected arguments: extra"},
		{[]string{"backend", "--log-level=loud"}, "--log-level"},
		{[]string{"frontend", "--mode=x"}, "want NAME=TARGET"},
		{[]string{"frontend", "--mode=a=dns:///x:1,lb=random"}, `lb="random"`},
		{[]string{"frontend", "--mode=a=dns:///x:1,health=yes"}, `health="yes"`},
		{[]string{"frontend", "--mode=a=dns:///x:1,colour=red"}, `unknown option "colour"`},
		{[]string{"frontend", "--mode=A=dns:///x:1"}, "lowercase"},
		{[]string{"frontend", "--mode=a=dns:///x:1", "--mode=a=dns:///y:1"}, "given twice"},
		{[]string{"frontend", "--call-timeout=0s"}, "must be positive"},
		{[]string{"frontend", "--tls-ca=/nonexistent"}, "--tls-ca"},
		{[]string{"demo", "--replicas=0"}, "--replicas 0"},
		{[]string{"demo", "--replicas=1000"}, "--replicas 1000"},
		{[]string{"demo", "--first-pod-ip=banana"}, "--first-pod-ip"},
		{[]string{"demo", "--first-pod-ip=10.1.1.1"}, "loopback"},
		{[]string{"demo", "--dns-ttl=-1s"}, "--dns-ttl"},
		{[]string{"demo", "--dns-addr=8.8.8.8:53"}, "loopback"},
		{[]string{"demo", "--xds-addr=nope"}, "ip:port"},
		{[]string{"demo", "--canary-weight=101"}, "--canary-weight 101"},
		{[]string{"demo", "--clusterip-clients=201"}, "201 ClusterIP clients"},
		{[]string{"demo", "--clusterip-client-rate=51"}, "rate 51"},
		{[]string{"demo", "--clusterip-clients-for=2h"}, "ClusterIP clients for 2h"},
		{[]string{"demo", "--fair-share-interval=-1s"}, "fair-share interval"},
		{[]string{"backend", "--orca-capacity=-1"}, "must not be negative"},
		{[]string{"xds", "bootstrap"}, "server URI is required"},
		{[]string{"xds", "bootstrap", "--server=nohost"}, "want host:port"},
		{[]string{"xds", "--nope"}, "flag provided but not defined"},
	} {
		code, out := runCmd(tc.args...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("spread %v: exit %d, output %q; want exit 2 mentioning %q", tc.args, code, out, tc.want)
		}
	}
	if code, out := runCmd("backend", "-h"); code != 0 || !strings.Contains(out, "-max-connection-age") {
		t.Errorf("backend -h: exit %d %q", code, out)
	}
}

func TestListenErrorExitsOne(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, out := runCmd("backend", "--addr", l.Addr().String(), "--admin-addr=-")
	if code != 1 || !strings.Contains(out, "address already in use") {
		t.Errorf("backend on a taken address: exit %d %q", code, out)
	}
}

// buildSpread compiles the binary once per test run.
func buildSpread(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spread")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSIGTERM: each server exits 0 on SIGTERM, within its grace period.
func TestSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSpread(t)
	fe, adminFE, adminBE, adminDemo, adminDemo2 := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	for _, tc := range []struct {
		name  string
		args  []string
		ready string
	}{
		{"demo", []string{"demo", "--first-pod-ip=127.0.21.1", "--pod-port=0", "--vip=127.96.0.10:0", "--dns-addr=127.0.0.1:0", "--xds-addr=127.0.0.1:0",
			"--frontend-addr=" + fe, "--admin-addr=" + adminDemo, "--grace=5s"}, "http://" + adminDemo + "/readyz"},
		{"demo-no-xds", []string{"demo", "--first-pod-ip=127.0.23.1", "--pod-port=0", "--vip=127.96.0.10:0", "--dns-addr=127.0.0.1:0", "--xds-addr=-",
			"--frontend-addr=127.0.0.1:0", "--admin-addr=" + adminDemo2, "--grace=5s"}, "http://" + adminDemo2 + "/readyz"},
		{"backend", []string{"backend", "--addr=127.0.22.1:0", "--admin-addr=" + adminBE, "--grace=5s"}, "http://" + adminBE + "/readyz"},
		{"frontend", []string{"frontend", "--addr=127.0.0.1:0", "--admin-addr=" + adminFE, "--grace=5s",
			"--mode=headless=dns:///be-srv-lb.default.svc.cluster.local:50051", "--mode=refresh=dns+refresh:///be-srv-lb.default.svc.cluster.local:50051"}, "http://" + adminFE + "/readyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					<-exited
				}
			}()
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := http.Get(tc.ready)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never ready: %v\n%s", tc.name, err, out.String())
				}
				select {
				case err := <-exited:
					t.Fatalf("%s exited early: %v\n%s", tc.name, err, out.String())
				case <-time.After(50 * time.Millisecond): // poll interval
				}
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("%s after SIGTERM: %v\n%s", tc.name, err, out.String())
				}
			case <-time.After(5 * time.Second): // the grace period given above
				t.Fatalf("%s still running 5s (its grace) after SIGTERM\n%s", tc.name, out.String())
			}
			if tc.name == "demo" && !strings.Contains(out.String(), "curl -s http://"+fe+"/backend") {
				t.Errorf("demo intro lacks the curl lines:\n%s", out.String())
			}
		})
	}
}

func TestMainUsageListsCommands(t *testing.T) {
	_, out := runCmd("help")
	for name := range commands {
		if !strings.Contains(out, name) {
			t.Errorf("usage lacks %s", name)
		}
	}
}
