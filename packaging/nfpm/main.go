// Command nfpm-deb is nfpm (github.com/goreleaser/nfpm/v2, the pinned
// version in go.mod) reduced to its deb packager: `nfpm-deb -f CONFIG -t
// OUT.deb`. scripts/deb.sh falls back to it when the full nfpm command
// cannot be built (v2.48.0's rpm and msix packagers depend on
// go.digitalxero.dev modules that the Go module proxy refuses to serve).
// It reads the same nfpm.yaml files and builds the same .deb, as the same
// library code does the work.
//
// It is its own module so that nfpm stays out of the project's go.mod.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "nfpm-deb: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	config := flag.String("f", "nfpm.yaml", "nfpm config file")
	target := flag.String("t", "", "output .deb file")
	flag.Parse()
	if *target == "" || flag.NArg() > 0 {
		return fmt.Errorf("usage: nfpm-deb -f CONFIG -t OUT.deb")
	}
	cfg, err := nfpm.ParseFile(*config)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", *config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return fmt.Errorf("config for deb: %w", err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return fmt.Errorf("validating %s: %w", *config, err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return fmt.Errorf("deb packager: %w", err)
	}
	f, err := os.Create(*target)
	if err != nil {
		return fmt.Errorf("creating package: %w", err)
	}
	info.Target = *target
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(*target)
		return fmt.Errorf("packaging %s: %w", info.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", *target, err)
	}
	fmt.Printf("nfpm-deb: created package %s\n", *target)
	return nil
}
