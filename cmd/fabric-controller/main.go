// Command fabric-controller is the fabric's central controller: it keeps the
// inventory in a bbolt file under --state-dir and serves the gRPC API on
// --listen. Flags live here; everything else is in controlplane/server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/metalfabric/fabric/cmd/internal/flagfile"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	"github.com/metalfabric/fabric/systemd"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fabric-controller:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen   = flag.String("listen", ":50051", "gRPC listen address")
		stateDir = flag.String("state-dir", "/var/lib/fabric-controller", "directory of the state file controller.db (created if missing)")
		vniRange = flag.String("vni-range", ipam.DefaultVNIRange.String(), "VNI pool for networks, first-last")
		asnRange = flag.String("asn-range", ipam.DefaultASNRange.String(), "ASN pool for switches (one AS per device, kept for its life), first-last")
		alive    = flag.Duration("liveness-alive", server.DefaultLivenessAlive, "a machine whose newest LLDP frame is at most this old is alive")
		dead     = flag.Duration("liveness-dead", server.DefaultLivenessDead, "a machine not seen by LLDP for longer than this is dead (unknown in between)")
		loopPool = flag.String("loopback-pool", inventory.DefaultLoopbackPool.String(), "prefix device loopbacks (router id, VTEP) are allocated from")
		logLevel = flag.String("log-level", "info", "log level: debug, info, warn, error")
		config   = flag.String("config", "", "YAML file of these settings (keys are the flag names; flags given here win)")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	if *config != "" {
		if err := flagfile.Load(flag.CommandLine, *config); err != nil {
			return err
		}
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	vnis, err := ipam.ParseVNIRange(*vniRange)
	if err != nil {
		return fmt.Errorf("--vni-range: %w", err)
	}
	asns, err := ipam.ParseASNRange(*asnRange)
	if err != nil {
		return fmt.Errorf("--asn-range: %w", err)
	}
	loopbacks, err := ipam.ParsePrefix(*loopPool)
	if err != nil {
		return fmt.Errorf("--loopback-pool: %w", err)
	}
	if err := os.MkdirAll(*stateDir, 0o750); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	st, err := bolt.Open(filepath.Join(*stateDir, "controller.db"))
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "error", err)
		}
	}()

	srv, err := server.New(st, server.WithVNIRange(vnis), server.WithASNRange(asns), server.WithLoopbackPool(loopbacks),
		server.WithLiveness(*alive, *dead), server.WithLogger(log))
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("starting", "state_dir", *stateDir, "vni_range", vnis.String(), "asn_range", asns.String(), "listen", lis.Addr().String())

	// systemd: ready once the listener is bound (connections queue until
	// Run accepts them); the watchdog pings while the store answers.
	notify := systemd.NewNotifier()
	wd := notify.Watchdog(systemd.WithLogger(log), systemd.WithCheck(func() error {
		return st.View(ctx, func(store.Tx) error { return nil })
	}))
	go wd.Run(ctx)
	if err := notify.Ready(); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	_ = notify.Status("serving on " + lis.Addr().String())
	err = srv.Run(ctx, lis)
	_ = notify.Stopping()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
