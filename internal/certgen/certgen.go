// Package certgen creates a private certificate authority and the certificates Spread's
// services use for TLS and mTLS: a backend and an xDS server certificate (server auth, with
// the Kubernetes DNS names of their Services) and a frontend client certificate. It writes
// them as PEM files that internal/tlsfiles reads and Kubernetes Secrets can hold.
package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that issues leaf certificates.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	now     func() time.Time
}

// Option configures NewCA and LoadCA.
type Option func(*CA)

// WithClock replaces time.Now for validity periods (tests).
func WithClock(now func() time.Time) Option { return func(c *CA) { c.now = now } }

// NewCA creates a self-signed CA valid for validFor.
func NewCA(commonName string, validFor time.Duration, opts ...Option) (*CA, error) {
	ca := &CA{now: time.Now}
	for _, o := range opts {
		o(ca)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"spread"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA certificate: %w", err)
	}
	ca.Cert, _ = x509.ParseCertificate(der)
	ca.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	ca.key = key
	return ca, nil
}

// LoadCA reads a CA certificate and its key from PEM files (to issue more certificates from
// an existing CA, for example to rotate a service's certificate).
func LoadCA(certFile, keyFile string, opts ...Option) (*CA, error) {
	ca := &CA{now: time.Now}
	for _, o := range opts {
		o(ca)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("certgen: %s or %s is not PEM", certFile, keyFile)
	}
	if ca.Cert, err = x509.ParseCertificate(cb.Bytes); err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", certFile, err)
	}
	if !ca.Cert.IsCA {
		return nil, fmt.Errorf("certgen: %s is not a CA certificate", certFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certgen: %s: not a signing key", keyFile)
	}
	ca.key, ca.CertPEM = signer, certPEM
	return ca, nil
}

// KeyPEM returns the CA's private key as PKCS#8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.key) }

// Usage says what a leaf certificate may be used for.
type Usage int

// Usages of leaf certificates; combine with |.
const (
	ServerAuth Usage = 1 << iota
	ClientAuth
)

// Leaf describes one certificate to issue.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Usage      Usage
	ValidFor   time.Duration
}

// Issue creates a key and a certificate for l, signed by the CA, as PEM.
func (ca *CA) Issue(l Leaf) (certPEM, keyPEMBytes []byte, err error) {
	if l.Usage == 0 {
		return nil, nil, errors.New("certgen: leaf without a usage")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certgen: key for %s: %w", l.CommonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := ca.now()
	notAfter := now.Add(l.ValidFor)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.CommonName, Organization: []string{"spread"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	if l.Usage&ServerAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Usage&ClientAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certgen: certificate for %s: %w", l.CommonName, err)
	}
	k, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), k, nil
}

// ServiceDNSNames lists the names a client may use for a Kubernetes Service: the short name,
// name.namespace, name.namespace.svc and the fully qualified name.
func ServiceDNSNames(service, namespace, clusterDomain string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc." + clusterDomain,
	}
}

// Service is one of Spread's services that gets a certificate.
type Service struct {
	// Name is the file prefix and common name: backend, frontend, xds.
	Name string
	// Services are the Kubernetes Services whose DNS names go in the certificate.
	Services []string
	Usage    Usage
}

// Services lists the certificates `spread certs` writes: the backends serve be-srv and
// be-srv-lb (and the xDS-announced name be-srv), the xDS control plane serves spread-xds,
// the frontend is a client of both.
func Services() []Service {
	return []Service{
		{Name: "backend", Services: []string{"be-srv", "be-srv-lb"}, Usage: ServerAuth},
		{Name: "xds", Services: []string{"spread-xds"}, Usage: ServerAuth},
		{Name: "frontend", Services: []string{"fe-srv"}, Usage: ClientAuth},
	}
}

// Bundle describes a folder of certificates for one namespace.
type Bundle struct {
	Dir, Namespace, ClusterDomain string
	ValidFor                      time.Duration
	// ExtraIPs go into every server certificate besides 127.0.0.1 and ::1.
	ExtraIPs []net.IP
}

// DefaultBundle is the Bundle `spread certs` writes unless told otherwise, declared once: its
// flags show it. Every field is needed; Write gives none a default.
func DefaultBundle() Bundle {
	return Bundle{Dir: "certs", Namespace: "spread", ClusterDomain: "cluster.local", ValidFor: 90 * 24 * time.Hour}
}

// Write issues a certificate and key for each of Services into b.Dir as <name>.crt and
// <name>.key, and writes ca.crt. Keys are written 0600.
func (ca *CA) Write(b Bundle) error {
	if err := os.MkdirAll(b.Dir, 0o700); err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	for _, s := range Services() {
		l := Leaf{CommonName: s.Name, Usage: s.Usage, ValidFor: b.ValidFor}
		if s.Usage&ServerAuth != 0 {
			for _, svc := range s.Services {
				l.DNSNames = append(l.DNSNames, ServiceDNSNames(svc, b.Namespace, b.ClusterDomain)...)
			}
			l.DNSNames = append(l.DNSNames, "localhost")
			l.IPs = append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, b.ExtraIPs...)
		}
		c, k, err := ca.Issue(l)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.Dir, s.Name+".crt"), c, 0o644); err != nil {
			return fmt.Errorf("certgen: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.Dir, s.Name+".key"), k, 0o600); err != nil {
			return fmt.Errorf("certgen: %w", err)
		}
	}
	return nil
}

// SecretName is the Kubernetes Secret the deploy manifests mount for a service.
func SecretName(service string) string { return "spread-" + service + "-tls" }

// KubectlCommands returns the commands that create one Secret per service from a Bundle's
// folder (keys tls.crt, tls.key, ca.crt, as the manifests mount them).
func KubectlCommands(b Bundle) []string {
	cmds := make([]string, 0, 3)
	for _, s := range Services() {
		cmds = append(cmds, fmt.Sprintf("kubectl -n %s create secret generic %s --from-file=tls.crt=%s --from-file=tls.key=%s --from-file=ca.crt=%s",
			b.Namespace, SecretName(s.Name),
			filepath.Join(b.Dir, s.Name+".crt"), filepath.Join(b.Dir, s.Name+".key"), filepath.Join(b.Dir, "ca.crt")))
	}
	return cmds
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("certgen: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certgen: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
