package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/metalfabric/fabric/bgp"
	"github.com/metalfabric/fabric/bgp/fib"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// Routing is the agent's routing subsystem (package bgp's Reconciler): it
// runs after the fabric reconciler, because sessions on machine ports need
// their VRF, and EVPN routes need the L3VNI's SVI and VXLAN device.
type Routing interface {
	Apply(ctx context.Context, d bgp.Desired) error
	// LinkDown resets the sessions on a port that lost carrier.
	LinkDown(ctx context.Context, iface string)
	Status(ctx context.Context) (bgp.Status, error)
	// Resync makes the kernel hold exactly the routes the subsystem
	// installed (after a drift repair recreated devices routes were on).
	Resync(ctx context.Context) error
	// Stop stops the speaker with graceful restart; kernel routes stay.
	Stop(ctx context.Context) error
}

// WithRouting turns routing on (default: off, the agent only reconciles
// the dataplane).
func WithRouting(r Routing) Option { return func(a *Agent) { a.routing = r } }

// routingStatusEvery is how often the agent checks whether the routing
// state changed enough to report (session state, counters).
const routingStatusEvery = 2 * time.Second

// applyRouting hands the routing part of a snapshot to the routing
// subsystem, with the L3VNI devices the fabric reconciler reached.
func (a *Agent) applyRouting(ctx context.Context, cfg *apiv1.DeviceConfig, state fabric.Actual) []fabric.StepError {
	if a.routing == nil {
		return nil
	}
	d, err := routingFromProto(cfg, state)
	if err != nil {
		return []fabric.StepError{{Step: "convert routing config", Err: err}}
	}
	if err := a.routing.Apply(ctx, d); err != nil {
		var out []fabric.StepError
		for _, e := range unjoin(err) {
			out = append(out, fabric.StepError{Step: "apply", Err: e})
		}
		return out
	}
	return nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			if e != nil {
				out = append(out, unjoin(e)...)
			}
		}
		return out
	}
	return []error{err}
}

// routingStatus returns the routing report, nil without routing.
func (a *Agent) routingStatus(ctx context.Context) *apiv1.Routing {
	if a.routing == nil {
		return nil
	}
	st, err := a.routing.Status(ctx)
	if err != nil {
		a.log.Warn("reading routing status", "err", err)
	}
	return routingToProto(st)
}

// routingChanged tells whether the routing state changed since the last
// report (then it is worth a report).
func (a *Agent) routingChanged(ctx context.Context) bool {
	sum := routingSummary(a.routingStatus(ctx))
	if sum == a.routingSum {
		return false
	}
	a.routingSum = sum
	return true
}

// routingEvent handles a kernel event for routing: a port that lost
// carrier resets its sessions at once (carrier tracks the last state seen
// per link). It reports whether the event is a route of the FIB
// programmer's own, which drift handling must not count or repair.
func (a *Agent) routingEvent(ctx context.Context, e fabric.Event, carrier map[string]bool) bool {
	if a.routing == nil {
		return false
	}
	switch e.Kind {
	case fabric.EventRoute:
		return e.Protocol == fib.Protocol || e.Protocol == LeakProtocol
	case fabric.EventLink:
		if e.Op == fabric.EventDelete {
			delete(carrier, e.Link)
			return false
		}
		was, known := carrier[e.Link]
		carrier[e.Link] = e.Carrier
		if (!known || was) && !e.Carrier {
			a.routing.LinkDown(ctx, e.Link)
		}
	}
	return false
}

// reapplyRouting runs after a drift repair: devices the repair recreated
// (an SVI, a VXLAN device) lost the routes and neighbour entries on them,
// and may have a new MAC. Called with drift.applyMu held.
func (a *Agent) reapplyRouting(ctx context.Context, state fabric.Actual) {
	if a.routing == nil || a.routingCfg == nil {
		return
	}
	if errs := a.applyRouting(context.WithoutCancel(ctx), a.routingCfg, state); len(errs) > 0 {
		a.log.Warn("routing after a drift repair", "err", errs[0].Err)
	}
	if err := a.routing.Resync(context.WithoutCancel(ctx)); err != nil {
		a.log.Warn("routing after a drift repair", "err", err)
	}
}

// routingSummary is what makes a routing report worth sending: session
// states and the counters, not uptimes.
func routingSummary(r *apiv1.Routing) string {
	if r == nil {
		return ""
	}
	s := fmt.Sprintf("%d/%d/%d/%d|", r.GetRoutesInstalled(), r.GetInstallFailures(), r.GetEvpnExported(), r.GetEvpnImported())
	for _, x := range r.GetSessions() {
		s += fmt.Sprintf("%s/%s=%s:%d:%d:%d:%d;", x.GetVrf(), x.GetPeer(), x.GetState(), x.GetReceived(), x.GetAccepted(), x.GetRejected(), x.GetInstalled())
	}
	return s
}

// RouterSysctls are the kernel settings a routing device needs: forwarding,
// routes over ports without carrier ignored (so ECMP moves off a cut uplink
// at once), and TCP listeners in the default VRF accepting sessions that
// arrive on VRF ports (machine sessions).
var RouterSysctls = map[string]string{
	"net/ipv4/ip_forward":                               "1",
	"net/ipv6/conf/all/forwarding":                      "1",
	"net/ipv4/conf/all/ignore_routes_with_linkdown":     "1",
	"net/ipv6/conf/all/ignore_routes_with_linkdown":     "1",
	"net/ipv4/tcp_l3mdev_accept":                        "1",
	"net/ipv4/conf/default/ignore_routes_with_linkdown": "1",
	"net/ipv6/conf/default/ignore_routes_with_linkdown": "1",
}

// SetRouterSysctls writes RouterSysctls in the current network namespace.
func SetRouterSysctls() error {
	var errs []error
	for k, v := range RouterSysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("setting %s=%s: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}
