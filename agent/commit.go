package agent

import (
	"context"
	"fmt"
	"time"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// Commit-confirm. A snapshot can cut the device off from its controller
// (a port moved into the wrong VRF, a route over the management path).
// With a commit-confirm window, every snapshot the controller sends is
// applied "unconfirmed": unless the agent has successful contact with a
// controller (a status report accepted, a registration, the next snapshot
// received) within the window after the apply, it applies the
// last-known-good snapshot from before again (rollback), and reports that
// in its status once a controller is reachable. The rolled-back version is
// not applied again when the controller resends it; the next newer version
// is. The last-known-good cache on disk is only written once a snapshot is
// confirmed, so a restart inside the window does not bring the
// unconfirmed one back.
//
// Everything here runs on the goroutine running Run, except the window,
// which SetCommitConfirm may change at any time (for the next apply).

// WithCommitConfirm sets the commit-confirm window (default 0: off).
func WithCommitConfirm(d time.Duration) Option {
	return func(a *Agent) { a.confirmWindow.Store(int64(d)) }
}

// SetCommitConfirm changes the commit-confirm window for the applies that
// follow (0: off).
func (a *Agent) SetCommitConfirm(d time.Duration) {
	if old := time.Duration(a.confirmWindow.Swap(int64(d))); old != d {
		a.log.Info("commit-confirm window changed", "from", old, "to", d)
	}
}

// pendingConfirm is an applied snapshot waiting for controller contact.
type pendingConfirm struct {
	cfg   *apiv1.DeviceConfig // the unconfirmed snapshot
	prev  *apiv1.DeviceConfig // what a rollback applies
	timer *time.Timer
}

// afterApply arms commit-confirm for a controller snapshot that was just
// applied (ok: without errors), or, when it is off, makes the snapshot the
// last-known-good one at once.
func (a *Agent) afterApply(cfg *apiv1.DeviceConfig, ok bool) {
	a.confirmed() // a newer snapshot supersedes a pending one
	window := time.Duration(a.confirmWindow.Load())
	if window <= 0 || a.lastGood == nil {
		if window > 0 {
			a.log.Info("commit-confirm: no earlier config to roll back to; version applied unconfirmed", "version", cfg.GetVersion())
		}
		if ok {
			a.keepGood(cfg)
		}
		return
	}
	a.pending = &pendingConfirm{cfg: cfg, prev: a.lastGood, timer: time.NewTimer(window)}
	a.pendingOK = ok
	a.log.Info("commit-confirm: waiting for controller contact", "version", cfg.GetVersion(), "window", window,
		"rollback_to", a.lastGood.GetVersion())
}

// keepGood makes cfg the last-known-good snapshot, in memory and on disk.
func (a *Agent) keepGood(cfg *apiv1.DeviceConfig) {
	a.lastGood = cfg
	if err := a.saveCache(cfg); err != nil {
		a.log.Warn("keeping the last-known-good config failed", "version", cfg.GetVersion(), "err", err)
	}
}

// confirmed notes successful contact with a controller: a pending snapshot
// is confirmed.
func (a *Agent) confirmed() {
	p := a.pending
	if p == nil {
		return
	}
	p.timer.Stop()
	a.pending = nil
	a.log.Info("commit-confirm: version confirmed by controller contact", "version", p.cfg.GetVersion())
	if a.pendingOK {
		a.keepGood(p.cfg)
	}
}

// confirmDeadline is the channel that fires when the pending snapshot's
// window ends; nil (never fires) without one.
func (a *Agent) confirmDeadline() <-chan time.Time {
	if a.pending == nil {
		return nil
	}
	return a.pending.timer.C
}

// rollback applies the snapshot from before the unconfirmed one.
func (a *Agent) rollback(ctx context.Context) {
	p := a.pending
	a.pending = nil
	v, to := p.cfg.GetVersion(), p.prev.GetVersion()
	a.log.Error("commit-confirm: no controller contact after applying a version; rolling back",
		"version", v, "rollback_to", to, "window", time.Duration(a.confirmWindow.Load()))
	a.refused = v
	a.applyLocal(ctx, p.prev)
	a.drift.mu.Lock()
	a.drift.rollback = &fabric.StepError{Step: "commit-confirm",
		Err: fmt.Errorf("version %d rolled back to %d: no controller contact within the commit-confirm window after applying it; it is not applied again, a newer version is", v, to)}
	a.drift.mu.Unlock()
	a.rollbacks.Add(1) // after the apply: who sees the count sees the rolled-back state
}

// clearRollback drops the rollback from the status once a version other
// than the refused one is applied.
func (a *Agent) clearRollback() {
	a.drift.mu.Lock()
	a.drift.rollback = nil
	a.drift.mu.Unlock()
}
