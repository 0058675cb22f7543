// Package metrics is the Prometheus side of fabric-agent and
// fabric-controller: their collectors, each daemon's own registry (never the
// global default one) and the HTTP server for /metrics. It owns the metric
// names and labels; labels only take values from small fixed sets (session
// states, API methods, status codes), never hostnames, peers or prefixes.
// It reads the daemons' state through their exported accessors and never
// changes it.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Default listen addresses of the daemons' /metrics endpoints.
const (
	DefaultAgentListen      = ":9101"
	DefaultControllerListen = ":9102"
)

// scrapeTimeout bounds the reads a scrape makes (routing status, store).
const scrapeTimeout = 5 * time.Second

// NewRegistry returns a registry with the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// Server serves /metrics.
type Server struct {
	lis net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen binds addr (so a taken port fails at startup) for serving reg on
// /metrics.
func Listen(addr string, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(reg))
	return &Server{lis: lis, log: log, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.lis) }()
	s.log.Info("metrics serving", "addr", s.lis.Addr().String(), "path", "/metrics")
	select {
	case err := <-served:
		return fmt.Errorf("metrics: serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(sctx)
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serving: %w", err)
	}
	return nil
}
