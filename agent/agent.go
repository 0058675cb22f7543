package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// Role is the device's role in the fabric.
type Role string

// The roles. In this version all of them run the same VRF reconciler (spines
// simply get no VRFs).
const (
	RoleLeaf     Role = "leaf"
	RoleSpine    Role = "spine"
	RoleFirewall Role = "firewall"
)

// ParseRole parses "leaf", "spine" or "firewall".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleLeaf, RoleSpine, RoleFirewall:
		return r, nil
	default:
		return "", fmt.Errorf("unknown role %q: want leaf, spine or firewall", s)
	}
}

// Config is what the agent must know.
type Config struct {
	// Controller is the controller's gRPC address, HOST:PORT.
	Controller string
	// Controllers are the addresses of several controller replicas (on one
	// etcd store), tried in turn: when the session with one ends, the agent
	// goes on with the next. Controller, when set too, comes first.
	Controllers []string
	// Hostname identifies the device; os.Hostname() when empty.
	Hostname string
	Role     Role
	// ChassisMAC is reported at registration; when empty, the MAC of the
	// first port (by name) is used.
	ChassisMAC string
	// VLANRange is the range this switch picks L3VNI VLANs from; zero
	// means fabric.DefaultVLANRange.
	VLANRange fabric.VLANRange
}

// Defaults of the options.
const (
	DefaultMinBackoff = 200 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	DefaultRPCTimeout = 10 * time.Second
	keepaliveTime     = 10 * time.Second
	keepaliveTimeout  = 10 * time.Second
)

// Agent is the daemon runtime of one device.
type Agent struct {
	cfg        Config
	addrs      []string // Controller and Controllers, without duplicates
	log        *slog.Logger
	kernel     fabric.Kernel
	fabric     *fabric.Reconciler
	dialOpts   []grpc.DialOption
	minBackoff time.Duration
	maxBackoff time.Duration
	rpcTimeout time.Duration

	// applied is the last version applied without errors; only the
	// goroutine running Run touches it. appliedVersion mirrors it for
	// Stats, desired is the newest version received.
	applied        uint64
	appliedVersion atomic.Uint64
	desired        atomic.Uint64
	rollbacks      atomic.Uint64
	observer       Observer

	// Commit-confirm (commit.go); all but the window only touched by the
	// goroutine running Run. lastGood is the last-known-good snapshot.
	confirmWindow atomic.Int64
	lastGood      *apiv1.DeviceConfig
	pending       *pendingConfirm
	pendingOK     bool
	refused       uint64

	// Drift handling (drift.go): the event source (nil: off), the debounce
	// and the state shared with the drift goroutine.
	events   EventSource
	debounce time.Duration
	drift    *driftState

	// LLDP (lldp.go): nil when off.
	nbr *nbrState

	// Routing (routing.go): nil when off. routingCfg is the snapshot whose
	// routing part was last applied (for re-applying after a drift repair),
	// guarded by drift.applyMu.
	routing    Routing
	routingCfg *apiv1.DeviceConfig
	// routingSum is the summary of the last routing report (Run goroutine).
	routingSum string

	// Firewall role (firewall.go): nil when off.
	fwPolicy PolicyApplier
	fwLeaker Leaker

	// cachePath is the last-known-good config file (cache.go); "" : none.
	cachePath  string
	cacheTried bool // only the Run goroutine touches it

	// Service manager hooks (see WithLifecycle).
	onApplied func(version uint64, err error)
	heartbeat func()
	beat      time.Duration

	// Test hooks.
	onSnapshot   func(version uint64) // a snapshot was received and queued
	onSessionEnd func(err error)      // a controller session ended
	onDriftCheck func(driftCheck)     // a drift check finished
}

// Option configures an Agent.
type Option func(*Agent)

// WithKernel sets the kernel the reconcilers work on (default: the process's
// network namespace via fabric.OpenKernel).
func WithKernel(k fabric.Kernel) Option { return func(a *Agent) { a.kernel = k } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(a *Agent) {
		if l != nil {
			a.log = l
		}
	}
}

// WithDialOptions adds gRPC dial options, after the agent's own (insecure
// transport credentials, keepalive pings every 10 s, connect backoff).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(a *Agent) { a.dialOpts = append(a.dialOpts, opts...) }
}

// WithBackoff sets the reconnect backoff bounds (default 200 ms .. 10 s).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(a *Agent) { a.minBackoff, a.maxBackoff = minDelay, maxDelay }
}

// WithLifecycle hooks the agent up to a service manager: applied is called
// after every snapshot apply (err nil: fully applied), heartbeat at least
// every beat from the loop that talks to the controller and applies
// snapshots, so a watchdog fed by it notices when that loop hangs.
func WithLifecycle(applied func(version uint64, err error), heartbeat func(), beat time.Duration) Option {
	return func(a *Agent) { a.onApplied, a.heartbeat, a.beat = applied, heartbeat, beat }
}

// WithRPCTimeout bounds the Register and ReportStatus calls (default 10 s).
func WithRPCTimeout(d time.Duration) Option { return func(a *Agent) { a.rpcTimeout = d } }

// New returns an agent. It does not connect yet.
func New(cfg Config, opts ...Option) (*Agent, error) {
	addrs := controllerAddrs(cfg)
	if len(addrs) == 0 {
		return nil, errors.New("no controller address")
	}
	if _, err := ParseRole(string(cfg.Role)); err != nil {
		return nil, err
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("reading hostname: %w", err)
		}
		cfg.Hostname = h
	}
	a := &Agent{
		cfg:        cfg,
		addrs:      addrs,
		log:        slog.Default(),
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
		rpcTimeout: DefaultRPCTimeout,
		debounce:   DefaultDriftDebounce,
		drift:      newDriftState(),
	}
	for _, o := range opts {
		o(a)
	}
	if a.minBackoff <= 0 || a.maxBackoff < a.minBackoff {
		return nil, fmt.Errorf("invalid backoff %v..%v", a.minBackoff, a.maxBackoff)
	}
	a.log = a.log.With("device", cfg.Hostname)
	if a.debounce <= 0 {
		return nil, fmt.Errorf("invalid drift debounce %v", a.debounce)
	}
	if a.kernel == nil {
		k, err := fabric.OpenKernel()
		if err != nil {
			return nil, err
		}
		a.kernel = k
		if a.events == nil {
			a.events = func(ctx context.Context) (<-chan fabric.Event, error) {
				return fabric.WatchEvents(ctx, fabric.WithEventLogger(a.log))
			}
		}
	}
	a.fabric = fabric.NewReconciler(a.kernel, fabric.WithLogger(a.log))
	return a, nil
}

// controllerAddrs returns Controller and then Controllers, skipping empty
// and repeated addresses.
func controllerAddrs(cfg Config) []string {
	var out []string
	for _, c := range append([]string{cfg.Controller}, cfg.Controllers...) {
		if c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (a *Agent) dial(addr string) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  a.minBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   a.maxBackoff,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	conn, err := grpc.NewClient(addr, append(opts, a.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("dialing controller %s: %w", addr, err)
	}
	return conn, nil
}

// Run connects to the controller and applies its snapshots until ctx is done.
// Connection failures are retried forever with backoff; meanwhile the kernel
// is left as it is, except that drift handling (drift.go), when it has an event
// source, goes on repairing managed objects to the last applied config. Run
// returns nil when ctx is done, and an error only when it cannot start at all.
// With several controller replicas, each session that ends moves the agent
// to the next replica; it keeps the version it applied, and a replica that
// sends that same version again causes no apply.
func (a *Agent) Run(ctx context.Context) error {
	clients := make([]apiv1.DeviceServiceClient, len(a.addrs))
	for i, addr := range a.addrs {
		conn, err := a.dial(addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = apiv1.NewDeviceServiceClient(conn)
	}
	a.log.Info("agent starting", "role", string(a.cfg.Role), "controllers", strings.Join(a.addrs, ","), "drift_repair", a.events != nil, "lldp", a.nbr != nil)

	// Drift handling runs beside the sessions, so it goes on while the
	// controller is unreachable; it ends before Run returns.
	var wg sync.WaitGroup
	dctx, dcancel := context.WithCancel(ctx)
	defer wg.Wait()
	defer dcancel()
	if a.events != nil {
		wg.Go(func() { a.watchDrift(dctx) })
	}
	if a.nbr != nil {
		wg.Go(func() { a.runLLDP(dctx) })
	}

	bo := newBackoff(a.minBackoff, a.maxBackoff)
	timer := time.NewTimer(0)
	<-timer.C
	for cur := 0; ; cur = (cur + 1) % len(clients) {
		a.beatNow()
		delivered, err := a.session(ctx, clients[cur])
		if a.onSessionEnd != nil {
			a.onSessionEnd(err)
		}
		if ctx.Err() != nil {
			a.log.Info("agent stopping; kernel left as it is")
			return nil
		}
		if delivered {
			bo.reset()
		}
		if !delivered {
			a.applyCache(ctx)
		}
		delay := bo.next()
		a.log.Warn("controller session ended, kernel left as it is", "controller", a.addrs[cur], "err", err,
			"retry_in", delay, "next_controller", a.addrs[(cur+1)%len(clients)])
		if !a.waitRetry(ctx, timer, delay) {
			a.log.Info("agent stopping; kernel left as it is")
			return nil
		}
	}
}

// waitRetry waits delay on timer, beating the heartbeat meanwhile; false
// when ctx ended first.
func (a *Agent) waitRetry(ctx context.Context, timer *time.Timer, delay time.Duration) bool {
	beat, stop := a.beatTicker()
	defer stop()
	timer.Reset(delay)
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-beat:
			a.beatNow()
		case <-a.confirmDeadline():
			a.rollback(ctx)
		case <-timer.C:
			return true
		}
	}
}

// session registers, watches and applies snapshots until the stream breaks
// or ctx is done. delivered tells whether a snapshot arrived.
func (a *Agent) session(ctx context.Context, client apiv1.DeviceServiceClient) (delivered bool, err error) {
	actual, err := a.fabric.Read(ctx)
	if err != nil {
		return false, fmt.Errorf("reading ports: %w", err)
	}
	ports := actual.Ports()
	rctx, cancel := context.WithTimeout(ctx, a.rpcTimeout)
	resp, err := client.Register(rctx, &apiv1.RegisterRequest{
		Hostname:   a.cfg.Hostname,
		Role:       roleToProto(a.cfg.Role),
		ChassisMac: a.chassisMAC(ports),
		Ports:      portsToProto(ports),
	})
	cancel()
	if err != nil {
		return false, fmt.Errorf("registering: %w", err)
	}
	a.confirmed()
	a.log.Info("registered", "desired_version", resp.GetDesiredVersion(), "ports", len(ports))

	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: the receiver has ended when session returns
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.WatchConfig(sctx, &apiv1.WatchConfigRequest{Hostname: a.cfg.Hostname, KnownVersion: a.applied})
	if err != nil {
		return false, fmt.Errorf("watching config: %w", err)
	}
	if a.nbr != nil {
		wg.Go(func() { a.reportNeighborsLoop(sctx, client) })
	}

	// latest holds the newest snapshot not yet applied: the receiver
	// replaces an older one still waiting (latest-wins).
	latest := make(chan *apiv1.DeviceConfig, 1)
	recvErr := make(chan error, 1)
	wg.Go(func() {
		for {
			cfg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case old := <-latest:
				a.log.Info("snapshot superseded before it was applied", "version", old.GetVersion(), "by", cfg.GetVersion())
			default:
			}
			latest <- cfg
			a.desired.Store(cfg.GetVersion())
			if a.onSnapshot != nil {
				a.onSnapshot(cfg.GetVersion())
			}
		}
	})

	beat, stopBeat := a.beatTicker()
	defer stopBeat()
	var routingTick <-chan time.Time
	if a.routing != nil {
		t := time.NewTicker(routingStatusEvery)
		defer t.Stop()
		routingTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case <-beat:
			a.beatNow()
		case cfg := <-latest:
			delivered = true
			a.confirmed() // the controller reached us
			a.apply(sctx, client, cfg)
			a.beatNow()
		case <-a.confirmDeadline():
			a.rollback(sctx)
			a.report(sctx, client)
		case <-a.drift.kick:
			a.report(sctx, client) // a drift repair changed the status
		case <-routingTick:
			if a.routingChanged(sctx) {
				a.report(sctx, client)
			}
		case err := <-recvErr:
			// A snapshot that arrived just before the stream broke is
			// still the controller's desired state.
			select {
			case cfg := <-latest:
				delivered = true
				a.confirmed()
				a.apply(sctx, client, cfg)
			default:
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("stream closed by the controller")
			}
			return delivered, fmt.Errorf("watching config: %w", err)
		}
	}
}

// apply hands one snapshot to the reconcilers and reports the outcome. An
// apply that has started is finished even when ctx is done, so shutdown does
// not stop between two steps.
//
// A snapshot of the version last applied without errors (the first one a
// session sends after a reconnect or a failover to another replica) is not
// applied again, only reported; nor is a version commit-confirm rolled
// back (commit.go).
func (a *Agent) apply(ctx context.Context, client apiv1.DeviceServiceClient, cfg *apiv1.DeviceConfig) {
	switch v := cfg.GetVersion(); {
	case v != 0 && v == a.refused:
		a.log.Warn("snapshot was rolled back by commit-confirm; not applying it again", "version", v, "applied", a.applied)
	case v != 0 && v == a.applied:
		a.log.Info("snapshot already applied", "version", v)
	default:
		if a.refused != 0 {
			a.refused = 0
			a.clearRollback()
		}
		ok := a.applyLocal(ctx, cfg)
		a.afterApply(cfg, ok)
	}
	a.report(ctx, client)
}

// applyLocal reconciles the kernel to one snapshot and records the outcome
// for the next status report and for drift handling. ok tells it was
// applied without errors; the caller decides whether it becomes the
// last-known-good config.
func (a *Agent) applyLocal(ctx context.Context, cfg *apiv1.DeviceConfig) (ok bool) {
	log := a.log.With("version", cfg.GetVersion())
	if r := cfg.GetRole(); r != apiv1.Role_ROLE_UNSPECIFIED && r != roleToProto(a.cfg.Role) {
		log.Warn("snapshot is for another role; applying it anyway", "snapshot_role", r.String(), "role", string(a.cfg.Role))
	}
	desired, err := desiredFromProto(cfg, a.cfg.VLANRange)
	if err != nil {
		// A malformed snapshot is rejected as a whole; the kernel is not
		// touched.
		log.Error("snapshot rejected", "err", err)
		a.drift.mu.Lock()
		a.drift.status = &status{version: cfg.GetVersion(), errors: []fabric.StepError{{Step: "convert", Err: err}}}
		a.drift.mu.Unlock()
		return false
	}
	log.Info("applying snapshot", "vrfs", len(desired.VRFs), "ports", len(desired.Ports))
	// A reconciler per snapshot, so its log lines carry the version.
	rec := fabric.NewReconciler(a.kernel, fabric.WithLogger(log))
	a.drift.applyMu.Lock() // not beside a drift repair
	start := time.Now()
	res, err := rec.Apply(context.WithoutCancel(ctx), desired)
	// Routing after the dataplane: sessions on machine ports need their
	// VRF, EVPN routes the L3VNI's SVI and VXLAN device.
	rerrs := a.applyRouting(context.WithoutCancel(ctx), cfg, res.State)
	a.routingCfg = cfg
	// The firewall role last: leak routes need the VRF devices.
	ferrs := a.applyFirewall(context.WithoutCancel(ctx), cfg, res.State)
	a.drift.recordApply(cfg.GetVersion(), desired, res, err, rerrs)
	a.drift.recordFirewall(ferrs)
	a.drift.applyMu.Unlock()
	took := time.Since(start)
	if err == nil && len(rerrs) > 0 {
		err = fmt.Errorf("routing: %d steps failed, first: %s: %w", len(rerrs), rerrs[0].Step, rerrs[0].Err)
	}
	if err == nil && len(ferrs) > 0 {
		err = fmt.Errorf("firewall: %d steps failed, first: %s: %w", len(ferrs), ferrs[0].Step, ferrs[0].Err)
	}
	if a.observer != nil {
		a.observer.Applied(cfg.GetVersion(), took, err)
	}
	if err != nil {
		log.Error("snapshot applied with errors", "applied", len(res.Applied), "skipped", len(res.Skipped), "errors", len(res.Errors), "err", err)
	} else {
		log.Info("snapshot applied", "changes", len(res.Applied))
		a.applied = cfg.GetVersion()
		a.appliedVersion.Store(a.applied)
	}
	if a.onApplied != nil {
		a.onApplied(cfg.GetVersion(), err)
	}
	return err == nil
}

// applyCache applies the last-known-good config when the agent has applied
// nothing yet (it started while the controller is unreachable). It is the
// controller's config of an earlier run, so the kernel usually already
// matches it and nothing changes; after a reboot it restores the dataplane.
func (a *Agent) applyCache(ctx context.Context) {
	if a.applied != 0 || a.cacheTried {
		return
	}
	a.cacheTried = true
	cfg, err := a.loadCache()
	if err != nil {
		a.log.Warn("not using the last-known-good config", "err", err)
		return
	}
	if cfg == nil {
		return
	}
	a.log.Warn("controller unreachable: applying the last-known-good config", "version", cfg.GetVersion(), "cache", a.cachePath)
	if a.applyLocal(ctx, cfg) {
		a.lastGood = cfg
	}
}

// beatTicker returns a channel that ticks every heartbeat period, or nil
// (never ticks) without a heartbeat hook.
func (a *Agent) beatTicker() (<-chan time.Time, func()) {
	if a.heartbeat == nil || a.beat <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(a.beat)
	return t.C, t.Stop
}

func (a *Agent) beatNow() {
	if a.heartbeat != nil {
		a.heartbeat()
	}
}

// Plan connects, takes one snapshot of the device's desired config and returns
// its version and the kernel changes applying it would make. It changes
// nothing and does not register the device.
// With several controller replicas it asks each in turn until one answers.
func (a *Agent) Plan(ctx context.Context) (version uint64, changes []fabric.Change, err error) {
	var cfg *apiv1.DeviceConfig
	for _, addr := range a.addrs {
		if cfg, err = a.snapshot(ctx, addr); err == nil {
			break
		}
		a.log.Warn("no snapshot from controller", "controller", addr, "err", err)
	}
	if err != nil {
		return 0, nil, err
	}
	desired, err := desiredFromProto(cfg, a.cfg.VLANRange)
	if err != nil {
		return cfg.GetVersion(), nil, fmt.Errorf("converting version %d: %w", cfg.GetVersion(), err)
	}
	changes, err = a.fabric.Plan(ctx, desired)
	if err != nil {
		return cfg.GetVersion(), nil, fmt.Errorf("planning version %d: %w", cfg.GetVersion(), err)
	}
	return cfg.GetVersion(), changes, nil
}

// snapshot takes one snapshot of the device's desired config from addr.
func (a *Agent) snapshot(ctx context.Context, addr string) (*apiv1.DeviceConfig, error) {
	conn, err := a.dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := apiv1.NewDeviceServiceClient(conn).WatchConfig(wctx, &apiv1.WatchConfigRequest{Hostname: a.cfg.Hostname})
	if err != nil {
		return nil, fmt.Errorf("watching config on %s: %w", addr, err)
	}
	cfg, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("receiving a snapshot from %s: %w", addr, err)
	}
	return cfg, nil
}

func (a *Agent) chassisMAC(ports []fabric.Link) string {
	if a.cfg.ChassisMAC != "" {
		return a.cfg.ChassisMAC
	}
	for _, p := range ports {
		if p.MAC != "" && p.MAC != "00:00:00:00:00:00" {
			return p.MAC
		}
	}
	return ""
}
