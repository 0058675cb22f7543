package lldp_test

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/metalfabric/fabric/lldp"
)

// The agent's wiring: one Agent per switch, chassis = the switch MAC, the
// fabric and machine ports from netlink, neighbours reported on change.
func ExampleAgent() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	chassis, _ := net.ParseMAC("02:42:ac:11:00:02")
	a, err := lldp.New(chassis,
		lldp.WithSystemName("leaf01"),
		lldp.WithSystemDescription("metalfabric agent"),
		lldp.WithInterval(2*time.Second),
	)
	if err != nil {
		slog.Error("lldp", "err", err)
		return
	}
	// Declarative: call again whenever the port list changes.
	if err := a.SetPorts(ctx, []lldp.Port{{Name: "swp1"}, {Name: "swp2"}}); err != nil {
		slog.Error("lldp", "err", err)
		return
	}
	go func() {
		for e := range a.Events() {
			// Report e (or the whole a.Neighbors() snapshot) to the controller.
			slog.Info("neighbour", "event", e.Type, "port", e.Neighbor.Port,
				"chassis", e.Neighbor.ChassisID.String(), "port_id", e.Neighbor.PortID.String())
		}
	}()
	_ = a.Run(ctx) // returns when ctx ends
}
