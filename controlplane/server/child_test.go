package server_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

// TestChildNetworks: a child network is created from a parent and a prefix
// length, shows its parent, and every bad request is rejected with its
// status code and changes nothing.
func TestChildNetworks(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	e.createNetwork("p", "10.0.0.0/26")
	e.cable("m1", conns("leaf1", "swp1")...)
	e.allocate("m1", "p") // 10.0.0.1: the first /28 is not free
	kid, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "c1", Parent: "p", ChildLength: 28})
	if err != nil {
		t.Fatal(err)
	}
	want := &apiv1.Network{Name: "c1", Prefix: "10.0.0.16/28", Vni: 10001, Parent: "p", Capacity: 14}
	if diff := cmp.Diff(want, kid, protocmp.Transform()); diff != "" {
		t.Errorf("child (-want +got):\n%s", diff)
	}
	got, err := e.op.GetNetwork(c, &apiv1.GetNetworkRequest{Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetNetwork (-want +got):\n%s", diff)
	}
	for _, n := range []string{"c2", "c3"} { // p is then full
		if _, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: n, Parent: "p", ChildLength: 28}); err != nil {
			t.Fatal(err)
		}
	}

	before := e.state()
	tests := []struct {
		name string
		req  *apiv1.CreateNetworkRequest
		code codes.Code
		msg  string
	}{
		{"prefix and parent", &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.1.0.0/24", Parent: "p", ChildLength: 28}, codes.InvalidArgument, "not both"},
		{"length without parent", &apiv1.CreateNetworkRequest{Name: "x", ChildLength: 28}, codes.InvalidArgument, "without a parent"},
		{"parent without length", &apiv1.CreateNetworkRequest{Name: "x", Parent: "p"}, codes.InvalidArgument, "length is missing"},
		{"bad parent name", &apiv1.CreateNetworkRequest{Name: "x", Parent: "P!", ChildLength: 28}, codes.InvalidArgument, "parent network name"},
		{"unknown parent", &apiv1.CreateNetworkRequest{Name: "x", Parent: "nope", ChildLength: 28}, codes.NotFound, "parent network nope"},
		{"length not longer than parent", &apiv1.CreateNetworkRequest{Name: "x", Parent: "p", ChildLength: 26}, codes.InvalidArgument, "child length /26"},
		{"length beyond the address", &apiv1.CreateNetworkRequest{Name: "x", Parent: "p", ChildLength: 40}, codes.InvalidArgument, "child length /40"},
		{"huge length", &apiv1.CreateNetworkRequest{Name: "x", Parent: "p", ChildLength: 1 << 31}, codes.InvalidArgument, "child length"},
		{"name taken", &apiv1.CreateNetworkRequest{Name: "c1", Parent: "p", ChildLength: 28}, codes.AlreadyExists, "c1 already exists"},
		{"parent full", &apiv1.CreateNetworkRequest{Name: "x", Parent: "p", ChildLength: 28}, codes.ResourceExhausted, "no free /28"},
		{"explicit prefix inside a child", &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.0.0.16/29"}, codes.FailedPrecondition, "overlaps"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.op.CreateNetwork(c, tc.req)
			wantCode(t, err, tc.code, tc.msg)
			if diff := cmp.Diff(before, e.state(), protocmp.Transform()); diff != "" {
				t.Errorf("state changed (-before +after):\n%s", diff)
			}
		})
	}
	t.Run("delete parent with children", func(t *testing.T) {
		_, err := e.op.DeleteNetwork(c, &apiv1.DeleteNetworkRequest{Name: "p"})
		wantCode(t, err, codes.FailedPrecondition, "child network(s) (c1, c2, c3)")
		if diff := cmp.Diff(before, e.state(), protocmp.Transform()); diff != "" {
			t.Errorf("state changed (-before +after):\n%s", diff)
		}
	})
	// A smaller child still fits, then the children go and the parent
	// can be deleted once m1 is freed.
	if n, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "s", Parent: "p", ChildLength: 30}); err != nil || n.GetPrefix() != "10.0.0.4/30" {
		t.Errorf("/30 child: %v, %v, want 10.0.0.4/30", n, err)
	}
	for _, n := range []string{"c1", "c2", "c3", "s"} {
		if _, err := e.op.DeleteNetwork(c, &apiv1.DeleteNetworkRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	e.free("m1")
	if _, err := e.op.DeleteNetwork(c, &apiv1.DeleteNetworkRequest{Name: "p"}); err != nil {
		t.Errorf("deleting p without children: %v", err)
	}
}
