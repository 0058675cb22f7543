//go:build linux

package fabric_test

import (
	"context"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/fabric/fabrictest"
)

func TestPrivilegedWatchEvents(t *testing.T) {
	ns, h := fabrictest.NewNetns(t)
	ctx, cancel := context.WithCancel(t.Context())
	events, err := fabric.WatchEvents(ctx, fabric.WithEventNetNS(int(ns)))
	if err != nil {
		t.Fatalf("WatchEvents: %v", err)
	}
	var got []fabric.Event
	// waitEvent waits for an event whose String is want, keeping all events
	// seen in got.
	waitEvent := func(want string) {
		t.Helper()
		match := func(e fabric.Event) bool { return e.String() == want }
		if slices.ContainsFunc(got, match) {
			return
		}
		deadline := time.After(10 * time.Second)
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatal("event channel closed")
				}
				got = append(got, e)
				if match(e) {
					return
				}
			case <-deadline:
				t.Fatalf("no event %q; got %v", want, got)
			}
		}
	}

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ev0"}, PeerName: "ev1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth: %v", err)
	}
	waitEvent("link add ev0")
	waitEvent("link add ev1")

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("adding bridge: %v", err)
	}
	waitEvent("link add br0")
	ev1, err := h.LinkByName("ev1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMaster(ev1, br); err != nil {
		t.Fatalf("enslaving ev1: %v", err)
	}
	waitEvent("link change ev1")

	ev0, err := h.LinkByName("ev0")
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(ev0, addr); err != nil {
		t.Fatalf("adding an address: %v", err)
	}
	waitEvent("addr add 192.0.2.1/24 on ev0")
	waitEvent("route add 192.0.2.1/32 table 255 proto kernel on ev0") // the local route
	if err := h.AddrDel(ev0, addr); err != nil {
		t.Fatalf("deleting the address: %v", err)
	}
	waitEvent("addr delete 192.0.2.1/24 on ev0")

	if err := h.LinkDel(ev0); err != nil {
		t.Fatalf("deleting veth: %v", err)
	}
	waitEvent("link delete ev0")
	waitEvent("link delete ev1")

	for _, e := range got {
		if !slices.Contains([]string{"ev0", "ev1", "br0", "lo", ""}, e.Link) {
			t.Errorf("event %v is about a link outside the test's netns", e)
		}
	}
	t.Logf("%d events: %v", len(got), got)

	// The channel is closed when ctx is done.
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("event channel not closed after cancel")
		}
	}
}

func TestPrivilegedWatchEventsBadNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root")
	}
	if _, err := fabric.WatchEvents(t.Context(), fabric.WithEventNetNS(1<<20)); err == nil {
		t.Error("WatchEvents on a closed netns fd = nil error, want one")
	}
}
