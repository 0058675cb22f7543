package metrics

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/metalfabric/fabric/controlplane/server"
)

// ControllerSource is what the controller collector reads at each scrape;
// *server.Server is one.
type ControllerSource interface {
	Counts(ctx context.Context) (server.Counts, error)
}

// Controller holds the controller's metrics: the API interceptors' and the
// inventory gauges read at scrape time.
type Controller struct {
	requests *prometheus.HistogramVec
	codes    *prometheus.CounterVec
	streams  prometheus.Gauge
	inv      *inventoryCollector
}

// NewController registers the controller's metrics on reg. Call SetSource
// once the server exists; until then only the API metrics are exported.
func NewController(reg prometheus.Registerer, log *slog.Logger) *Controller {
	m := &Controller{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fabric_controller_api_request_duration_seconds",
			Help:    "Latency of the controller's gRPC calls by method (unary calls; watch streams are counted in fabric_controller_watch_streams).",
			Buckets: prometheus.DefBuckets,
		}, []string{"method"}),
		codes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fabric_controller_api_requests_total",
			Help: "The controller's gRPC calls by method and status code.",
		}, []string{"method", "code"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fabric_controller_watch_streams",
			Help: "Open WatchConfig streams (one per connected agent).",
		}),
		inv: &inventoryCollector{log: log},
	}
	reg.MustRegister(m.requests, m.codes, m.streams, m.inv)
	return m
}

// SetSource sets the server whose inventory the scrapes read.
func (m *Controller) SetSource(src ControllerSource) {
	m.inv.src.Store(&src)
}

// ServerOptions are the gRPC server options that install the interceptors.
func (m *Controller) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(m.unary), grpc.ChainStreamInterceptor(m.stream)}
}

// methodLabel shortens "/fabric.v1.DeviceService/Register" to
// "DeviceService/Register". The set of methods is fixed by the API, and
// grpc-go rejects unknown methods before interceptors run.
func methodLabel(full string) string {
	full = strings.TrimPrefix(full, "/")
	svc, method, ok := strings.Cut(full, "/")
	if !ok {
		return full
	}
	if i := strings.LastIndexByte(svc, '.'); i >= 0 {
		svc = svc[i+1:]
	}
	return svc + "/" + method
}

func (m *Controller) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := methodLabel(info.FullMethod)
	m.requests.WithLabelValues(method).Observe(time.Since(start).Seconds())
	m.codes.WithLabelValues(method, status.Code(err).String()).Inc()
	return resp, err
}

func (m *Controller) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m.streams.Inc()
	err := handler(srv, ss)
	m.streams.Dec()
	m.codes.WithLabelValues(methodLabel(info.FullMethod), status.Code(err).String()).Inc()
	return err
}
