package systemd

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestWatchdogPingsOnlyAfterAlive drives the ticks by hand: a tick pings
// exactly when the loop called Alive since the previous tick.
func TestWatchdogPingsOnlyAfterAlive(t *testing.T) {
	f := newFakeSystemd(t)
	w := NewWatchdog(NewNotifier(), 30*time.Second)
	if got, want := w.Period(), 15*time.Second; got != want {
		t.Errorf("Period() = %v, want %v", got, want)
	}
	var got []bool
	got = append(got, w.tick()) // loop has not turned yet
	w.Alive()
	got = append(got, w.tick())
	got = append(got, w.tick()) // stuck: no Alive since the last ping
	w.Alive()
	w.Alive() // several heartbeats still make one ping
	got = append(got, w.tick())
	if diff := cmp.Diff([]bool{false, true, false, true}, got); diff != "" {
		t.Errorf("pinged per tick (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"WATCHDOG=1", "WATCHDOG=1"}, f.recv(100*time.Millisecond)); diff != "" {
		t.Errorf("datagrams (-want +got):\n%s", diff)
	}
}

// TestWatchdogStuckLoop runs the real ticker: a loop that stops calling
// Alive gets no more pings, however long it hangs.
func TestWatchdogStuckLoop(t *testing.T) {
	f := newFakeSystemd(t)
	ctx, cancel := context.WithCancel(t.Context())
	w := NewWatchdog(NewNotifier(), 20*time.Millisecond) // ticks every 10ms
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	w.Alive()
	if diff := cmp.Diff([]string{"WATCHDOG=1"}, f.recvN(1)); diff != "" {
		t.Errorf("after Alive (-want +got):\n%s", diff)
	}
	// The loop hangs now: 20 ticks pass without a heartbeat.
	if got := f.recv(200 * time.Millisecond); len(got) != 0 {
		t.Errorf("a stuck loop was pinged: %q", got)
	}
	w.Alive() // it recovers
	if diff := cmp.Diff([]string{"WATCHDOG=1"}, f.recvN(1)); diff != "" {
		t.Errorf("after recovery (-want +got):\n%s", diff)
	}
	cancel()
	wg.Wait()
	w.Alive()
	if got := f.recv(50 * time.Millisecond); len(got) != 0 {
		t.Errorf("pinged after Run returned: %q", got)
	}
}

func TestWatchdogWithCheck(t *testing.T) {
	f := newFakeSystemd(t)
	healthy := true
	w := NewWatchdog(NewNotifier(), time.Second, WithCheck(func() error {
		if !healthy {
			return errors.New("store unreadable")
		}
		return nil
	}))
	got := []bool{w.tick(), w.tick()} // no Alive needed with a check
	healthy = false
	got = append(got, w.tick())
	healthy = true
	got = append(got, w.tick())
	if diff := cmp.Diff([]bool{true, true, false, true}, got); diff != "" {
		t.Errorf("pinged per tick (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}, f.recv(100*time.Millisecond)); diff != "" {
		t.Errorf("datagrams (-want +got):\n%s", diff)
	}
}

func TestWatchdogFromEnvironment(t *testing.T) {
	newFakeSystemd(t)
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "4000000")
	if got, want := NewNotifier().Watchdog().Period(), 2*time.Second; got != want {
		t.Errorf("Period() with WATCHDOG_USEC=4000000 = %v, want %v", got, want)
	}
	t.Setenv("WATCHDOG_USEC", "")
	w := NewNotifier().Watchdog()
	if w.Enabled() || w.Period() != 0 {
		t.Errorf("watchdog enabled without WATCHDOG_USEC")
	}
}

func TestWatchdogDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for name, w := range map[string]*Watchdog{
		"nil":             nil,
		"zero interval":   NewWatchdog(NewNotifier(), 0),
		"without systemd": NewWatchdog(NewNotifier(), time.Second),
	} {
		if w.Enabled() {
			t.Errorf("%s: Enabled() = true", name)
		}
		w.Alive() // must not panic
		done := make(chan error, 1)
		go func() { done <- w.Run(t.Context()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run = %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Run of a disabled watchdog did not return", name)
		}
	}
}
