package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/metalfabric/fabric/bgp/fib"
	"github.com/metalfabric/fabric/fabric"
)

// Decommissioning: Cleanup removes everything the agent created on the
// device, in an order that never leaves a route pointing at a deleted
// device: the routes (and EVPN neighbour/FDB entries) first, then the
// firewall table, then the links and addresses, and last the cached config,
// so a later start does not re-apply it. Each step relies on its package's
// own notion of what is ours (route protocol 200, the nftables table, the
// link marker and the address label), so nothing the agent did not create
// is touched. The agent must not be running meanwhile: it would put it all
// back.

// CleanupFIB is the part of a *fib.Programmer Cleanup uses.
type CleanupFIB interface {
	// Sync with no routes and no remotes removes every route of ours.
	Sync(ctx context.Context, routes []fib.Route, remotes []fib.Remote) (fib.Result, error)
	// Apply of an empty batch only reads the kernel (for the dry run).
	Apply(ctx context.Context, b fib.Batch) (fib.Result, error)
	Installed() []fib.Route
}

// CleanupFirewall is the part of a *nft.Firewall Cleanup uses.
type CleanupFirewall interface {
	// Delete removes the firewall's table, if it exists.
	Delete(ctx context.Context) error
}

// CleanupConfig says what Cleanup works on. Each Open function is called
// when its step runs; nil skips the step, an error fails it (the other steps
// still run).
type CleanupConfig struct {
	OpenFIB      func() (CleanupFIB, error)
	OpenFirewall func() (CleanupFirewall, error)
	// FirewallTable names the firewall's table in the output.
	FirewallTable string
	OpenKernel    func() (fabric.Kernel, error)
	// StateDir and Hostname locate the last-known-good cache (see
	// WithStateDir); StateDir "" skips the step, Hostname "" is the OS
	// hostname.
	StateDir string
	Hostname string
	// DryRun reports what would be removed and changes nothing.
	DryRun bool
	// Out gets one line per step.
	Out io.Writer
}

// Cleanup removes what the agent created: our FIB routes and EVPN
// neighbour/FDB entries, the firewall table, the marked links and the
// addresses the agent added (ports are released from marked masters but
// otherwise keep their settings), and the cached config. A failed step does
// not stop the others; the error joins every failure. IPv6 addresses the
// agent added to links it did not create cannot be recognised after the
// agent stopped (see package fabric) and are left.
func Cleanup(ctx context.Context, cfg CleanupConfig) error {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	var errs []error
	step := func(name string, run func() (string, error)) {
		msg, err := run()
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			errs = append(errs, err)
			if msg != "" {
				fmt.Fprintf(out, "%s: %s; FAILED: %v\n", name, msg, err)
			} else {
				fmt.Fprintf(out, "%s: FAILED: %v\n", name, err)
			}
			return
		}
		fmt.Fprintf(out, "%s: %s\n", name, msg)
	}
	step("routes", func() (string, error) { return cleanupFIB(ctx, cfg) })
	step("firewall", func() (string, error) { return cleanupFirewall(ctx, cfg) })
	step("links and addresses", func() (string, error) { return cleanupFabric(ctx, cfg) })
	step("cached config", func() (string, error) { return cleanupCache(cfg) })
	return errors.Join(errs...)
}

func cleanupFIB(ctx context.Context, cfg CleanupConfig) (string, error) {
	if cfg.OpenFIB == nil {
		return "skipped", nil
	}
	p, err := cfg.OpenFIB()
	if err != nil {
		return "", fmt.Errorf("opening the FIB: %w", err)
	}
	if cfg.DryRun {
		if _, err := p.Apply(ctx, fib.Batch{}); err != nil {
			return "", fmt.Errorf("reading the kernel's routes: %w", err)
		}
		return fmt.Sprintf("would remove %d route(s) of protocol %d and their neighbour/FDB entries", len(p.Installed()), fib.Protocol), nil
	}
	res, err := p.Sync(ctx, nil, nil)
	msg := fmt.Sprintf("removed %d route(s) of protocol %d and %d neighbour/FDB entries", res.Deleted, fib.Protocol, res.RemotesDeleted)
	if err != nil && !errors.Is(err, fib.ErrSomeFailed) {
		msg = "" // reading the kernel failed: nothing was changed
	}
	return msg, err
}

func cleanupFirewall(ctx context.Context, cfg CleanupConfig) (string, error) {
	if cfg.OpenFirewall == nil {
		return "skipped", nil
	}
	table := "inet " + cfg.FirewallTable
	if cfg.DryRun {
		return "would delete table " + table + " if it exists", nil
	}
	f, err := cfg.OpenFirewall()
	if err != nil {
		return "", fmt.Errorf("opening nftables: %w", err)
	}
	if err := f.Delete(ctx); err != nil {
		return "", err
	}
	return "deleted table " + table + " (if it existed)", nil
}

func cleanupFabric(ctx context.Context, cfg CleanupConfig) (string, error) {
	if cfg.OpenKernel == nil {
		return "skipped", nil
	}
	k, err := cfg.OpenKernel()
	if err != nil {
		return "", fmt.Errorf("opening netlink: %w", err)
	}
	r := fabric.NewReconciler(k, fabric.WithLogger(slog.New(slog.DiscardHandler)))
	if cfg.DryRun {
		changes, err := r.Plan(ctx, fabric.Desired{})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("would make %d change(s)%s", len(changes), listChanges(changes)), nil
	}
	res, err := r.Apply(ctx, fabric.Desired{})
	msg := fmt.Sprintf("made %d change(s)%s", len(res.Applied), listChanges(res.Applied))
	if len(res.Skipped) > 0 {
		msg += fmt.Sprintf("; %d skipped", len(res.Skipped))
	}
	return msg, err
}

func listChanges(cs []fabric.Change) string {
	if len(cs) == 0 {
		return ""
	}
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return ": " + strings.Join(s, ", ")
}

// cacheFile is the last-known-good cache WithStateDir uses.
func cacheFile(dir, hostname string) string {
	return filepath.Join(dir, "last-applied-"+hostname+".pb")
}

func cleanupCache(cfg CleanupConfig) (string, error) {
	if cfg.StateDir == "" {
		return "skipped (no state dir)", nil
	}
	host := cfg.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("reading hostname: %w", err)
		}
		host = h
	}
	path := cacheFile(cfg.StateDir, host)
	// Temporary files of an interrupted write go too.
	tmps, _ := filepath.Glob(filepath.Join(cfg.StateDir, filepath.Base(path)+".tmp-*"))
	var found []string
	if _, err := os.Lstat(path); err == nil {
		found = append(found, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	found = append(found, tmps...)
	if len(found) == 0 {
		return "nothing to remove (no " + path + ")", nil
	}
	if cfg.DryRun {
		return "would remove " + strings.Join(found, ", "), nil
	}
	var removed []string
	var errs []error
	for _, f := range found {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, f)
	}
	msg := "removed " + strings.Join(removed, ", ")
	if len(removed) == 0 {
		msg = ""
	}
	return msg, errors.Join(errs...)
}
