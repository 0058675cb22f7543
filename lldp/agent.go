package lldp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ethernet"
)

// Defaults of the options.
const (
	DefaultInterval       = 30 * time.Second
	DefaultHoldMultiplier = 4
	DefaultFastCount      = 4
	DefaultFastInterval   = time.Second
	DefaultMaxPerPort     = 16
	DefaultMaxTotal       = 4096
	DefaultEventBuffer    = 1024
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = 30 * time.Second

	// expiryTick is how often Run looks for expired neighbours.
	expiryTick = 250 * time.Millisecond
	// maxFrameSize is the read buffer: a jumbo frame.
	maxFrameSize = 9216
)

// Port is one local port LLDP runs on.
type Port struct {
	// Name is the interface name; it is also the port ID we send.
	Name string
	// Description is sent as the port description TLV when not empty.
	Description string
}

// Counters are the agent's totals since New, over all ports.
type Counters struct {
	// FramesSent: LLDPDUs written, shutdown frames included.
	FramesSent uint64
	// SendErrors: writes that failed (e.g. link down).
	SendErrors uint64
	// FramesReceived: frames read from the sockets, whatever they held.
	FramesReceived uint64
	// Malformed: received frames that did not decode; dropped.
	Malformed uint64
	// Ignored: well-formed frames not for us (our own source MAC, a
	// destination that is not an LLDP group address).
	Ignored uint64
	// DroppedByBound: frames of new neighbours refused by the overall bound.
	DroppedByBound uint64
	// Evicted: neighbours removed to make room under the per-port bound.
	Evicted uint64
	// Expired: neighbours removed because their TTL ran out.
	Expired uint64
	// EventsDropped: events not delivered because the channel was full.
	EventsDropped uint64
	// OpenErrors: failed attempts to open a port's socket.
	OpenErrors uint64
}

type config struct {
	sysName, sysDesc string
	mgmt             []netip.Addr
	caps             Capabilities
	interval         time.Duration
	hold             int
	fastCount        int
	fastInterval     time.Duration
	maxPerPort       int
	maxTotal         int
	eventBuffer      int
	retryMin         time.Duration
	retryMax         time.Duration
	log              *slog.Logger
	dial             Dialer
	now              func() time.Time
	// quietStop: the end of Run sends no shutdown frames.
	quietStop bool
}

// Option configures an Agent.
type Option func(*config)

// WithQuietStop makes the end of Run send no shutdown frames: the
// neighbours keep this agent's entry until its TTL runs out. For a daemon
// that stops to be restarted (an upgrade, a crash loop) the link has not
// gone away, and a shutdown frame would make every neighbour, and whatever
// follows their tables (a controller tearing down a BGP session), flap.
// Ports removed with SetPorts still get a shutdown frame.
func WithQuietStop() Option { return func(c *config) { c.quietStop = true } }

// WithSystemName sets the system name TLV (e.g. the switch hostname).
func WithSystemName(s string) Option { return func(c *config) { c.sysName = s } }

// WithSystemDescription sets the system description TLV.
func WithSystemDescription(s string) Option { return func(c *config) { c.sysDesc = s } }

// WithMgmtAddrs sets the management addresses sent (none by default).
func WithMgmtAddrs(a ...netip.Addr) Option {
	return func(c *config) { c.mgmt = slices.Clone(a) }
}

// WithCapabilities sets the system capabilities sent; the default is
// bridge+router, supported and enabled.
func WithCapabilities(caps Capabilities) Option { return func(c *config) { c.caps = caps } }

// WithInterval sets the transmit interval (default 30 s).
func WithInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// WithHoldMultiplier sets the TTL we announce as interval*n (default 4).
func WithHoldMultiplier(n int) Option { return func(c *config) { c.hold = n } }

// WithFastStart sets the fast-start burst: count frames every interval
// after a port opens or a new neighbour appears on it (default 4 at 1 s;
// count 0 disables it).
func WithFastStart(count int, interval time.Duration) Option {
	return func(c *config) { c.fastCount, c.fastInterval = count, interval }
}

// WithBounds sets the neighbour bounds (default 16 per port, 4096 overall).
func WithBounds(perPort, total int) Option {
	return func(c *config) { c.maxPerPort, c.maxTotal = perPort, total }
}

// WithEventBuffer sets the capacity of the Events channel (default 1024).
func WithEventBuffer(n int) Option { return func(c *config) { c.eventBuffer = n } }

// WithRetry sets the backoff for reopening a port whose socket failed or
// could not be opened (default 1 s doubling up to 30 s).
func WithRetry(minWait, maxWait time.Duration) Option {
	return func(c *config) { c.retryMin, c.retryMax = minWait, maxWait }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithDialer replaces ListenPort, e.g. with an in-memory link in tests or a
// dialer that opens sockets in another network namespace.
func WithDialer(d Dialer) Option { return func(c *config) { c.dial = d } }

// WithClock sets the clock used for LastSeen and expiry (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Agent runs LLDP on a changing set of ports: it sends our frames and
// keeps the neighbour table. Create it with New, set ports with SetPorts
// (before or while Run runs), and run it with Run.
type Agent struct {
	cfg     config
	chassis ChassisID
	// interval and ttl are time.Durations SetInterval may change.
	interval atomic.Int64
	ttl      atomic.Int64
	table    *Table
	log      *slog.Logger

	events   chan Event
	emitMu   sync.Mutex // orders table changes with their events
	closed   bool       // events channel closed; guarded by emitMu
	counters struct {
		sent, sendErr, recv, malformed, ignored, refused, eventsDropped, openErr atomic.Uint64
	}

	setMu   sync.Mutex // serialises SetPorts and Run's start/stop
	mu      sync.Mutex // guards the fields below
	want    map[string]Port
	workers map[string]*worker
	runCtx  context.Context // set while Run runs
	started bool
}

type worker struct {
	port Port
	// cancel stops the worker because its port was removed (the cause
	// is errPortRemoved; the end of Run cancels through the run context).
	cancel func()
	done   chan struct{}
}

// errPortRemoved is the cancel cause of a worker whose port SetPorts
// removed.
var errPortRemoved = errors.New("lldp: port removed")

// New returns an agent announcing chassis (the switch's MAC) as its
// chassis ID.
func New(chassis net.HardwareAddr, opts ...Option) (*Agent, error) {
	cfg := config{
		caps:         Capabilities{Supported: CapBridge | CapRouter, Enabled: CapBridge | CapRouter},
		interval:     DefaultInterval,
		hold:         DefaultHoldMultiplier,
		fastCount:    DefaultFastCount,
		fastInterval: DefaultFastInterval,
		maxPerPort:   DefaultMaxPerPort,
		maxTotal:     DefaultMaxTotal,
		eventBuffer:  DefaultEventBuffer,
		retryMin:     DefaultRetryMin,
		retryMax:     DefaultRetryMax,
		dial:         ListenPort,
		now:          time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if len(chassis) != 6 {
		return nil, fmt.Errorf("chassis MAC %q: want 6 bytes", chassis)
	}
	if cfg.interval <= 0 || cfg.hold < 1 || cfg.fastCount < 0 ||
		(cfg.fastCount > 0 && cfg.fastInterval <= 0) {
		return nil, errors.New("lldp options: interval, hold multiplier and fast-start interval must be positive")
	}
	if cfg.retryMin <= 0 || cfg.retryMax < cfg.retryMin {
		return nil, errors.New("lldp options: retry backoff must be positive and min <= max")
	}
	if cfg.eventBuffer < 0 {
		cfg.eventBuffer = 0
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	ttl := ttlOf(cfg.interval, cfg.hold)
	// Check the frame encodes once, so later failures can only be I/O.
	probe := Frame{ChassisID: MACChassisID(chassis), PortID: InterfaceNamePortID("x"), TTL: ttl,
		SystemName: cfg.sysName, SystemDescription: cfg.sysDesc, Capabilities: cfg.caps, MgmtAddrs: cfg.mgmt}
	if _, err := probe.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("checking our LLDPDU: %w", err)
	}
	a := &Agent{
		cfg:     cfg,
		chassis: MACChassisID(chassis),
		table:   NewTable(cfg.maxPerPort, cfg.maxTotal),
		log:     cfg.log,
		events:  make(chan Event, cfg.eventBuffer),
		want:    make(map[string]Port),
		workers: make(map[string]*worker),
	}
	a.interval.Store(int64(cfg.interval))
	a.ttl.Store(int64(ttl))
	return a, nil
}

// ttlOf is the hold time announced for interval: interval * hold, rounded
// up to whole seconds, at most maxTTL.
func ttlOf(interval time.Duration, hold int) time.Duration {
	ttl := (interval * time.Duration(hold)).Round(time.Second)
	if ttl < interval*time.Duration(hold) {
		ttl += time.Second
	}
	return min(ttl, maxTTL)
}

// TTL is the hold time we announce (interval * hold multiplier).
func (a *Agent) TTL() time.Duration { return time.Duration(a.ttl.Load()) }

// SetInterval changes the transmit interval (and so the announced TTL)
// while the agent runs; every port sends a frame with the new TTL at its
// next transmission, which happens within the old interval.
func (a *Agent) SetInterval(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("lldp: interval %v is not positive", d)
	}
	a.interval.Store(int64(d))
	a.ttl.Store(int64(ttlOf(d, a.cfg.hold)))
	return nil
}

// Events returns the channel of neighbour changes (added, changed,
// removed; never plain refreshes). It is closed when Run returns. Sends
// never block: when the buffer is full the event is dropped and counted in
// Counters.EventsDropped; Neighbors stays authoritative for a resync.
func (a *Agent) Events() <-chan Event { return a.events }

// Neighbors returns the current neighbours sorted by port, chassis, port ID.
func (a *Agent) Neighbors() []Neighbor { return a.table.Neighbors() }

// Counters returns the totals so far.
func (a *Agent) Counters() Counters {
	tc := a.table.Counters()
	return Counters{
		FramesSent:     a.counters.sent.Load(),
		SendErrors:     a.counters.sendErr.Load(),
		FramesReceived: a.counters.recv.Load(),
		Malformed:      a.counters.malformed.Load(),
		Ignored:        a.counters.ignored.Load(),
		DroppedByBound: a.counters.refused.Load(),
		Evicted:        tc.Evicted,
		Expired:        tc.Expired,
		EventsDropped:  a.counters.eventsDropped.Load(),
		OpenErrors:     a.counters.openErr.Load(),
	}
}

// SetPorts sets the ports LLDP runs on. It is declarative and idempotent:
// new ports are started, missing ones stopped (a shutdown frame is sent and
// their neighbours are removed), ports whose description changed are
// restarted, unchanged ones are left alone. Before Run it only records the
// set. ctx bounds the wait for stopped ports.
func (a *Agent) SetPorts(ctx context.Context, ports []Port) error {
	want := make(map[string]Port, len(ports))
	for _, p := range ports {
		if p.Name == "" {
			return errors.New("setting ports: empty port name")
		}
		if _, dup := want[p.Name]; dup {
			return fmt.Errorf("setting ports: port %s listed twice", p.Name)
		}
		if len(p.Description) > maxStringLen {
			return fmt.Errorf("setting ports: port %s: description longer than %d bytes", p.Name, maxStringLen)
		}
		if len(p.Name) > maxIDLen {
			return fmt.Errorf("setting ports: port name %q longer than %d bytes", p.Name, maxIDLen)
		}
		want[p.Name] = p
	}

	a.setMu.Lock()
	defer a.setMu.Unlock()

	a.mu.Lock()
	a.want = want
	runCtx := a.runCtx
	var stop []*worker
	for name, w := range a.workers {
		if p, ok := want[name]; !ok || p != w.port {
			stop = append(stop, w)
			delete(a.workers, name)
		}
	}
	a.mu.Unlock()

	err := a.stopWorkers(ctx, stop)
	if runCtx != nil {
		a.startWorkers(runCtx)
	}
	if err != nil {
		return fmt.Errorf("setting ports: %w", err)
	}
	return nil
}

// Run runs LLDP on the ports set by SetPorts until ctx ends, then sends
// shutdown frames, closes the sockets and the Events channel. It returns
// nil when ctx ended and may be called once.
func (a *Agent) Run(ctx context.Context) error {
	a.setMu.Lock()
	a.mu.Lock()
	if a.started {
		a.mu.Unlock()
		a.setMu.Unlock()
		return errors.New("lldp agent: Run called twice")
	}
	a.started = true
	a.runCtx = ctx
	a.mu.Unlock()
	a.startWorkers(ctx)
	a.setMu.Unlock()

	a.log.Info("lldp started", "chassis", a.chassis.String(), "ttl", a.TTL())

	tick := time.NewTicker(expiryTick)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			a.expire()
		}
	}

	a.setMu.Lock()
	a.mu.Lock()
	a.runCtx = nil
	var stop []*worker
	for name, w := range a.workers {
		stop = append(stop, w)
		delete(a.workers, name)
	}
	a.mu.Unlock()
	// The run context is done; give the workers a fresh bound for their
	// shutdown frames instead.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	err := a.stopWorkers(stopCtx, stop)
	cancel()
	a.setMu.Unlock()

	a.emitMu.Lock()
	a.closed = true
	close(a.events)
	a.emitMu.Unlock()
	a.log.Info("lldp stopped")
	if err != nil {
		return fmt.Errorf("stopping lldp: %w", err)
	}
	return nil
}

// startWorkers starts a worker for every wanted port without one. Called
// with setMu held.
func (a *Agent) startWorkers(runCtx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, p := range a.want {
		if _, ok := a.workers[name]; ok {
			continue
		}
		wctx, cancel := context.WithCancelCause(runCtx)
		w := &worker{port: p, cancel: func() { cancel(errPortRemoved) }, done: make(chan struct{})}
		a.workers[name] = w
		go func() {
			defer close(w.done)
			a.runPort(wctx, p)
		}()
	}
}

// stopWorkers cancels the workers and waits for them; their ports'
// neighbours are removed. Called with setMu held, mu not held.
func (a *Agent) stopWorkers(ctx context.Context, ws []*worker) error {
	for _, w := range ws {
		w.cancel()
	}
	var errs []error
	for _, w := range ws {
		select {
		case <-w.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("waiting for port %s to stop: %w", w.port.Name, ctx.Err()))
		}
		a.withEvents(func() []Event { return a.table.RemovePort(w.port.Name) })
	}
	return errors.Join(errs...)
}

// runPort opens the port's socket and serves it until ctx ends, reopening
// with backoff when opening or the socket fails (a port that is down or
// gone). The first failure of a streak is a warning, the rest debug, so a
// port that stays down does not fill the log.
func (a *Agent) runPort(ctx context.Context, p Port) {
	log := a.log.With("port", p.Name)
	wait := a.cfg.retryMin
	failing := false
	for {
		conn, err := a.cfg.dial(ctx, p.Name)
		if err != nil {
			a.counters.openErr.Add(1)
		} else {
			log.Debug("lldp port open")
			start := time.Now()
			err = a.servePort(ctx, p, conn, log)
			a.withEvents(func() []Event { return a.table.RemovePort(p.Name) })
			if ctx.Err() != nil {
				return
			}
			if time.Since(start) >= a.cfg.retryMax {
				// It worked for a while: this is a new failure streak.
				wait, failing = a.cfg.retryMin, false
			}
		}
		level := slog.LevelDebug
		if !failing {
			level, failing = slog.LevelWarn, true
		}
		log.Log(ctx, level, "lldp port unavailable; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, a.cfg.retryMax)
	}
}

// servePort sends our frames on conn and reads the neighbours' until ctx
// ends (it then sends a shutdown frame) or reading fails.
func (a *Agent) servePort(ctx context.Context, p Port, conn Conn, log *slog.Logger) error {
	hw := slices.Clone(conn.HardwareAddr())
	frame, err := a.ethernetFrame(p, hw, a.TTL())
	if err == nil {
		var shutdown []byte
		shutdown, err = a.ethernetFrame(Port{Name: p.Name}, hw, 0)
		if err == nil {
			return a.serve(ctx, p, conn, hw, frame, shutdown, log)
		}
	}
	_ = conn.Close()
	return err
}

func (a *Agent) serve(ctx context.Context, p Port, conn Conn, hw net.HardwareAddr, frame, shutdown []byte, log *slog.Logger) error {
	newNeighbor := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() { readErr <- a.readLoop(p.Name, conn, hw, newNeighbor, log) }()

	send := func(b []byte) {
		if err := conn.WriteFrame(b); err != nil {
			a.counters.sendErr.Add(1)
			log.Debug("lldp send failed", "err", err)
			return
		}
		a.counters.sent.Add(1)
	}

	fastLeft := a.cfg.fastCount
	frameTTL := time.Duration(-1) // re-encoded at the first send, so a SetInterval racing servePort is caught
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			// A removed port says goodbye; a stopping agent only when
			// it is not WithQuietStop.
			if errors.Is(context.Cause(ctx), errPortRemoved) || !a.cfg.quietStop {
				send(shutdown)
			}
			_ = conn.Close()
			<-readErr
			return ctx.Err()
		case err := <-readErr:
			_ = conn.Close()
			return err
		case <-newNeighbor:
			// 802.1AB "new neighbour": restart fast transmission, unless a
			// burst is already under way (so a flood cannot make us chatty).
			if fastLeft == 0 && a.cfg.fastCount > 0 {
				fastLeft = a.cfg.fastCount
				timer.Reset(0)
			}
		case <-timer.C:
			if ttl := a.TTL(); ttl != frameTTL {
				// SetInterval changed the TTL we announce.
				if f, err := a.ethernetFrame(p, hw, ttl); err == nil {
					frame, frameTTL = f, ttl
				} else {
					log.Warn("lldp: encoding a frame with the new TTL", "err", err)
				}
			}
			send(frame)
			interval := time.Duration(a.interval.Load())
			next := interval
			if fastLeft > 0 {
				fastLeft--
				if fastLeft > 0 {
					next = min(a.cfg.fastInterval, interval)
				}
			}
			timer.Reset(next)
		}
	}
}

func (a *Agent) ethernetFrame(p Port, hw net.HardwareAddr, ttl time.Duration) ([]byte, error) {
	f := Frame{ChassisID: a.chassis, PortID: InterfaceNamePortID(p.Name), TTL: ttl}
	if ttl > 0 {
		f.PortDescription = p.Description
		f.SystemName = a.cfg.sysName
		f.SystemDescription = a.cfg.sysDesc
		f.Capabilities = a.cfg.caps
		f.MgmtAddrs = a.cfg.mgmt
	}
	pdu, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding LLDPDU for %s: %w", p.Name, err)
	}
	ef := ethernet.Frame{Destination: NearestBridge, Source: hw, EtherType: EtherType, Payload: pdu}
	b, err := ef.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding Ethernet frame for %s: %w", p.Name, err)
	}
	return b, nil
}

func (a *Agent) readLoop(port string, conn Conn, hw net.HardwareAddr, newNeighbor chan<- struct{}, log *slog.Logger) error {
	buf := make([]byte, maxFrameSize)
	for {
		n, err := conn.ReadFrame(buf)
		if err != nil {
			return fmt.Errorf("reading frame: %w", err)
		}
		a.counters.recv.Add(1)
		if a.handleFrame(port, hw, buf[:n], log) {
			select {
			case newNeighbor <- struct{}{}:
			default:
			}
		}
	}
}

// handleFrame decodes one received Ethernet frame and updates the table.
// It reports whether a new neighbour was added.
func (a *Agent) handleFrame(port string, hw net.HardwareAddr, b []byte, log *slog.Logger) bool {
	var ef ethernet.Frame
	if err := ef.UnmarshalBinary(b); err != nil {
		a.counters.malformed.Add(1)
		log.Debug("lldp malformed Ethernet frame dropped", "err", err)
		return false
	}
	if ef.EtherType != EtherType || bytes.Equal(ef.Source, hw) || !isLLDPGroup(ef.Destination) {
		a.counters.ignored.Add(1)
		return false
	}
	var f Frame
	if err := f.UnmarshalBinary(ef.Payload); err != nil {
		a.counters.malformed.Add(1)
		log.Debug("lldp malformed LLDPDU dropped", "src", ef.Source.String(), "err", err)
		return false
	}
	added := false
	a.withEvents(func() []Event {
		events, res := a.table.Update(port, &f, a.cfg.now())
		if res == RefusedByBound {
			a.counters.refused.Add(1)
			log.Debug("lldp neighbour refused: table full", "chassis", f.ChassisID.String())
		}
		for _, e := range events {
			added = added || e.Type == Added
		}
		return events
	})
	return added
}

func isLLDPGroup(dst net.HardwareAddr) bool {
	return bytes.Equal(dst, NearestBridge) || bytes.Equal(dst, NearestNonTPMRBridge) ||
		bytes.Equal(dst, NearestCustomerBridge)
}

func (a *Agent) expire() {
	a.withEvents(func() []Event { return a.table.Expire(a.cfg.now()) })
}

// withEvents runs a table change and publishes its events under emitMu, so
// events leave in the order the table changed. Sends never block.
func (a *Agent) withEvents(change func() []Event) {
	a.emitMu.Lock()
	defer a.emitMu.Unlock()
	events := change()
	// A batch with an eviction is a full port, likely a flood: keep those
	// at debug level so a flood cannot flood the log too.
	level := slog.LevelInfo
	for _, e := range events {
		if e.Reason == ReasonEvicted {
			level = slog.LevelDebug
		}
	}
	for _, e := range events {
		n := e.Neighbor
		attrs := []any{"event", e.Type.String(), "port", n.Port, "chassis", n.ChassisID.String(),
			"port_id", n.PortID.String(), "system_name", n.SystemName}
		if e.Type == Removed {
			attrs = append(attrs, "reason", string(e.Reason))
		}
		a.log.Log(context.Background(), level, "lldp neighbour", attrs...)
		if a.closed {
			continue
		}
		select {
		case a.events <- e:
		default:
			a.counters.eventsDropped.Add(1)
		}
	}
}
