// Package watch fans compiled device configs out to the watch streams of
// their devices. It owns the subscriber registry and the per-subscriber
// latest-wins slots; it must not read the store (callers publish after their
// transaction committed) and must not know about gRPC.
package watch

import (
	"context"
	"sync"

	"github.com/metalfabric/fabric/controlplane/model"
)

// Hub is a registry of per-device subscribers. The zero value is not usable;
// call NewHub.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{subs: make(map[string]map[*Subscription]struct{})}
}

// Subscription receives the configs published for one device. Only the
// newest unread config is kept: a slow reader skips intermediate versions and
// never blocks the publisher or other subscribers.
type Subscription struct {
	hub    *Hub
	device string
	wake   chan struct{} // capacity 1

	mu      sync.Mutex
	pending *model.DeviceConfig
	// seen is the highest version handed out or pending; older publishes
	// (from commits that notify out of order) are dropped.
	seen uint64
}

// Subscribe registers a subscriber for device. Call Close when done.
func (h *Hub) Subscribe(device string) *Subscription {
	s := &Subscription{hub: h, device: device, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.subs[device]
	if set == nil {
		set = make(map[*Subscription]struct{})
		h.subs[device] = set
	}
	set[s] = struct{}{}
	return s
}

// Subscribers returns how many subscribers device has.
func (h *Hub) Subscribers(device string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[device])
}

// Publish offers each config to the subscribers of its device. It never
// blocks on a subscriber. Configs are shared between subscribers and must
// not be modified afterwards.
func (h *Hub) Publish(cfgs ...model.DeviceConfig) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cfg := range cfgs {
		for s := range h.subs[cfg.Hostname] {
			s.offer(cfg)
		}
	}
}

// Close unregisters the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	set := s.hub.subs[s.device]
	delete(set, s)
	if len(set) == 0 {
		delete(s.hub.subs, s.device)
	}
}

// MarkSeen records that the reader already has version v, so publishes of v
// or older are not delivered.
func (s *Subscription) MarkSeen(v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v > s.seen {
		s.seen = v
	}
	if s.pending != nil && s.pending.Version <= v {
		s.pending = nil
	}
}

func (s *Subscription) offer(cfg model.DeviceConfig) {
	s.mu.Lock()
	if cfg.Version <= s.seen {
		s.mu.Unlock()
		return
	}
	s.seen = cfg.Version
	s.pending = &cfg
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already signalled; the reader will pick up the newest
	}
}

// Next blocks until a config newer than everything seen so far is available
// or ctx is done.
func (s *Subscription) Next(ctx context.Context) (model.DeviceConfig, error) {
	for {
		s.mu.Lock()
		if p := s.pending; p != nil {
			s.pending = nil
			s.mu.Unlock()
			return *p, nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return model.DeviceConfig{}, ctx.Err()
		case <-s.wake:
		}
	}
}
