package watch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/watch"
)

func cfg(device string, v uint64) model.DeviceConfig {
	return model.DeviceConfig{Hostname: device, Version: v, Role: model.RoleLeaf}
}

func next(t *testing.T, s *watch.Subscription) model.DeviceConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return c
}

func TestLatestWins(t *testing.T) {
	h := watch.NewHub()
	s := h.Subscribe("leaf1")
	defer s.Close()
	for v := uint64(1); v <= 5; v++ {
		h.Publish(cfg("leaf1", v))
	}
	h.Publish(cfg("leaf1", 3)) // late publish of an older commit
	if got := next(t, s).Version; got != 5 {
		t.Errorf("Next after 5 publishes = version %d, want 5", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with nothing new = %v, %v; want DeadlineExceeded", c, err)
	}
}

func TestOnlyOwnDevice(t *testing.T) {
	h := watch.NewHub()
	s1 := h.Subscribe("leaf1")
	defer s1.Close()
	s2 := h.Subscribe("leaf2")
	defer s2.Close()
	h.Publish(cfg("leaf2", 7))
	if got := next(t, s2); got.Hostname != "leaf2" || got.Version != 7 {
		t.Errorf("leaf2 got %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c, err := s1.Next(ctx); err == nil {
		t.Errorf("leaf1 received %+v published for leaf2", c)
	}
}

func TestMarkSeen(t *testing.T) {
	h := watch.NewHub()
	s := h.Subscribe("leaf1")
	defer s.Close()
	h.Publish(cfg("leaf1", 4))
	s.MarkSeen(4) // the reader loaded version 4 from the store itself
	h.Publish(cfg("leaf1", 3))
	h.Publish(cfg("leaf1", 4))
	h.Publish(cfg("leaf1", 5))
	if got := next(t, s).Version; got != 5 {
		t.Errorf("Next = version %d, want 5", got)
	}
}

func TestSubscribersAndClose(t *testing.T) {
	h := watch.NewHub()
	a := h.Subscribe("leaf1")
	b := h.Subscribe("leaf1")
	if got := h.Subscribers("leaf1"); got != 2 {
		t.Errorf("Subscribers = %d, want 2", got)
	}
	a.Close()
	a.Close()
	b.Close()
	if got := h.Subscribers("leaf1"); got != 0 {
		t.Errorf("Subscribers after Close = %d, want 0", got)
	}
	h.Publish(cfg("leaf1", 1)) // no subscribers: no-op
}

// TestSlowWatcherDoesNotDelayOthers publishes many versions while one
// subscriber never reads; every reading subscriber sees the last version and
// the publisher never blocks.
func TestSlowWatcherDoesNotDelayOthers(t *testing.T) {
	h := watch.NewHub()
	blocked := h.Subscribe("leaf1") // never reads until the end
	defer blocked.Close()

	const watchers, versions = 20, 500
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	final := make([]uint64, watchers)
	for i := range watchers {
		s := h.Subscribe("leaf1")
		wg.Go(func() {
			defer s.Close()
			var last uint64
			for last < versions {
				c, err := s.Next(ctx)
				if err != nil {
					t.Errorf("watcher %d: Next: %v (last %d)", i, err, last)
					return
				}
				if c.Version <= last {
					t.Errorf("watcher %d: version went from %d to %d", i, last, c.Version)
				}
				last = c.Version
			}
			final[i] = last
		})
	}

	publishDone := make(chan struct{})
	go func() {
		defer close(publishDone)
		for v := uint64(1); v <= versions; v++ {
			h.Publish(cfg("leaf1", v))
		}
	}()
	select {
	case <-publishDone:
	case <-ctx.Done():
		t.Fatal("publisher blocked")
	}
	wg.Wait()
	for i, v := range final {
		if v != versions {
			t.Errorf("watcher %d ended at version %d, want %d", i, v, versions)
		}
	}
	if got := next(t, blocked).Version; got != versions {
		t.Errorf("blocked watcher finally got version %d, want %d", got, versions)
	}
}

func TestNextCanceled(t *testing.T) {
	h := watch.NewHub()
	s := h.Subscribe("leaf1")
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.Next(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after cancel: err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after cancel")
	}
}
