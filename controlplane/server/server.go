// Package server is the controller's API edge: the gRPC implementations of
// DeviceService and OperatorService, the mapping of inventory errors to gRPC
// status codes, the watch streams, and Run, which serves until its context
// is cancelled. It owns the conversion between API and model types; it must
// not touch the store directly (the inventory does) and must not hold state
// beyond the watch hub.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/watch"
)

// Keepalive settings. Agents ping every 10 s; the server tolerates pings from
// 5 s on, leaving room for timer jitter. The server pings idle
// connections so a vanished agent's watch stream (and its "connected" flag)
// goes away within about 40 s.
const (
	MinClientPingInterval = 5 * time.Second
	serverPingInterval    = 30 * time.Second
	serverPingTimeout     = 10 * time.Second
)

// DefaultGracePeriod is how long Run waits for in-flight calls on shutdown.
const DefaultGracePeriod = 10 * time.Second

// Server serves the controller API.
type Server struct {
	inv      *inventory.Inventory
	hub      *watch.Hub
	log      *slog.Logger
	now      func() time.Time
	alive    time.Duration
	dead     time.Duration
	grace    time.Duration
	grpcOpts []grpc.ServerOption
	auth     Auth

	// stopping is cancelled when Run starts shutting down; it ends the
	// watch streams, which GracefulStop would otherwise wait for forever.
	stopping context.Context
	stop     context.CancelFunc
	running  atomic.Bool
}

type config struct {
	vnis      ipam.VNIRange
	asns      ipam.ASNRange
	alive     time.Duration
	dead      time.Duration
	loopbacks netip.Prefix
	underlay  inventory.UnderlayMode
	linkPool  netip.Prefix
	log       *slog.Logger
	grace     time.Duration
	now       func() time.Time
	grpcOpts  []grpc.ServerOption
	auth      Auth
}

// Option configures New.
type Option func(*config)

// WithVNIRange sets the pool network VNIs are allocated from (default
// ipam.DefaultVNIRange).
func WithVNIRange(r ipam.VNIRange) Option { return func(c *config) { c.vnis = r } }

// WithASNRange sets the pool device AS numbers are allocated from (default
// ipam.DefaultASNRange).
func WithASNRange(r ipam.ASNRange) Option { return func(c *config) { c.asns = r } }

// Default liveness thresholds: a machine whose newest LLDP frame is at most
// DefaultLivenessAlive old is alive, one older than DefaultLivenessDead is
// dead, and in between (or never seen) its liveness is unknown.
const (
	DefaultLivenessAlive = 5 * time.Minute
	DefaultLivenessDead  = time.Hour
)

// WithLiveness sets the liveness thresholds (defaults DefaultLivenessAlive
// and DefaultLivenessDead); alive must be positive and below dead.
func WithLiveness(alive, dead time.Duration) Option {
	return func(c *config) { c.alive, c.dead = alive, dead }
}

// WithLoopbackPool sets the prefix device loopbacks come from (default
// inventory.DefaultLoopbackPool).
func WithLoopbackPool(p netip.Prefix) Option { return func(c *config) { c.loopbacks = p } }

// WithUnderlay sets how underlay sessions are addressed (default
// inventory.UnderlayUnnumbered) and, for inventory.UnderlayNumbered, the
// pool of the links' /31s (default inventory.DefaultLinkPool; must not
// overlap the loopback pool).
func WithUnderlay(mode inventory.UnderlayMode, linkPool netip.Prefix) Option {
	return func(c *config) { c.underlay, c.linkPool = mode, linkPool }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithGracePeriod sets how long Run waits for in-flight calls before closing
// connections (default DefaultGracePeriod).
func WithGracePeriod(d time.Duration) Option { return func(c *config) { c.grace = d } }

// WithClock sets the clock used for devices' last-seen times and for
// machines' liveness.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithGRPCServerOptions adds options to the gRPC server Run creates (e.g.
// TLS credentials).
func WithGRPCServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *config) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// New returns a server over st. The caller keeps ownership of st and closes
// it after Run returned.
func New(st store.Store, opts ...Option) (*Server, error) {
	c := config{
		vnis:      ipam.DefaultVNIRange,
		asns:      ipam.DefaultASNRange,
		alive:     DefaultLivenessAlive,
		dead:      DefaultLivenessDead,
		loopbacks: inventory.DefaultLoopbackPool,
		underlay:  inventory.UnderlayUnnumbered,
		linkPool:  inventory.DefaultLinkPool,
		log:       slog.New(slog.DiscardHandler),
		grace:     DefaultGracePeriod,
		now:       time.Now,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.alive <= 0 || c.dead <= c.alive {
		return nil, fmt.Errorf("liveness thresholds: alive (%s) must be positive and below dead (%s)", c.alive, c.dead)
	}
	hub := watch.NewHub()
	inv, err := inventory.New(st,
		inventory.WithVNIRange(c.vnis),
		inventory.WithASNRange(c.asns),
		inventory.WithLoopbackPool(c.loopbacks),
		inventory.WithUnderlay(c.underlay),
		inventory.WithLinkPool(c.linkPool),
		inventory.WithClock(c.now),
		inventory.WithNotifier(hub),
		inventory.WithLogger(c.log),
	)
	if err != nil {
		return nil, fmt.Errorf("creating inventory: %w", err)
	}
	s := &Server{inv: inv, hub: hub, log: c.log, now: c.now, alive: c.alive, dead: c.dead, grace: c.grace, grpcOpts: c.grpcOpts, auth: c.auth}
	s.stopping, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// RegisterServices registers both services on r, for callers that run
// their own gRPC server. Their watch streams only end when the client goes
// away or Run's shutdown begins. Such a server must install
// AuthInterceptors itself.
func (s *Server) RegisterServices(r grpc.ServiceRegistrar) {
	apiv1.RegisterDeviceServiceServer(r, deviceService{s: s})
	apiv1.RegisterOperatorServiceServer(r, operatorService{s: s})
}

// Run serves on lis until ctx is cancelled, then ends the watch streams and
// stops gracefully, closing remaining connections after the grace period.
// It returns nil after a shutdown requested through ctx. Run may be called
// once.
func (s *Server) Run(ctx context.Context, lis net.Listener) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             MinClientPingInterval,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    serverPingInterval,
			Timeout: serverPingTimeout,
		}),
		// Logged after authorization, so refused calls are logged too.
		grpc.ChainUnaryInterceptor(s.logUnary, s.authUnary),
		grpc.ChainStreamInterceptor(s.logStream, s.authStream),
	}
	// The caller's options first: their interceptors (metrics) see every
	// call, refused ones included.
	gs := grpc.NewServer(append(slices.Clone(s.grpcOpts), opts...)...)
	s.RegisterServices(gs)

	// On a shared store, configs other replicas commit reach this
	// replica's watch streams through the store's change feed.
	fctx, fcancel := context.WithCancel(s.stopping)
	defer fcancel()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		if err := s.inv.Follow(fctx); err != nil && fctx.Err() == nil {
			s.log.Error("following other replicas' configs stopped", "err", err)
		}
	}()
	defer func() { fcancel(); <-followed }()

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	s.log.Info("controller serving", "addr", lis.Addr().String(), "shared_store", s.inv.Shared())

	select {
	case err := <-served:
		s.stop()
		gs.Stop()
		return fmt.Errorf("serving on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}

	s.log.Info("controller stopping", "grace", s.grace)
	s.stop()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.grace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.log.Warn("graceful stop timed out, closing connections", "grace", s.grace)
		gs.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving on %s: %w", lis.Addr(), err)
	}
	s.log.Info("controller stopped")
	return nil
}

// toStatus maps an inventory error to a gRPC status. This is the only place
// that knows about codes.
func (s *Server) toStatus(err error) error {
	if err == nil {
		return nil
	}
	var code codes.Code
	switch {
	case errors.Is(err, inventory.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, inventory.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, inventory.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, inventory.ErrPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, inventory.ErrExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		code = codes.Internal
	}
	return status.Error(code, err.Error())
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	s.logCall(ss.Context(), info.FullMethod, start, err)
	return err
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("code", code.String()), slog.Duration("duration", time.Since(start))}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	s.log.LogAttrs(ctx, level, "rpc", attrs...)
}

type deviceService struct {
	apiv1.UnimplementedDeviceServiceServer
	s *Server
}

func (d deviceService) Register(ctx context.Context, req *apiv1.RegisterRequest) (*apiv1.RegisterResponse, error) {
	v, err := d.s.inv.Register(ctx, registerToModel(req))
	if err != nil {
		return nil, d.s.toStatus(err)
	}
	return &apiv1.RegisterResponse{DesiredVersion: v}, nil
}

func (d deviceService) ReportStatus(ctx context.Context, req *apiv1.ReportStatusRequest) (*apiv1.ReportStatusResponse, error) {
	err := d.s.inv.ReportStatus(ctx, req.GetHostname(), inventory.Status{
		AppliedVersion: req.GetAppliedVersion(),
		Errors:         stepErrorsFromProto(req.GetErrors()),
		Ports:          portsFromProto(req.GetPorts()),
		Drift: model.Drift{
			Repairs:          req.GetDrift().GetRepairs(),
			UnmanagedChanges: req.GetDrift().GetUnmanagedChanges(),
			LastUnmanaged:    req.GetDrift().GetLastUnmanaged(),
		},
		Routing: routingFromProto(req.GetRouting()),
	})
	if err != nil {
		return nil, d.s.toStatus(err)
	}
	return &apiv1.ReportStatusResponse{}, nil
}

// WatchConfig sends the device's current config, then every newer one. A
// slow stream skips intermediate versions (latest wins). The stream ends
// when the client goes away or the server shuts down (Unavailable).
func (d deviceService) WatchConfig(req *apiv1.WatchConfigRequest, stream grpc.ServerStreamingServer[apiv1.DeviceConfig]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	unhook := context.AfterFunc(d.s.stopping, cancel)
	defer unhook()

	host := req.GetHostname()
	// Subscribe before reading the current config, so a commit between the
	// read and the subscription cannot be missed.
	sub := d.s.hub.Subscribe(host)
	defer sub.Close()
	cfg, err := d.s.inv.DeviceConfig(ctx, host)
	if err != nil {
		return d.s.toStatus(err)
	}
	sub.MarkSeen(cfg.Version)
	log := d.s.log.With("device", host)
	log.Info("watch started", "known_version", req.GetKnownVersion(), "version", cfg.Version)
	defer log.Info("watch ended")

	for {
		if err := stream.Send(configToProto(cfg)); err != nil {
			return err
		}
		log.Debug("config sent", "version", cfg.Version)
		cfg, err = sub.Next(ctx)
		if err != nil {
			if d.s.stopping.Err() != nil {
				return status.Error(codes.Unavailable, "controller is shutting down")
			}
			return status.FromContextError(err).Err()
		}
	}
}

type operatorService struct {
	apiv1.UnimplementedOperatorServiceServer
	s *Server
}

func (o operatorService) CreateNetwork(ctx context.Context, req *apiv1.CreateNetworkRequest) (*apiv1.Network, error) {
	var n model.Network
	var err error
	switch {
	case req.GetParent() == "" && req.GetChildLength() == 0:
		var opts []inventory.NetworkOption
		if req.GetExternal() {
			opts = append(opts, inventory.External())
		}
		n, err = o.s.inv.CreateNetwork(ctx, req.GetName(), req.GetPrefix(), opts...)
	case req.GetPrefix() != "":
		return nil, status.Errorf(codes.InvalidArgument, "creating network %s: give either a prefix or a parent with a child length, not both", req.GetName())
	case req.GetParent() == "":
		return nil, status.Errorf(codes.InvalidArgument, "creating network %s: child length %d without a parent network", req.GetName(), req.GetChildLength())
	default:
		n, err = o.s.inv.CreateChildNetwork(ctx, req.GetName(), req.GetParent(), int(min(req.GetChildLength(), 255)))
	}
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return networkToProto(inventory.NetworkInfo{Network: n}), nil
}

func (o operatorService) ListNetworks(ctx context.Context, _ *apiv1.ListNetworksRequest) (*apiv1.ListNetworksResponse, error) {
	nets, err := o.s.inv.ListNetworks(ctx)
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	out := &apiv1.ListNetworksResponse{}
	for _, n := range nets {
		out.Networks = append(out.Networks, networkToProto(n))
	}
	return out, nil
}

func (o operatorService) DeleteNetwork(ctx context.Context, req *apiv1.DeleteNetworkRequest) (*apiv1.DeleteNetworkResponse, error) {
	if err := o.s.inv.DeleteNetwork(ctx, req.GetName()); err != nil {
		return nil, o.s.toStatus(err)
	}
	return &apiv1.DeleteNetworkResponse{}, nil
}

func (o operatorService) ListDevices(ctx context.Context, _ *apiv1.ListDevicesRequest) (*apiv1.ListDevicesResponse, error) {
	devs, err := o.s.inv.ListDevices(ctx)
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	out := &apiv1.ListDevicesResponse{}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceToProto(d, o.s.hub.Subscribers(d.Hostname) > 0))
	}
	return out, nil
}

func (o operatorService) ListMachines(ctx context.Context, _ *apiv1.ListMachinesRequest) (*apiv1.ListMachinesResponse, error) {
	ms, err := o.s.inv.ListMachines(ctx)
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	out := &apiv1.ListMachinesResponse{}
	for _, m := range ms {
		out.Machines = append(out.Machines, o.s.machineToProto(m))
	}
	return out, nil
}

func (o operatorService) CableMachine(ctx context.Context, req *apiv1.CableMachineRequest) (*apiv1.Machine, error) {
	m, err := o.s.inv.CableMachine(ctx, req.GetMachine(), connectionsFromProto(req.GetConnections()))
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return o.s.machineToProto(m), nil
}

func (o operatorService) AllocateMachine(ctx context.Context, req *apiv1.AllocateMachineRequest) (*apiv1.Machine, error) {
	announce, err := prefixesFromProto(req.GetAnnounce())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "allocating machine %s: announceable %v", req.GetMachine(), err)
	}
	m, err := o.s.inv.AllocateMachine(ctx, req.GetMachine(), req.GetNetwork(), req.GetRequestId(), announce...)
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return o.s.machineToProto(m), nil
}

func (o operatorService) FreeMachine(ctx context.Context, req *apiv1.FreeMachineRequest) (*apiv1.Machine, error) {
	m, err := o.s.inv.FreeMachine(ctx, req.GetMachine(), req.GetRequestId())
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return o.s.machineToProto(m), nil
}

func (o operatorService) GetConvergence(ctx context.Context, req *apiv1.GetConvergenceRequest) (*apiv1.Convergence, error) {
	c, err := o.s.inv.Convergence(ctx, req.GetMachine())
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return convergenceToProto(c), nil
}

// ReportNeighbors replaces the device's LLDP neighbour table. It bumps the
// revision (and pushes configs) only when a machine's effective wiring
// changed.
func (d deviceService) ReportNeighbors(ctx context.Context, req *apiv1.ReportNeighborsRequest) (*apiv1.ReportNeighborsResponse, error) {
	if _, err := d.s.inv.ReportNeighbors(ctx, req.GetHostname(), neighborsFromProto(req.GetNeighbors())); err != nil {
		return nil, d.s.toStatus(err)
	}
	return &apiv1.ReportNeighborsResponse{}, nil
}

func (o operatorService) GetDevice(ctx context.Context, req *apiv1.GetDeviceRequest) (*apiv1.Device, error) {
	d, err := o.s.inv.Device(ctx, req.GetHostname())
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return deviceToProto(d, o.s.hub.Subscribers(d.Hostname) > 0), nil
}

func (o operatorService) GetNetwork(ctx context.Context, req *apiv1.GetNetworkRequest) (*apiv1.Network, error) {
	n, err := o.s.inv.Network(ctx, req.GetName())
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return networkToProto(n), nil
}

func (o operatorService) SetFirewallPolicy(ctx context.Context, req *apiv1.SetFirewallPolicyRequest) (*apiv1.FirewallPolicy, error) {
	if req.GetPolicy() == nil {
		return nil, status.Error(codes.InvalidArgument, "setting firewall policy: policy is missing")
	}
	p, err := firewallPolicyFromProto(req.GetPolicy())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "setting firewall policy of network %s: %v", req.GetPolicy().GetNetwork(), err)
	}
	p, err = o.s.inv.SetFirewallPolicy(ctx, p)
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return firewallPolicyToProto(p), nil
}

func (o operatorService) GetFirewallPolicy(ctx context.Context, req *apiv1.GetFirewallPolicyRequest) (*apiv1.FirewallPolicy, error) {
	p, err := o.s.inv.FirewallPolicy(ctx, req.GetNetwork())
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return firewallPolicyToProto(p), nil
}

func (o operatorService) GetMachine(ctx context.Context, req *apiv1.GetMachineRequest) (*apiv1.Machine, error) {
	m, err := o.s.inv.Machine(ctx, req.GetName())
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return o.s.machineToProto(m), nil
}

func (o operatorService) SetCablingPlan(ctx context.Context, req *apiv1.SetCablingPlanRequest) (*apiv1.CablingPlan, error) {
	p, err := o.s.inv.SetCablingPlan(ctx, req.GetDevice(), plannedPortsFromProto(req.GetPorts()))
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	return planToProto(p), nil
}

func (o operatorService) ListFindings(ctx context.Context, _ *apiv1.ListFindingsRequest) (*apiv1.ListFindingsResponse, error) {
	fs, err := o.s.inv.Findings(ctx)
	if err != nil {
		return nil, o.s.toStatus(err)
	}
	out := &apiv1.ListFindingsResponse{}
	for _, f := range fs {
		out.Findings = append(out.Findings, &apiv1.Finding{Device: f.Device, Port: f.Port, Kind: f.Kind, Expected: f.Expected, Actual: f.Actual})
	}
	return out, nil
}

// machineToProto converts a machine, with its liveness at the server's now.
// Agents report their neighbour tables on change only and expire entries by
// their TTL themselves, so a machine in the current table of a connected
// agent is being seen now.
func (s *Server) machineToProto(m model.Machine) *apiv1.Machine {
	now := s.now()
	for _, c := range m.Learned {
		if s.hub.Subscribers(c.Device) > 0 {
			m.LastSeen = now
			break
		}
	}
	return machineToProto(m, model.LivenessAt(m.LastSeen, now, s.alive, s.dead))
}

// Counts are the sizes of the inventory, for metrics.
type Counts struct {
	Devices, ConnectedDevices, Machines, Allocations int
}

// Counts reads the inventory's sizes.
func (s *Server) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	devs, err := s.inv.ListDevices(ctx)
	if err != nil {
		return Counts{}, fmt.Errorf("listing devices: %w", err)
	}
	c.Devices = len(devs)
	for _, d := range devs {
		if s.hub.Subscribers(d.Hostname) > 0 {
			c.ConnectedDevices++
		}
	}
	ms, err := s.inv.ListMachines(ctx)
	if err != nil {
		return Counts{}, fmt.Errorf("listing machines: %w", err)
	}
	c.Machines = len(ms)
	for _, m := range ms {
		if m.Allocation != nil {
			c.Allocations++
		}
	}
	return c, nil
}
