// Command fabric-controller is the fabric's central controller: it keeps the
// inventory in a bbolt file under --state-dir (--store bolt, the default) or
// under --etcd-prefix of the etcd cluster at --etcd-endpoints (--store etcd,
// for several replicas) and serves the gRPC API on --listen: mutual TLS
// with --tls-cert, --tls-key and --tls-client-ca, plaintext only with an
// explicit --insecure. Prometheus metrics are on --metrics-listen. Flags
// live here; everything else is in controlplane/server. Bad flags or
// config exit with status 2.
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
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/metalfabric/fabric/cmd/internal/flagfile"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	"github.com/metalfabric/fabric/controlplane/store/etcd"
	"github.com/metalfabric/fabric/metrics"
	"github.com/metalfabric/fabric/pki"
	"github.com/metalfabric/fabric/systemd"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fabric-controller:", err)
		if errors.As(err, new(usageError)) {
			os.Exit(2) // the unit does not restart on a config error
		}
		os.Exit(1)
	}
}

// usageError is a bad flag or config value: restarting will not fix it.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func run() error {
	var (
		listen   = flag.String("listen", ":50051", "gRPC listen address")
		backend  = flag.String("store", "bolt", "state store: bolt (a file under --state-dir, one controller) or etcd (--etcd-endpoints, several replicas)")
		stateDir = flag.String("state-dir", "/var/lib/fabric-controller", "directory of the state file controller.db (created if missing; --store bolt)")
		etcdEPs  = flag.String("etcd-endpoints", "", "etcd client endpoints, comma-separated HOST:PORT or URLs (--store etcd)")
		etcdPfx  = flag.String("etcd-prefix", etcd.DefaultPrefix, "key prefix of the controller's state in etcd; replicas of one controller share it (--store etcd)")
		etcdDial = flag.Duration("etcd-dial-timeout", 5*time.Second, "how long to wait for etcd at startup (--store etcd)")
		vniRange = flag.String("vni-range", ipam.DefaultVNIRange.String(), "VNI pool for networks, first-last")
		asnRange = flag.String("asn-range", ipam.DefaultASNRange.String(), "ASN pool for switches (one AS per device, kept for its life), first-last")
		alive    = flag.Duration("liveness-alive", server.DefaultLivenessAlive, "a machine whose newest LLDP frame is at most this old is alive")
		dead     = flag.Duration("liveness-dead", server.DefaultLivenessDead, "a machine not seen by LLDP for longer than this is dead (unknown in between)")
		loopPool = flag.String("loopback-pool", inventory.DefaultLoopbackPool.String(), "prefix device loopbacks (router id, VTEP) are allocated from")
		underlay = flag.String("underlay", string(inventory.UnderlayUnnumbered), "underlay sessions: unnumbered (IPv6 link-local, RFC 5549) or numbered (a /31 per fabric link from --underlay-pool)")
		linkPool = flag.String("underlay-pool", inventory.DefaultLinkPool.String(), "IPv4 prefix the /31s of fabric links are allocated from (--underlay numbered); must not overlap --loopback-pool")
		logLevel = flag.String("log-level", "info", "log level: debug, info, warn, error")
		metricsL = flag.String("metrics-listen", metrics.DefaultControllerListen, "address of the Prometheus /metrics endpoint (\"\" for none)")
		tlsCert  = flag.String("tls-cert", "", "the controller's TLS certificate (PEM); with --tls-key and --tls-client-ca, mutual TLS")
		tlsKey   = flag.String("tls-key", "", "the TLS certificate's private key (PEM)")
		clientCA = flag.String("tls-client-ca", "", "CA certificates (PEM) agents' and operators' client certificates are verified against")
		plain    = flag.Bool("insecure", false, "serve plaintext gRPC without authentication (labs only); required when no --tls-* is given")
		tokFile  = flag.String("operator-token-file", "", "file of operator API bearer tokens, one per line")
		opNames  = flag.String("operator-names", "", "client certificate names (CN or DNS SAN) that are operators besides OU=operator, comma-separated")
		config   = flag.String("config", "", "YAML file of these settings (keys are the flag names; flags given here win)")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %v", flag.Args())}
	}
	if *config != "" {
		if err := flagfile.Load(flag.CommandLine, *config); err != nil {
			return usageError{err}
		}
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	vnis, err := ipam.ParseVNIRange(*vniRange)
	if err != nil {
		return usageError{fmt.Errorf("--vni-range: %w", err)}
	}
	asns, err := ipam.ParseASNRange(*asnRange)
	if err != nil {
		return usageError{fmt.Errorf("--asn-range: %w", err)}
	}
	loopbacks, err := ipam.ParsePrefix(*loopPool)
	if err != nil {
		return usageError{fmt.Errorf("--loopback-pool: %w", err)}
	}
	mode, err := inventory.ParseUnderlayMode(*underlay)
	if err != nil {
		return usageError{fmt.Errorf("--underlay: %w", err)}
	}
	links, err := ipam.ParsePrefix(*linkPool)
	if err != nil {
		return usageError{fmt.Errorf("--underlay-pool: %w", err)}
	}
	if mode == inventory.UnderlayNumbered && links.Overlaps(loopbacks) {
		return usageError{fmt.Errorf("--underlay-pool %s overlaps --loopback-pool %s", links, loopbacks)}
	}
	secOpts, err := security(*tlsCert, *tlsKey, *clientCA, *plain, *tokFile, *opNames)
	if err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	st, where, err := openStore(ctx, *backend, *stateDir, *etcdEPs, *etcdPfx, *etcdDial, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "error", err)
		}
	}()

	srvOpts := []server.Option{server.WithVNIRange(vnis), server.WithASNRange(asns), server.WithLoopbackPool(loopbacks),
		server.WithUnderlay(mode, links),
		server.WithLiveness(*alive, *dead), server.WithLogger(log)}
	srvOpts = append(srvOpts, secOpts...)
	var ctlMetrics *metrics.Controller
	if *metricsL != "" {
		reg := metrics.NewRegistry()
		ctlMetrics = metrics.NewController(reg, log)
		ms, err := metrics.Listen(*metricsL, reg, log)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		go func() {
			if err := ms.Run(ctx); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		srvOpts = append(srvOpts, server.WithGRPCServerOptions(ctlMetrics.ServerOptions()...))
	}
	srv, err := server.New(st, srvOpts...)
	if err != nil {
		return err
	}
	if ctlMetrics != nil {
		ctlMetrics.SetSource(srv)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}

	log.Info("starting", "tls", !*plain, "store", *backend, "state", where, "vni_range", vnis.String(), "asn_range", asns.String(), "underlay", mode, "listen", lis.Addr().String())

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

// security returns the server options of the TLS and auth flags.
func security(cert, key, clientCA string, plain bool, tokenFile, operatorNames string) ([]server.Option, error) {
	auth := server.Auth{}
	if tokenFile != "" {
		toks, err := pki.ReadTokens(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--operator-token-file: %w", err)
		}
		auth.OperatorTokens = toks
	}
	for _, n := range strings.Split(operatorNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			auth.OperatorNames = append(auth.OperatorNames, n)
		}
	}
	anyTLS := cert != "" || key != "" || clientCA != ""
	switch {
	case plain && anyTLS:
		return nil, errors.New("--insecure and --tls-cert/--tls-key/--tls-client-ca exclude each other")
	case plain:
		// Plaintext: devices are not authenticated; the operator API
		// still wants a token when --operator-token-file is given.
		return []server.Option{server.WithAuth(auth)}, nil
	case cert == "" || key == "" || clientCA == "":
		return nil, errors.New("mutual TLS needs --tls-cert, --tls-key and --tls-client-ca (or --insecure for a plaintext lab controller)")
	}
	cfg, err := pki.ServerConfig(cert, key, clientCA)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	auth.DeviceCerts = true
	return []server.Option{server.WithAuth(auth), server.WithGRPCServerOptions(grpc.Creds(credentials.NewTLS(cfg)))}, nil
}

// openStore opens the backend --store names; where says what it opened, for
// the log.
func openStore(ctx context.Context, backend, stateDir, endpoints, prefix string, dial time.Duration, log *slog.Logger) (store.Store, string, error) {
	switch backend {
	case "bolt":
		if err := os.MkdirAll(stateDir, 0o750); err != nil {
			return nil, "", fmt.Errorf("creating state dir: %w", err)
		}
		path := filepath.Join(stateDir, "controller.db")
		st, err := bolt.Open(path)
		if err != nil {
			return nil, "", err
		}
		return st, path, nil
	case "etcd":
		var eps []string
		for _, e := range strings.Split(endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		if len(eps) == 0 {
			return nil, "", errors.New("--store etcd needs --etcd-endpoints")
		}
		st, err := etcd.Open(ctx, eps, etcd.WithPrefix(prefix), etcd.WithDialTimeout(dial), etcd.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		return st, strings.Join(eps, ",") + " " + st.Prefix(), nil
	default:
		return nil, "", fmt.Errorf("--store: unknown store %q: want bolt or etcd", backend)
	}
}
