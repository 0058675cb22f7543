package server_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	"github.com/metalfabric/fabric/pki"
)

// tlsEnv is a controller with mutual TLS and an operator token, and the
// certificate bundles to call it with.
type tlsEnv struct {
	addr  string
	dir   string // the controller's bundle
	other string // a bundle of another CA
	token string
}

func startTLS(t *testing.T) *tlsEnv {
	t.Helper()
	e := &tlsEnv{dir: filepath.Join(t.TempDir(), "pki"), other: filepath.Join(t.TempDir(), "other")}
	b := pki.Bundle{ControllerHosts: []string{"controller", "127.0.0.1"}, Devices: []string{"leaf1", "leaf2"}, Operators: []string{"admin"}}
	if err := pki.Generate(e.dir, b); err != nil {
		t.Fatal(err)
	}
	if err := pki.Generate(e.other, b); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(e.dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	e.token = strings.TrimSpace(string(tok))
	tlsCfg, err := pki.ServerConfig(filepath.Join(e.dir, "controller.pem"), filepath.Join(e.dir, "controller-key.pem"), filepath.Join(e.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(st, server.WithGracePeriod(time.Second),
		server.WithGRPCServerOptions(grpc.Creds(credentials.NewTLS(tlsCfg))),
		server.WithAuth(server.Auth{DeviceCerts: true, OperatorTokens: []string{e.token}}))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		st.Close()
	})
	return e
}

// conn dials the controller verifying it against dir's CA, with dir's
// certificate of name ("" for none) and token ("" for none).
func (e *tlsEnv) conn(t *testing.T, dir, name, token string) *grpc.ClientConn {
	t.Helper()
	cert, key := "", ""
	if name != "" {
		cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	}
	cfg, err := pki.ClientConfig(cert, key, filepath.Join(e.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(pki.BearerToken(token, true)))
	}
	c, err := grpc.NewClient(e.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func code(err error) codes.Code { return status.Code(err) }

func TestMutualTLSDevices(t *testing.T) {
	e := startTLS(t)
	c := ctx(t)
	register := func(conn *grpc.ClientConn, host string) error {
		_, err := apiv1.NewDeviceServiceClient(conn).Register(c, &apiv1.RegisterRequest{Hostname: host, Role: apiv1.Role_ROLE_LEAF, Ports: ports("swp1")})
		return err
	}
	watch := func(conn *grpc.ClientConn, host string) error {
		wctx, cancel := context.WithTimeout(c, 5*time.Second)
		defer cancel()
		s, err := apiv1.NewDeviceServiceClient(conn).WatchConfig(wctx, &apiv1.WatchConfigRequest{Hostname: host})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}

	leaf1 := e.conn(t, e.dir, "leaf1", "")
	if err := register(leaf1, "leaf1"); err != nil {
		t.Fatalf("leaf1 registering itself: %v", err)
	}
	if err := watch(leaf1, "leaf1"); err != nil {
		t.Fatalf("leaf1 watching its own config: %v", err)
	}

	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"no client certificate", func() error { return register(e.conn(t, e.dir, "", ""), "leaf1") }, codes.Unauthenticated},
		{"certificate of another CA", func() error { return register(e.conn(t, e.other, "leaf1", ""), "leaf1") }, codes.Unavailable},
		{"another device's registration", func() error { return register(leaf1, "leaf2") }, codes.PermissionDenied},
		{"another device's config", func() error { return watch(leaf1, "leaf2") }, codes.PermissionDenied},
		{"another device's status", func() error {
			_, err := apiv1.NewDeviceServiceClient(leaf1).ReportStatus(c, &apiv1.ReportStatusRequest{Hostname: "leaf2"})
			return err
		}, codes.PermissionDenied},
		{"another device's neighbours", func() error {
			_, err := apiv1.NewDeviceServiceClient(leaf1).ReportNeighbors(c, &apiv1.ReportNeighborsRequest{Hostname: "leaf2"})
			return err
		}, codes.PermissionDenied},
		{"operator certificate as a device", func() error { return register(e.conn(t, e.dir, "admin", ""), "admin") }, codes.PermissionDenied},
		{"operator token as a device", func() error { return register(e.conn(t, e.dir, "", e.token), "leaf1") }, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := code(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestOperatorAuth(t *testing.T) {
	e := startTLS(t)
	c := ctx(t)
	list := func(conn *grpc.ClientConn) error {
		_, err := apiv1.NewOperatorServiceClient(conn).ListNetworks(c, &apiv1.ListNetworksRequest{})
		return err
	}
	tests := []struct {
		name string
		conn *grpc.ClientConn
		want codes.Code
	}{
		{"no token, no certificate", e.conn(t, e.dir, "", ""), codes.Unauthenticated},
		{"wrong token", e.conn(t, e.dir, "", "not-the-token"), codes.Unauthenticated},
		{"token", e.conn(t, e.dir, "", e.token), codes.OK},
		{"operator certificate", e.conn(t, e.dir, "admin", ""), codes.OK},
		{"device certificate", e.conn(t, e.dir, "leaf1", ""), codes.PermissionDenied},
		{"device certificate and token", e.conn(t, e.dir, "leaf1", e.token), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := list(tt.conn)
			if got := code(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}
