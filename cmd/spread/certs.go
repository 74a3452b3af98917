package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spread-grpc/spread/internal/certgen"
)

// runCerts writes a CA and the backend, xds and frontend certificates into a folder and
// prints the kubectl commands that turn them into the Secrets the deploy manifests mount.
func runCerts(_ context.Context, args []string, e *env) error {
	fs := newFlagSet("certs", e)
	c := certgen.DefaultCommandConfig()
	c.RegisterFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	b, err := c.CertBundle()
	if err != nil {
		return usageError{err}
	}
	var ca *certgen.CA
	if c.CACert != "" {
		if ca, err = certgen.LoadCA(c.CACert, c.CAKey); err != nil {
			return err
		}
	} else {
		if ca, err = certgen.NewCA("spread-ca", c.CAValidFor); err != nil {
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
