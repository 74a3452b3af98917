package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spread-grpc/spread/internal/certgen"
)

// runCerts writes a CA and the backend, xds and frontend certificates into a folder and
// prints the kubectl commands that turn them into the Secrets the deploy manifests mount.
func runCerts(_ context.Context, args []string, e *env) error {
	fs := newFlagSet("certs", e)
	b := certgen.DefaultBundle()
	fs.StringVar(&b.Dir, "out", b.Dir, "folder to write ca.crt, ca.key and <service>.crt/.key into (keep it out of git)")
	fs.StringVar(&b.Namespace, "namespace", b.Namespace, "Kubernetes namespace the Services' DNS names are in")
	fs.StringVar(&b.ClusterDomain, "cluster-domain", b.ClusterDomain, "cluster DNS domain")
	fs.DurationVar(&b.ValidFor, "valid-for", b.ValidFor, "validity of the service certificates")
	caValid := fs.Duration("ca-valid-for", 365*24*time.Hour, "validity of a new CA")
	caCert := fs.String("ca-cert", "", "issue from this existing CA certificate (with --ca-key) instead of creating one: rotation")
	caKey := fs.String("ca-key", "", "private key of --ca-cert")
	ips := fs.String("ip", "", "extra comma-separated IP addresses for the server certificates (127.0.0.1 and ::1 are always in)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if b.ValidFor <= 0 || *caValid <= 0 {
		return usageError{errors.New("--valid-for and --ca-valid-for must be positive")}
	}
	if (*caCert == "") != (*caKey == "") {
		return usageError{errors.New("--ca-cert and --ca-key go together")}
	}
	for _, s := range strings.Split(*ips, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError{fmt.Errorf("--ip %q is not an IP address", s)}
		}
		b.ExtraIPs = append(b.ExtraIPs, ip)
	}
	var ca *certgen.CA
	var err error
	if *caCert != "" {
		if ca, err = certgen.LoadCA(*caCert, *caKey); err != nil {
			return err
		}
	} else {
		if ca, err = certgen.NewCA("spread-ca", *caValid); err != nil {
			return err
		}
		k, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(b.Dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.Dir, "ca.key"), k, 0o600); err != nil {
			return err
		}
	}
	if err := ca.Write(b); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "# wrote %s: ca.crt, backend, xds and frontend .crt/.key (keys 0600; never commit them)\n", b.Dir)
	fmt.Fprintf(e.stdout, "# create the Secrets the manifests mount (namespace first):\n")
	fmt.Fprintf(e.stdout, "kubectl create namespace %s --dry-run=client -o yaml | kubectl apply -f -\n", b.Namespace)
	for _, c := range certgen.KubectlCommands(b) {
		fmt.Fprintln(e.stdout, c)
	}
	return nil
}
