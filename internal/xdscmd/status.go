package xdscmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spread-grpc/spread/internal/xds"
)

// StatusConfig is `spread xds status`'s configuration.
type StatusConfig struct {
	// Admin is the control plane's admin address (host:port), serving /debug/xds/clients.
	Admin string
	// JSON prints the raw JSON instead of the table.
	JSON bool
	// Timeout bounds the request.
	Timeout time.Duration
}

// DefaultStatusConfig returns the defaults RegisterFlags uses.
func DefaultStatusConfig() StatusConfig {
	return StatusConfig{Admin: "127.0.0.1:9090", Timeout: 10 * time.Second}
}

// RegisterFlags binds c's fields to flags in fs.
func (c *StatusConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Admin, "admin-addr", c.Admin, "the control plane's admin address (e.g. after kubectl port-forward deploy/spread-xds 9090)")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print JSON instead of a table")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "bound on the request")
}

// Validate checks c.
func (c *StatusConfig) Validate() error {
	if c.Admin == "" {
		return errors.New("--admin-addr is required")
	}
	if c.Timeout <= 0 {
		return errors.New("--timeout must be > 0")
	}
	return nil
}

// Status prints every client connected to the control plane at c.Admin, per resource type
// SYNCED, STALE, NACKED (with the client's error) or NOT SENT, like `istioctl proxy-status`.
func Status(ctx context.Context, w io.Writer, c StatusConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Admin+"/debug/xds/clients", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("xds status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("xds status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("xds status: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if c.JSON {
		_, err := w.Write(body)
		return err
	}
	var clients []xds.ClientSync
	if err := json.Unmarshal(body, &clients); err != nil {
		return fmt.Errorf("xds status: %w", err)
	}
	return WriteStatus(w, clients)
}

// WriteStatus prints clients as the `spread xds status` table, then each rejection's error.
func WriteStatus(w io.Writer, clients []xds.ClientSync) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tZONE\tPEER\tSTREAMS\tLDS\tRDS\tCDS\tEDS\tVERSION (EDS)")
	var nacks []string
	for _, c := range clients {
		row := []string{c.NodeID, dash(c.Zone), dash(c.Peer), fmt.Sprint(c.Streams)}
		for _, t := range []string{"listener", "route", "cluster", "endpoint"} {
			ts := c.Types[t]
			row = append(row, ts.State)
			if ts.State == xds.StateNacked {
				nacks = append(nacks, fmt.Sprintf("%s (stream %d) %s NACKED version %s: %s", c.NodeID, c.Stream, t, dash(ts.Nacked), ts.Error))
			}
		}
		row = append(row, dash(c.Types["endpoint"].Acked))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range nacks {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
