package certgen

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"
)

// CommandConfig is `spread certs`'s configuration: the Bundle to write, the CA to issue from
// (a new one, or an existing one for rotation) and the extra IPs as the command line gives
// them; CertBundle turns it into the Bundle Write takes.
type CommandConfig struct {
	Bundle
	// CAValidFor is a new CA's validity.
	CAValidFor time.Duration
	// CACert and CAKey, both or neither, name an existing CA to issue from instead.
	CACert, CAKey string
	// IPs are extra comma-separated IP addresses for the server certificates.
	IPs string
}

// DefaultCommandConfig returns `spread certs`' defaults, declared once.
func DefaultCommandConfig() CommandConfig {
	return CommandConfig{Bundle: DefaultBundle(), CAValidFor: 365 * 24 * time.Hour}
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults.
func (c *CommandConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "out", c.Dir, "folder to write ca.crt, ca.key and <service>.crt/.key into (keep it out of git)")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "Kubernetes namespace the Services' DNS names are in")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "cluster DNS domain")
	fs.DurationVar(&c.ValidFor, "valid-for", c.ValidFor, "validity of the service certificates")
	fs.DurationVar(&c.CAValidFor, "ca-valid-for", c.CAValidFor, "validity of a new CA")
	fs.StringVar(&c.CACert, "ca-cert", c.CACert, "issue from this existing CA certificate (with --ca-key) instead of creating one: rotation")
	fs.StringVar(&c.CAKey, "ca-key", c.CAKey, "private key of --ca-cert")
	fs.StringVar(&c.IPs, "ip", c.IPs, "extra comma-separated IP addresses for the server certificates (127.0.0.1 and ::1 are always in)")
}

// Validate reports c's first invalid setting, naming its flag.
func (c CommandConfig) Validate() error {
	_, err := c.CertBundle()
	return err
}

// CertBundle returns the Bundle c describes, its IPs parsed, or c's first invalid setting.
func (c CommandConfig) CertBundle() (Bundle, error) {
	b := c.Bundle
	if b.ValidFor <= 0 || c.CAValidFor <= 0 {
		return b, errors.New("--valid-for and --ca-valid-for must be positive")
	}
	if (c.CACert == "") != (c.CAKey == "") {
		return b, errors.New("--ca-cert and --ca-key go together")
	}
	b.ExtraIPs = append([]net.IP(nil), b.ExtraIPs...)
	for _, s := range strings.Split(c.IPs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return b, fmt.Errorf("--ip %q is not an IP address", s)
		}
		b.ExtraIPs = append(b.ExtraIPs, ip)
	}
	return b, nil
}
