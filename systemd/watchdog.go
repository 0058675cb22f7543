package systemd

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// ErrNoHeartbeat is the health-check failure of a Watchdog whose loop did
// not call Alive since the previous tick.
var ErrNoHeartbeat = errors.New("no heartbeat since the last watchdog tick")

// Watchdog pings systemd's watchdog (WATCHDOG=1) every half of the watchdog
// interval, but only while the daemon proves it is alive: by default its
// main loop must have called Alive since the previous tick. A loop that
// hangs (a stuck reconcile, a deadlock) stops the pings, so systemd kills
// the service after WatchdogSec= and Restart=on-failure starts it again. A
// goroutine that merely keeps the process running is not enough.
//
// A nil *Watchdog and one with a zero interval are disabled: Alive does
// nothing and Run returns at once.
type Watchdog struct {
	n        *Notifier
	interval time.Duration
	check    func() error
	log      *slog.Logger

	alive   atomic.Bool
	missing bool // the previous tick did not ping; only Run's goroutine uses it
}

// WatchdogOption configures a Watchdog.
type WatchdogOption func(*Watchdog)

// WithLogger logs missed pings (once per outage, and the recovery) to log.
// The default discards them.
func WithLogger(log *slog.Logger) WatchdogOption {
	return func(w *Watchdog) {
		if log != nil {
			w.log = log
		}
	}
}

// WithCheck replaces the Alive heartbeat by check: a tick pings exactly when
// check returns nil. For daemons without one loop to watch (the controller:
// e.g. a cheap read of its store). check runs on the watchdog goroutine and
// must return well within the interval.
func WithCheck(check func() error) WatchdogOption {
	return func(w *Watchdog) {
		if check != nil {
			w.check = check
		}
	}
}

// NewWatchdog returns a Watchdog that sends its pings through n. interval is
// the timeout systemd enforces (see Notifier.WatchdogInterval); the watchdog
// ticks every interval/2. interval <= 0 disables it.
func NewWatchdog(n *Notifier, interval time.Duration, opts ...WatchdogOption) *Watchdog {
	w := &Watchdog{n: n, interval: interval, log: slog.New(slog.DiscardHandler)}
	w.check = w.heartbeat
	for _, o := range opts {
		o(w)
	}
	return w
}

// Watchdog returns a Watchdog for the interval systemd set for this process
// (WatchdogSec=); it is disabled when there is none.
func (n *Notifier) Watchdog(opts ...WatchdogOption) *Watchdog {
	d, _ := n.WatchdogInterval()
	return NewWatchdog(n, d, opts...)
}

// Enabled reports whether the watchdog pings at all.
func (w *Watchdog) Enabled() bool { return w != nil && w.interval > 0 && w.n.Enabled() }

// Period returns how often the watchdog ticks (half the interval). The
// watched loop must call Alive at least this often, also while it has
// nothing to do or waits for the controller (e.g. from a ticker in its
// select). It is 0 when the watchdog is disabled: then the loop need not
// call Alive, and must not pass 0 to time.NewTicker.
func (w *Watchdog) Period() time.Duration {
	if !w.Enabled() {
		return 0
	}
	return w.interval / 2
}

// Alive records a heartbeat of the watched loop: the next tick pings.
// Cheap and safe for concurrent use.
func (w *Watchdog) Alive() {
	if w != nil {
		w.alive.Store(true)
	}
}

// Run ticks until ctx is done and returns nil then; it returns at once when
// the watchdog is disabled. Start it on its own goroutine.
func (w *Watchdog) Run(ctx context.Context) error {
	if !w.Enabled() {
		return nil
	}
	t := time.NewTicker(w.Period())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.tick()
		}
	}
}

// tick pings when the health check passes, and reports whether it did.
func (w *Watchdog) tick() bool {
	if err := w.check(); err != nil {
		if !w.missing {
			w.log.Warn("not pinging the systemd watchdog: daemon looks stuck", "err", err, "timeout", w.interval)
		}
		w.missing = true
		return false
	}
	if err := w.n.WatchdogPing(); err != nil {
		w.log.Warn("pinging the systemd watchdog", "err", err)
		return false
	}
	if w.missing {
		w.log.Info("systemd watchdog pings resumed")
	}
	w.missing = false
	return true
}

func (w *Watchdog) heartbeat() error {
	if !w.alive.Swap(false) {
		return ErrNoHeartbeat
	}
	return nil
}
