package server_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/store/etcd"
	"github.com/metalfabric/fabric/controlplane/store/etcd/etcdtest"
)

// replicas starts n controllers sharing one etcd prefix, each with its own
// etcd client, like n fabric-controller processes.
func replicas(t *testing.T, c *etcdtest.Cluster, prefix string, n int) []*env {
	t.Helper()
	var out []*env
	for range n {
		st, err := etcd.Open(context.Background(), c.Endpoints, etcd.WithPrefix(prefix))
		if err != nil {
			t.Fatalf("opening etcd store: %v", err)
		}
		out = append(out, serve(t, st))
	}
	return out
}

// TestReplicasAllocateConcurrently allocates 32 machines into one /28 (14
// host addresses) from 32 goroutines spread over two replicas at once:
// exactly 14 succeed, with 14 distinct addresses of the prefix, and the rest
// get ResourceExhausted. Watchers of the leaf on both replicas end at the
// same config.
func TestReplicasAllocateConcurrently(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	rs := replicas(t, c, "/concurrency/", 2)
	a, b := rs[0], rs[1]
	const machines = 32
	prefix := netip.MustParsePrefix("10.0.0.0/28")
	const hosts = 14

	var portNames []string
	for i := range machines {
		portNames = append(portNames, fmt.Sprintf("swp%d", i+1))
	}
	a.register("leaf1", apiv1.Role_ROLE_LEAF, portNames...)
	b.createNetwork("small", prefix.String())
	for i := range machines {
		rs[i%2].cable(fmt.Sprintf("m%d", i), conns("leaf1", portNames[i])...)
	}
	wa, wb := a.watch("leaf1"), b.watch("leaf1")
	start := wa.next().GetVersion()
	if v := wb.next().GetVersion(); v != start {
		t.Fatalf("replicas start at versions %d and %d", start, v)
	}

	type result struct {
		ip  string
		rev uint64
		err error
	}
	results := make([]result, machines)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range machines {
		wg.Go(func() {
			<-gate
			m, err := rs[i%2].op.AllocateMachine(ctx(t), &apiv1.AllocateMachineRequest{Machine: fmt.Sprintf("m%d", i), Network: "small"})
			results[i] = result{ip: m.GetAllocation().GetIp(), rev: m.GetAllocation().GetRevision(), err: err}
		})
	}
	close(gate)
	wg.Wait()

	ips := make(map[string]int)
	revs := make(map[uint64]int)
	var maxRev uint64
	ok := 0
	for i, r := range results {
		if r.err != nil {
			if status.Code(r.err) != codes.ResourceExhausted {
				t.Errorf("m%d: %v, want success or ResourceExhausted", i, r.err)
			}
			continue
		}
		ok++
		ip, err := netip.ParseAddr(r.ip)
		if err != nil || !prefix.Contains(ip) {
			t.Errorf("m%d got address %q outside %s", i, r.ip, prefix)
		}
		if o, dup := ips[r.ip]; dup {
			t.Errorf("m%d and m%d both got %s", o, i, r.ip)
		}
		ips[r.ip] = i
		if o, dup := revs[r.rev]; dup {
			t.Errorf("m%d and m%d both got revision %d", o, i, r.rev)
		}
		revs[r.rev] = i
		maxRev = max(maxRev, r.rev)
	}
	if ok != hosts {
		t.Errorf("%d allocations succeeded, want %d (the host addresses of %s)", ok, hosts, prefix)
	}

	// Both replicas' watchers see strictly growing versions and end at the
	// same config, which has every allocated machine's port.
	final := func(w *watcher) *apiv1.DeviceConfig {
		last := start
		for {
			cfg := w.next()
			if cfg.GetVersion() <= last {
				t.Fatalf("version %d after %d", cfg.GetVersion(), last)
			}
			last = cfg.GetVersion()
			if last >= maxRev {
				return cfg
			}
		}
	}
	ca, cb := final(wa), final(wb)
	if ca.GetVersion() != maxRev {
		t.Errorf("final version %d, want the last allocation's revision %d", ca.GetVersion(), maxRev)
	}
	if diff := cmp.Diff(ca.String(), cb.String()); diff != "" {
		t.Errorf("replicas pushed different final configs (-a +b):\n%s", diff)
	}
	if n := len(ca.GetVrfs()); n != 1 || len(ca.GetVrfs()[0].GetPorts()) != hosts {
		t.Errorf("final config has %d VRF(s) %v, want one with %d ports", n, ca.GetVrfs(), hosts)
	}
}

// TestReplicasAllocateUniquePools creates networks and registers devices
// from both replicas at once: no VNI, ASN or loopback is handed out twice.
func TestReplicasAllocateUniquePools(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	rs := replicas(t, c, "/pools/", 2)
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			_, err := rs[i%2].op.CreateNetwork(ctx(t), &apiv1.CreateNetworkRequest{Name: fmt.Sprintf("net%d", i), Prefix: fmt.Sprintf("10.%d.0.0/24", i)})
			errs <- err
		})
		wg.Go(func() {
			_, err := rs[(i+1)%2].dev.Register(ctx(t), &apiv1.RegisterRequest{Hostname: fmt.Sprintf("leaf%d", i), Role: apiv1.Role_ROLE_LEAF, Ports: ports("swp1")})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := rs[1].state()
	vnis := make(map[uint32]string)
	for _, nw := range st.Networks.GetNetworks() {
		if o, dup := vnis[nw.GetVni()]; dup {
			t.Errorf("networks %s and %s share VNI %d", o, nw.GetName(), nw.GetVni())
		}
		vnis[nw.GetVni()] = nw.GetName()
	}
	asns := make(map[uint32]string)
	los := make(map[string]string)
	for _, d := range st.Devices.GetDevices() {
		if o, dup := asns[d.GetAsn()]; dup {
			t.Errorf("devices %s and %s share ASN %d", o, d.GetHostname(), d.GetAsn())
		}
		asns[d.GetAsn()] = d.GetHostname()
		if o, dup := los[d.GetLoopback()]; dup {
			t.Errorf("devices %s and %s share loopback %s", o, d.GetHostname(), d.GetLoopback())
		}
		los[d.GetLoopback()] = d.GetHostname()
	}
	if len(vnis) != n || len(asns) != n {
		t.Errorf("%d networks and %d devices, want %d each", len(vnis), len(asns), n)
	}
}
