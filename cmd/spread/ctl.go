package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const ctlUsage = `spread ctl [--admin URL] <verb> [args]: control a running 'spread demo'

  state                  show pods, endpoints and rollout (JSON)
  scale N                scale the backend Deployment to N pods
  rollout                rolling restart (maxSurge 1, maxUnavailable 0)
  kill POD|random        kill a pod hard: connections reset, the container restarts
  delete POD|random      delete a pod gracefully (drains; replaced at once)
  freeze POD|random      SIGSTOP-like: accepts TCP, answers nothing
  thaw POD|random        undo freeze
  slow POD|random DELAY  add DELAY (e.g. 200ms; 0 restores) to every call of the pod`

func runCtl(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("ctl", e)
	adminURL := fs.String("admin", "http://127.0.0.1:9081", "the demo's admin URL")
	fs.Usage = func() { fmt.Fprintln(e.stderr, ctlUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError{errors.New("missing verb (state, scale, rollout, kill, delete, freeze, thaw, slow)")}
	}
	base, err := url.Parse(*adminURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usageError{fmt.Errorf("--admin %q: want an http URL like http://127.0.0.1:9081", *adminURL)}
	}
	verb, rest := rest[0], rest[1:]
	method, path := http.MethodPost, ""
	want := func(n int, what string) error {
		if len(rest) != n {
			return usageError{fmt.Errorf("%s: want %s", verb, what)}
		}
		return nil
	}
	switch verb {
	case "state":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		method, path = http.MethodGet, "/cluster"
	case "scale":
		if err := want(1, "N"); err != nil {
			return err
		}
		if _, err := strconv.Atoi(rest[0]); err != nil {
			return usageError{fmt.Errorf("scale %q: want a whole number", rest[0])}
		}
		path = "/cluster/scale?replicas=" + url.QueryEscape(rest[0])
	case "rollout":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		path = "/cluster/rollout"
	case "kill", "delete", "freeze", "thaw":
		if err := want(1, "POD or random"); err != nil {
			return err
		}
		path = "/cluster/pods/" + url.PathEscape(rest[0]) + "/" + verb
	case "slow":
		if err := want(2, "POD|random DELAY"); err != nil {
			return err
		}
		if _, err := time.ParseDuration(rest[1]); err != nil {
			return usageError{fmt.Errorf("slow: delay %q: want a duration like 200ms", rest[1])}
		}
		path = "/cluster/pods/" + url.PathEscape(rest[0]) + "/slow?delay=" + url.QueryEscape(rest[1])
	default:
		return usageError{fmt.Errorf("unknown verb %q\n%s", verb, ctlUsage)}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base.String(), "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is 'spread demo' running? %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = e.stdout.Write(body)
	return err
}
