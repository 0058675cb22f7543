package agent

import (
	"context"
	"time"

	"github.com/metalfabric/fabric/bgp"
	"github.com/metalfabric/fabric/lldp"
)

// Stats is a point-in-time view of the agent for metrics. It is safe to
// read from any goroutine while Run runs.
type Stats struct {
	// DesiredVersion is the newest snapshot version received from a
	// controller (0 before the first).
	DesiredVersion uint64
	// AppliedVersion is the version last applied without errors.
	AppliedVersion uint64
	// Drift is what drift handling did (see DriftStats).
	Drift DriftStats
	// Rollbacks counts commit-confirm rollbacks (commit.go).
	Rollbacks uint64
	// Routing is the routing subsystem's status; nil without routing.
	Routing *bgp.Status
	// LLDP is nil without LLDP or before it started.
	LLDP *LLDPStats
}

// LLDPStats are LLDP's neighbour count and frame counters.
type LLDPStats struct {
	Neighbors int
	Counters  lldp.Counters
}

// Observer receives the events metrics count. Its methods are called from
// the agent's goroutines and must be quick and safe for concurrent use.
type Observer interface {
	// Applied is called after every snapshot apply (err nil: fully
	// applied), with how long the reconcilers took.
	Applied(version uint64, took time.Duration, err error)
}

// WithObserver sets the observer of applies (default: none).
func WithObserver(o Observer) Option { return func(a *Agent) { a.observer = o } }

// Stats returns the agent's current stats. It asks the routing subsystem
// for its status, bounded by ctx.
func (a *Agent) Stats(ctx context.Context) Stats {
	s := Stats{
		DesiredVersion: a.desired.Load(),
		AppliedVersion: a.appliedVersion.Load(),
		Drift:          a.DriftStats(),
		Rollbacks:      a.rollbacks.Load(),
	}
	if a.routing != nil {
		st, err := a.routing.Status(ctx)
		if err != nil {
			a.log.Debug("reading routing status for stats", "err", err)
		}
		s.Routing = &st
	}
	if a.nbr != nil {
		a.nbr.mu.Lock()
		la := a.nbr.lldp
		a.nbr.mu.Unlock()
		if la != nil {
			s.LLDP = &LLDPStats{Neighbors: len(la.Neighbors()), Counters: la.Counters()}
		}
	}
	return s
}
