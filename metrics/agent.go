package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalfabric/fabric/agent"
	"github.com/metalfabric/fabric/bgp"
)

// AgentSource is what the agent collector reads at each scrape;
// *agent.Agent is one.
type AgentSource interface {
	Stats(ctx context.Context) agent.Stats
}

// Agent holds the agent's metrics. It is the agent's agent.Observer.
type Agent struct {
	applyDuration prometheus.Histogram
	applyErrors   prometheus.Counter
	collector     *agentCollector
}

var _ agent.Observer = (*Agent)(nil)

// NewAgent registers the agent's metrics on reg. Call SetSource once the
// agent exists; until then only the apply metrics are exported.
func NewAgent(reg prometheus.Registerer) *Agent {
	m := &Agent{
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fabric_agent_apply_duration_seconds",
			Help:    "Time to apply one desired config snapshot (dataplane and routing).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fabric_agent_apply_errors_total",
			Help: "Snapshot applies that ended with at least one failed step.",
		}),
		collector: &agentCollector{},
	}
	reg.MustRegister(m.applyDuration, m.applyErrors, m.collector)
	return m
}

// SetSource sets the agent whose state the scrapes read.
func (m *Agent) SetSource(src AgentSource) { m.collector.src.Store(&src) }

// Applied records one apply.
func (m *Agent) Applied(_ uint64, took time.Duration, err error) {
	m.applyDuration.Observe(took.Seconds())
	if err != nil {
		m.applyErrors.Inc()
	}
}

var (
	descDesired = prometheus.NewDesc("fabric_agent_desired_version",
		"Newest desired config version received from the controller.", nil, nil)
	descApplied = prometheus.NewDesc("fabric_agent_applied_version",
		"Desired config version last applied without errors.", nil, nil)
	descDriftRepairs = prometheus.NewDesc("fabric_agent_drift_repairs_total",
		"Drift checks that found managed kernel objects changed and restored them.", nil, nil)
	descDriftUnmanaged = prometheus.NewDesc("fabric_agent_drift_unmanaged_changes_total",
		"Changes to kernel objects the agent does not manage (reported, not reverted).", nil, nil)
	descRollbacks = prometheus.NewDesc("fabric_agent_commit_confirm_rollbacks_total",
		"Applied versions rolled back because the controller was unreachable within the commit-confirm window.", nil, nil)
	descSessions = prometheus.NewDesc("fabric_agent_bgp_sessions",
		"BGP sessions by state.", []string{"state"}, nil)
	descPrefixes = prometheus.NewDesc("fabric_agent_bgp_prefixes",
		"Prefixes over all BGP sessions and families: received, accepted and rejected by the import policy, and installed in the kernel.", []string{"kind"}, nil)
	descRoutesInstalled = prometheus.NewDesc("fabric_agent_fib_routes_installed",
		"Kernel routes the FIB programmer installed.", nil, nil)
	descFIBFailures = prometheus.NewDesc("fabric_agent_fib_install_failures",
		"Received routes that currently fail to install in the kernel.", nil, nil)
	descLLDPNeighbors = prometheus.NewDesc("fabric_agent_lldp_neighbors",
		"LLDP neighbours currently known on the device's ports.", nil, nil)
	descLLDPMalformed = prometheus.NewDesc("fabric_agent_lldp_frames_malformed_total",
		"Received LLDP frames that did not decode (dropped).", nil, nil)
	descLLDPReceived = prometheus.NewDesc("fabric_agent_lldp_frames_received_total",
		"LLDP frames read from the ports.", nil, nil)
	descLLDPSent = prometheus.NewDesc("fabric_agent_lldp_frames_sent_total",
		"LLDP frames sent on the ports.", nil, nil)
)

// sessionStates are all the values of the state label, exported even when
// no session is in them, so a dashboard sees 0 rather than nothing.
var sessionStates = []bgp.SessionState{bgp.StateIdle, bgp.StateConnect, bgp.StateActive,
	bgp.StateOpenSent, bgp.StateOpenConfirm, bgp.StateEstablished}

// agentCollector reads the agent's stats at scrape time.
type agentCollector struct {
	src atomic.Pointer[AgentSource]
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDesired, descApplied, descDriftRepairs, descDriftUnmanaged, descRollbacks,
		descSessions, descPrefixes, descRoutesInstalled, descFIBFailures,
		descLLDPNeighbors, descLLDPMalformed, descLLDPReceived, descLLDPSent} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s := (*src).Stats(ctx)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descDesired, float64(s.DesiredVersion))
	gauge(descApplied, float64(s.AppliedVersion))
	counter(descDriftRepairs, float64(s.Drift.Repairs))
	counter(descDriftUnmanaged, float64(s.Drift.Unmanaged))
	counter(descRollbacks, float64(s.Rollbacks))
	if r := s.Routing; r != nil {
		byState := make(map[bgp.SessionState]int)
		var received, accepted, rejected, installed uint64
		for _, ss := range r.Sessions {
			byState[ss.State]++
			installed += uint64(ss.Installed)
			for _, f := range ss.Families {
				received += f.Received
				accepted += f.Accepted
				rejected += f.Rejected
			}
		}
		for _, st := range sessionStates {
			gauge(descSessions, float64(byState[st]), string(st))
		}
		gauge(descPrefixes, float64(received), "received")
		gauge(descPrefixes, float64(accepted), "accepted")
		gauge(descPrefixes, float64(rejected), "rejected")
		gauge(descPrefixes, float64(installed), "installed")
		gauge(descRoutesInstalled, float64(r.RoutesInstalled))
		gauge(descFIBFailures, float64(r.FailedCount))
	}
	if l := s.LLDP; l != nil {
		gauge(descLLDPNeighbors, float64(l.Neighbors))
		counter(descLLDPMalformed, float64(l.Counters.Malformed))
		counter(descLLDPReceived, float64(l.Counters.FramesReceived))
		counter(descLLDPSent, float64(l.Counters.FramesSent))
	}
}
