// Package tlsfiles provides TLS configurations whose certificate, key and CA bundle are PEM
// files that are re-read when they change, so a rotated certificate (a renewed Kubernetes
// Secret, cert-manager, `spread certs` run again) is used by the next handshake without a
// restart. Files are checked on a handshake at most once per check interval; a change that
// does not load (a half-written file, a key that does not match) keeps the previous material,
// is logged and counted, and is retried at the next check.
//
// Peers are verified against the CA bundle by the package itself (not by crypto/tls), so the
// bundle can change too, and so every refused handshake is counted in
// spread_tls_handshake_errors_total and logged with the reason: a server given a CA requires
// and verifies client certificates (mTLS).
package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCheckInterval is how often, at most, handshakes look for changed files.
const DefaultCheckInterval = 2 * time.Second

// Files names the PEM files of one side of a connection.
type Files struct {
	// Cert and Key are this side's certificate chain and private key: required on a server,
	// optional on a client (then it has no client certificate and cannot do mTLS).
	Cert, Key string
	// CA is the bundle that verifies the peer: required on a client; on a server it turns on
	// mTLS (client certificates are required and verified against it).
	CA string
}

// Option configures a Store.
type Option func(*options)

type options struct {
	name       string
	log        *slog.Logger
	registerer prometheus.Registerer
	interval   time.Duration
	now        func() time.Time
}

// WithName names the Store in logs and in the metrics' name label (default "tls").
func WithName(n string) Option { return func(o *options) { o.name = n } }

// WithLogger sets the logger for reloads and refused handshakes (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the metrics with r. Several Stores may share one Registerer; they
// are told apart by their name.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithCheckInterval sets how often, at most, a handshake checks the files (default
// DefaultCheckInterval; 0 checks on every handshake).
func WithCheckInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithClock replaces time.Now (for tests: check intervals and certificate validity).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// material is one loaded generation of the files. It is never mutated once published.
type material struct {
	certPEM, keyPEM, caPEM []byte
	cert                   *tls.Certificate // nil without Cert/Key
	pool                   *x509.CertPool   // nil without CA
}

// Store holds the current certificate and CA pool and hands out tls.Configs that use them.
// It is safe for concurrent use.
type Store struct {
	files   Files
	o       options
	metrics *metrics

	mu        sync.Mutex
	cur       *material
	lastCheck time.Time
}

// New loads the files once and returns a Store; it fails if they do not load.
func New(files Files, opts ...Option) (*Store, error) {
	o := options{name: "tls", log: slog.New(slog.DiscardHandler), interval: DefaultCheckInterval, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if (files.Cert == "") != (files.Key == "") {
		return nil, fmt.Errorf("tlsfiles %s: a certificate needs both a cert and a key file", o.name)
	}
	if files.Cert == "" && files.CA == "" {
		return nil, fmt.Errorf("tlsfiles %s: no files given", o.name)
	}
	m, err := newMetrics(o.registerer, o.name)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles %s: metrics: %w", o.name, err)
	}
	s := &Store{files: files, o: o, metrics: m}
	mat, err := s.load(nil)
	if err != nil {
		m.reloads.WithLabelValues(o.name, "error").Inc()
		return nil, err
	}
	s.publish(mat)
	s.lastCheck = o.now()
	return s, nil
}

// Files returns the file names the Store reads.
func (s *Store) Files() Files { return s.files }

// ServerConfig returns a server-side configuration: the current certificate on every
// handshake and, when the Store has a CA, mTLS (a client certificate is required and verified
// against the current bundle).
func (s *Store) ServerConfig() (*tls.Config, error) {
	if s.files.Cert == "" {
		return nil, fmt.Errorf("tlsfiles %s: a server needs a certificate and key", s.o.name)
	}
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.material().cert, nil
		},
	}
	if s.files.CA != "" {
		// RequestClientCert, not RequireAndVerifyClientCert: verifyPeer does the checks against
		// the current bundle, so that a missing certificate is refused, counted and logged too.
		c.ClientAuth = tls.RequestClientCert
		c.VerifyConnection = func(cs tls.ConnectionState) error { return s.verifyPeer(cs, true) }
	}
	return c, nil
}

// ClientConfig returns a client-side configuration verifying servers against the current CA
// bundle (the server name is the one the handshake sends: tls.Config.ServerName, which gRPC
// fills from the target's authority unless set), and presenting the current certificate when
// the Store has one and the server asks for it.
func (s *Store) ClientConfig(serverName string) (*tls.Config, error) {
	if s.files.CA == "" {
		return nil, fmt.Errorf("tlsfiles %s: a client needs a CA file to verify servers", s.o.name)
	}
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// The built-in verification reads a fixed RootCAs pool; verifyPeer reads the current one.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   func(cs tls.ConnectionState) error { return s.verifyPeer(cs, false) },
	}
	if s.files.Cert != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.material().cert, nil
		}
	}
	return c, nil
}

// Reload re-reads the files now. On error the previous material stays in use.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastCheck = s.o.now()
	return s.reloadLocked()
}

// material returns the current material, first re-reading the files if the check interval
// has passed.
func (s *Store) material() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.o.now(); now.Sub(s.lastCheck) >= s.o.interval {
		s.lastCheck = now
		_ = s.reloadLocked() // logged and counted; the previous material stays
	}
	return s.cur
}

func (s *Store) reloadLocked() error {
	mat, err := s.load(s.cur)
	switch {
	case err != nil:
		s.metrics.reloads.WithLabelValues(s.o.name, "error").Inc()
		s.o.log.Error("TLS files changed but do not load; keeping the previous ones", "tls", s.o.name, "err", err)
		return err
	case mat == s.cur:
		return nil // unchanged
	}
	s.publish(mat)
	s.metrics.reloads.WithLabelValues(s.o.name, "success").Inc()
	attrs := []any{"tls", s.o.name}
	if mat.cert != nil && mat.cert.Leaf != nil {
		attrs = append(attrs, "subject", mat.cert.Leaf.Subject.String(), "serial", mat.cert.Leaf.SerialNumber.String(), "not_after", mat.cert.Leaf.NotAfter)
	}
	s.o.log.Info("TLS files reloaded", attrs...)
	return nil
}

// load reads the files; it returns prev itself when their contents have not changed.
func (s *Store) load(prev *material) (*material, error) {
	m := &material{}
	var err error
	read := func(path string) []byte {
		if path == "" || err != nil {
			return nil
		}
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			err = fmt.Errorf("tlsfiles %s: %w", s.o.name, err)
		}
		return b
	}
	m.certPEM, m.keyPEM, m.caPEM = read(s.files.Cert), read(s.files.Key), read(s.files.CA)
	if err != nil {
		return nil, err
	}
	if prev != nil && bytes.Equal(prev.certPEM, m.certPEM) && bytes.Equal(prev.keyPEM, m.keyPEM) && bytes.Equal(prev.caPEM, m.caPEM) {
		return prev, nil
	}
	if s.files.Cert != "" {
		cert, err := tls.X509KeyPair(m.certPEM, m.keyPEM)
		if err != nil {
			return nil, fmt.Errorf("tlsfiles %s: key pair %s, %s: %w", s.o.name, s.files.Cert, s.files.Key, err)
		}
		if cert.Leaf == nil {
			if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("tlsfiles %s: %s: %w", s.o.name, s.files.Cert, err)
			}
		}
		m.cert = &cert
	}
	if s.files.CA != "" {
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(m.caPEM) {
			return nil, fmt.Errorf("tlsfiles %s: CA file %s holds no PEM certificate", s.o.name, s.files.CA)
		}
	}
	return m, nil
}

func (s *Store) publish(m *material) {
	s.cur = m
	if m.cert != nil && m.cert.Leaf != nil {
		s.metrics.expiry.WithLabelValues(s.o.name).Set(float64(m.cert.Leaf.NotAfter.Unix()))
	}
}

// verifyPeer checks the peer's chain against the current CA bundle: on a server, a client
// certificate for client auth; on a client, a server certificate for the name it dialled.
func (s *Store) verifyPeer(cs tls.ConnectionState, isServer bool) error {
	m := s.material()
	peer := "server"
	if isServer {
		peer = "client"
	}
	if len(cs.PeerCertificates) == 0 {
		return s.refuse("no_certificate", fmt.Errorf("tlsfiles %s: %s presented no certificate (mTLS requires one signed by the CA in %s)", s.o.name, peer, s.files.CA))
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: m.pool, Intermediates: x509.NewCertPool(), CurrentTime: s.o.now()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if isServer {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		opts.DNSName = cs.ServerName
	}
	if _, err := leaf.Verify(opts); err != nil {
		return s.refuse(reason(err), fmt.Errorf("tlsfiles %s: %s certificate %q (issuer %q) refused, checked against CA file %s: %w",
			s.o.name, peer, leaf.Subject.String(), leaf.Issuer.String(), s.files.CA, err))
	}
	return nil
}

func (s *Store) refuse(reason string, err error) error {
	s.metrics.handshakeErrors.WithLabelValues(s.o.name, reason).Inc()
	s.o.log.Warn("TLS handshake refused", "tls", s.o.name, "reason", reason, "err", err)
	return err
}

// reason classifies a verification error for the metrics' reason label.
func reason(err error) string {
	var ua x509.UnknownAuthorityError
	var inv x509.CertificateInvalidError
	var host x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return "unknown_authority"
	case errors.As(err, &host):
		return "name_mismatch"
	case errors.As(err, &inv):
		switch inv.Reason {
		case x509.Expired:
			return "expired"
		case x509.IncompatibleUsage:
			return "wrong_usage"
		}
	}
	return "invalid"
}
