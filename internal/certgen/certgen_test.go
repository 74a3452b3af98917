package certgen

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWriteBundle(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b := Bundle{Dir: dir, Namespace: "prod", ClusterDomain: "cluster.local", ValidFor: 2 * time.Hour}
	if err := ca.Write(b); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for name, want := range map[string]struct {
		usage x509.ExtKeyUsage
		dns   string
	}{
		"backend":  {x509.ExtKeyUsageServerAuth, "be-srv-lb.prod.svc.cluster.local"},
		"xds":      {x509.ExtKeyUsageServerAuth, "spread-xds.prod.svc"},
		"frontend": {x509.ExtKeyUsageClientAuth, ""},
	} {
		c := readCert(t, filepath.Join(dir, name+".crt"))
		opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{want.usage}, DNSName: want.dns}
		if _, err := c.Verify(opts); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if c.NotAfter.After(ca.Cert.NotAfter) {
			t.Errorf("%s outlives its CA", name)
		}
		st, err := os.Stat(filepath.Join(dir, name+".key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s.key: mode %v, %v; want 0600", name, st.Mode().Perm(), err)
		}
	}
	if be := readCert(t, filepath.Join(dir, "backend.crt")); !slices.Contains(be.DNSNames, "be-srv") || len(be.IPAddresses) < 2 {
		t.Errorf("backend SANs %v %v: want be-srv and loopback IPs", be.DNSNames, be.IPAddresses)
	}
	cmds := KubectlCommands(b)
	if len(cmds) != 3 || !strings.Contains(cmds[0], "-n prod create secret generic spread-backend-tls") {
		t.Errorf("commands %q", cmds)
	}

	// Rotation: a CA loaded from files issues certificates the same roots accept.
	k, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.key"), k, 0o600)
	loaded, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := loaded.Issue(Leaf{CommonName: "x", DNSNames: []string{"x"}, Usage: ServerAuth, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(c)
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "x"}); err != nil {
		t.Errorf("certificate from the loaded CA: %v", err)
	}
	if _, err := LoadCA(filepath.Join(dir, "backend.crt"), filepath.Join(dir, "backend.key")); err == nil {
		t.Error("LoadCA accepted a leaf certificate")
	}
}
