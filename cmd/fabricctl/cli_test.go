package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

// startController runs the real controller on loopback with a fresh store.
func startController(t *testing.T) string {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "controller.db"), bolt.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(st)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		st.Close()
	})
	return lis.Addr().String()
}

func run(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs(append([]string{"--controller", addr}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCLIAgainstController(t *testing.T) {
	addr := startController(t)
	if _, err := run(t, addr, "network", "create", "tenant-a", "--prefix", "10.0.1.0/24"); err != nil {
		t.Fatal(err)
	}
	got, err := run(t, addr, "network", "list")
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME      PREFIX       VNI    ALLOCATED\n" +
		"tenant-a  10.0.1.0/24  10000  0\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("network list (-want +got):\n%s", diff)
	}

	got, err = run(t, addr, "-o", "yaml", "network", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "prefix: 10.0.1.0/24") || !strings.Contains(got, "vni: 10000") {
		t.Errorf("network list -o yaml = %q", got)
	}

	// A bad request comes back with its gRPC code and changes nothing.
	_, err = run(t, addr, "network", "create", "tenant-b", "--prefix", "10.0.1.128/25")
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("overlapping prefix: got %v, want FailedPrecondition", err)
	}
	_, err = run(t, addr, "machine", "allocate", "m1", "--network", "nope")
	if c := status.Code(err); c != codes.NotFound {
		t.Errorf("allocate into unknown network: got %v (%s), want NotFound", err, c)
	}
	if got, _ := run(t, addr, "network", "list"); got != want {
		t.Errorf("network list after rejected requests = %q, want %q", got, want)
	}

	if _, err := run(t, addr, "-o", "xml", "network", "list"); err == nil || !strings.Contains(err.Error(), "unknown output format") {
		t.Errorf("-o xml: got %v, want unknown output format", err)
	}
}
