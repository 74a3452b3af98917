package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// BootstrapConfig describes a grpc-go xDS client's bootstrap.
type BootstrapConfig struct {
	// ServerURI is the control plane's address, host:port (required).
	ServerURI string
	// FallbackURIs are further control planes, host:port, listed after ServerURI in
	// xds_servers (gRFC A71). A client uses a later server only while every earlier one is
	// unreachable and it lacks a resource it watches (with its resources cached it keeps
	// them and retries the first), and returns to the first server when that one answers.
	// Each entry carries its own copy of the channel credentials and server features.
	FallbackURIs []string
	// NodeID identifies the client (default "spread-client").
	NodeID string
	// Zone is the client's zone, sent as its node locality: with zone preference on, the
	// control plane prefers endpoints in this zone.
	Zone string
	// CAFile switches the control-plane connection from plaintext ("insecure" channel
	// credentials) to TLS ("tls"), trusting the CA certificates in this PEM file.
	CAFile string
	// CertFile and KeyFile add a client certificate (mTLS); they need CAFile.
	CertFile, KeyFile string
	// KeepResourcesOnDeletion adds the "ignore_resource_deletion" server feature: the client
	// keeps using a Listener or Cluster the control plane stops sending, instead of failing
	// its calls (protects clients from a control-plane mistake; a deleted Service is then
	// only forgotten when the client restarts).
	KeepResourcesOnDeletion bool
}

type bootstrapJSON struct {
	XDSServers []bootstrapServer `json:"xds_servers"`
	Node       bootstrapNode     `json:"node"`
}

type bootstrapServer struct {
	ServerURI      string           `json:"server_uri"`
	ChannelCreds   []map[string]any `json:"channel_creds"`
	ServerFeatures []string         `json:"server_features"`
}

// bootstrapNode is A27's "node": id, and locality always present. grpc-js-xds refuses a
// bootstrap whose node has no "locality" ("locality field missing in node element"); an
// empty object is accepted by every client and means "no zone".
type bootstrapNode struct {
	ID       string            `json:"id"`
	Locality bootstrapLocality `json:"locality"`
}

type bootstrapLocality struct {
	Zone string `json:"zone,omitempty"`
}

// Bootstrap renders the bootstrap JSON (gRFC A27) an xDS client reads: grpc-go, grpc-js-xds
// and C-core take it unmodified. grpc-go reads it (from the file named by
// GRPC_XDS_BOOTSTRAP, the contents in GRPC_XDS_BOOTSTRAP_CONFIG, or passed to
// google.golang.org/grpc/xds.NewXDSResolverWithConfigForTesting).
func Bootstrap(c BootstrapConfig) ([]byte, error) {
	if c.ServerURI == "" {
		return nil, errors.New("xds bootstrap: server URI is required")
	}
	uris := append([]string{c.ServerURI}, c.FallbackURIs...)
	for i, u := range uris {
		if err := checkServerURI(u); err != nil {
			return nil, fmt.Errorf("xds bootstrap: server URI %q: want host:port or a gRPC target ending in it (dns://[dns-server]/host:port): %w", u, err)
		}
		if slices.Index(uris, u) != i {
			return nil, fmt.Errorf("xds bootstrap: server URI %q listed twice", u)
		}
	}
	if c.NodeID == "" {
		c.NodeID = "spread-client"
	}
	creds := map[string]any{"type": "insecure"}
	if (c.CertFile != "") != (c.KeyFile != "") || c.CertFile != "" && c.CAFile == "" {
		return nil, errors.New("xds bootstrap: a client certificate needs both cert and key files, and a CA file")
	}
	if c.CAFile != "" {
		tc := map[string]string{"ca_certificate_file": c.CAFile}
		if c.CertFile != "" {
			tc["certificate_file"], tc["private_key_file"] = c.CertFile, c.KeyFile
		}
		creds = map[string]any{"type": "tls", "config": tc}
	}
	features := []string{"xds_v3"}
	if c.KeepResourcesOnDeletion {
		features = append(features, "ignore_resource_deletion")
	}
	b := bootstrapJSON{
		Node: bootstrapNode{ID: c.NodeID},
	}
	for _, u := range uris {
		b.XDSServers = append(b.XDSServers, bootstrapServer{ServerURI: u, ChannelCreds: []map[string]any{creds}, ServerFeatures: slices.Clone(features)})
	}
	b.Node.Locality.Zone = c.Zone
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("xds bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// checkServerURI accepts host:port, or a gRPC target URI whose endpoint is host:port (the
// server_uri of gRFC A27 is a target, e.g. dns://10.0.0.10:53/xds.example:18000).
func checkServerURI(u string) error {
	// A target is ASCII (DNS names are, IDNs as punycode): anything else, invalid UTF-8
	// among it, could not be written into the bootstrap as given.
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] >= 0x7f {
			return fmt.Errorf("%q: want printable ASCII (an IP address or a DNS name and a port)", u)
		}
	}
	hp := u
	if _, rest, ok := strings.Cut(u, "://"); ok {
		_, ep, ok := strings.Cut(rest, "/")
		if !ok {
			return errors.New("target without an endpoint")
		}
		hp = ep
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n/?#@") {
		return fmt.Errorf("host %q: want an IP address or a DNS name", host)
	}
	return nil
}
