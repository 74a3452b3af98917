// Package flagalias keeps a renamed command-line flag working under its old name for a
// release: the old name shares the new flag's value (and so its default, declared once), and
// its -h line says it is deprecated and names the replacement.
package flagalias

import (
	"flag"
	"fmt"
	"strings"
)

// Marker starts the usage of every deprecated alias, so that tools and tests can tell them.
const Marker = "deprecated"

// Deprecated registers old as an alias of the already registered flag current. It panics if
// current is not registered (a programming error, as flag's own duplicate check).
func Deprecated(fs *flag.FlagSet, old, current string) {
	f := fs.Lookup(current)
	if f == nil {
		panic(fmt.Sprintf("flagalias: --%s is not registered", current))
	}
	fs.Var(f.Value, old, fmt.Sprintf("%s: use --%s (the old name works for one more release)", Marker, current))
}

// Target returns the flag a deprecated alias names, from its usage, and whether usage is a
// deprecated alias's.
func Target(usage string) (string, bool) {
	rest, ok := strings.CutPrefix(usage, Marker+": use --")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, " ")
	return name, true
}

// Used lists the deprecated aliases set on the command line (call after Parse), for a
// warning.
func Used(fs *flag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if _, ok := Target(f.Usage); ok {
			out = append(out, f.Name)
		}
	})
	return out
}
