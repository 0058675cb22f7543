package metrics

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descDevices = prometheus.NewDesc("fabric_controller_devices",
		"Registered devices (switches and firewalls).", nil, nil)
	descConnected = prometheus.NewDesc("fabric_controller_devices_connected",
		"Devices holding a watch stream on this controller.", nil, nil)
	descMachines = prometheus.NewDesc("fabric_controller_machines",
		"Known machines.", nil, nil)
	descAllocations = prometheus.NewDesc("fabric_controller_allocations",
		"Machines allocated to a network.", nil, nil)
)

// inventoryCollector reads the inventory's sizes at scrape time.
type inventoryCollector struct {
	src atomic.Pointer[ControllerSource]
	log *slog.Logger
}

func (c *inventoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDevices
	ch <- descConnected
	ch <- descMachines
	ch <- descAllocations
}

func (c *inventoryCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, err := (*src).Counts(ctx)
	if err != nil {
		// The gauges are left out of this scrape rather than reported as 0.
		c.log.Warn("metrics: reading inventory sizes", "err", err)
		ch <- prometheus.NewInvalidMetric(descDevices, err)
		return
	}
	for d, v := range map[*prometheus.Desc]int{descDevices: n.Devices, descConnected: n.ConnectedDevices,
		descMachines: n.Machines, descAllocations: n.Allocations} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
}
