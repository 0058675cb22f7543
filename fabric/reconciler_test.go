package fabric_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

func lab() *ft.Kernel {
	return ft.New(ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"),
		ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"))
}

var tenant = fabric.Desired{VRFs: []fabric.VRF{
	{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}},
	{Name: "vrf10020", Table: 10020, Ports: []string{"swp2"}},
}}

func errSteps(res fabric.Result) []string {
	var out []string
	for _, e := range res.Errors {
		out = append(out, e.Step+": "+e.Err.Error())
	}
	return out
}

func TestApplyIdempotent(t *testing.T) {
	k := lab()
	r := fabric.NewReconciler(k)
	res, err := r.Apply(t.Context(), tenant)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantCalls := []string{
		"add vrf vrf10010 table 10010 alias fabric-agent",
		"add vrf vrf10020 table 10020 alias fabric-agent",
		"set vrf10010 up",
		"set vrf10020 up",
		"set swp1 master vrf10010",
		"set swp2 master vrf10020",
	}
	if diff := cmp.Diff(wantCalls, k.Calls(), ft.CmpOpts); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(strs(res.Planned), strs(res.Applied), ft.CmpOpts); diff != "" {
		t.Errorf("applied differs from planned (-planned +applied):\n%s", diff)
	}
	if diff := cmp.Diff(k.State(), res.State, ft.CmpOpts); diff != "" {
		t.Errorf("result state differs from kernel (-kernel +result):\n%s", diff)
	}
	if diff := cmp.Diff(tenant, res.State.Owned(), ft.CmpOpts); diff != "" {
		t.Errorf("owned state (-want +got):\n%s", diff)
	}

	k.ResetCalls()
	res, err = r.Apply(t.Context(), tenant)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if calls := k.Calls(); len(calls) != 0 || len(res.Planned) != 0 {
		t.Errorf("second Apply: calls %q, planned %q; want none", calls, strs(res.Planned))
	}

	// Free everything: ports released, marked VRFs deleted, mgmt and eth0 untouched.
	k.ResetCalls()
	if _, err := r.Apply(t.Context(), fabric.Desired{}); err != nil {
		t.Fatalf("freeing Apply: %v", err)
	}
	wantCalls = []string{
		"set swp1 nomaster",
		"set swp2 nomaster",
		"delete vrf10010",
		"delete vrf10020",
	}
	if diff := cmp.Diff(wantCalls, k.Calls(), ft.CmpOpts); diff != "" {
		t.Errorf("freeing calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(lab().State(), k.State(), ft.CmpOpts); diff != "" {
		t.Errorf("kernel after freeing (-want +got):\n%s", diff)
	}
}

func TestApplyInvalidTouchesNothing(t *testing.T) {
	k := lab()
	r := fabric.NewReconciler(k)
	before := k.State()
	bad := fabric.Desired{VRFs: []fabric.VRF{
		{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}},
		{Name: "mgmt", Table: 1000, Ports: []string{"swp9"}},
	}}
	res, err := r.Apply(t.Context(), bad)
	var verr *fabric.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Apply() error = %v, want a *ValidationError", err)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls = %q, want none", calls)
	}
	if diff := cmp.Diff(before, k.State(), ft.CmpOpts); diff != "" {
		t.Errorf("kernel changed (-before +after):\n%s", diff)
	}
	if len(res.Errors) != 1 || res.Errors[0].Step != "validate" {
		t.Errorf("Result.Errors = %q, want one validate step", errSteps(res))
	}
	if diff := cmp.Diff(before, res.State, ft.CmpOpts); diff != "" {
		t.Errorf("Result.State (-kernel +result):\n%s", diff)
	}
	if _, err := r.Plan(t.Context(), bad); !errors.As(err, &verr) {
		t.Errorf("Plan() error = %v, want a *ValidationError", err)
	}
}

func TestApplyPartialFailure(t *testing.T) {
	tests := []struct {
		name      string
		start     []fabric.Link
		desired   fabric.Desired
		failOn    string
		wantErrs  []string
		wantSkip  []string
		wantOwned fabric.Desired
	}{
		{
			name:    "vrf creation fails: its up and ports are skipped, the other vrf is done",
			desired: tenant,
			failOn:  "add vrf vrf10010 table 10010 alias fabric-agent",
			wantErrs: []string{
				"add vrf vrf10010 table 10010: adding vrf vrf10010 with table 10010: injected",
			},
			wantSkip:  []string{"set vrf10010 up", "set swp1 master vrf10010"},
			wantOwned: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10020", Table: 10020, Ports: []string{"swp2"}}}},
		},
		{
			name:    "enslaving fails: independent steps go on",
			desired: tenant,
			failOn:  "set swp1 master vrf10010",
			wantErrs: []string{
				"set swp1 master vrf10010: enslaving swp1 to vrf10010: injected",
			},
			wantOwned: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf10010", Table: 10010},
				{Name: "vrf10020", Table: 10020, Ports: []string{"swp2"}},
			}},
		},
		{
			name: "release fails: the vrf is not deleted, the other one is",
			start: []fabric.Link{
				ft.VRF("vrf10", 10, true), ft.VRF("vrf20", 20, true),
				ft.In(ft.Port("swp1"), "vrf10"), ft.In(ft.Port("swp2"), "vrf20"),
			},
			failOn: "set swp1 nomaster",
			wantErrs: []string{
				"set swp1 nomaster: releasing swp1 from vrf10: injected",
			},
			wantSkip:  []string{"delete vrf vrf10"},
			wantOwned: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10", Table: 10, Ports: []string{"swp1"}}}},
		},
		{
			name: "deleting an old vrf for a table change fails: no re-creation, no ports",
			start: []fabric.Link{
				ft.VRF("vrf10", 10, true), ft.In(ft.Port("swp1"), "vrf10"),
			},
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10", Table: 11, Ports: []string{"swp1"}}}},
			failOn:  "delete vrf10",
			wantErrs: []string{
				"delete vrf vrf10: deleting vrf vrf10: injected",
			},
			wantSkip:  []string{"add vrf vrf10 table 11", "set vrf10 up", "set swp1 master vrf10"},
			wantOwned: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10", Table: 10}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := tt.start
			if start == nil {
				start = []fabric.Link{ft.Port("swp1"), ft.Port("swp2")}
			}
			k := ft.New(append([]fabric.Link{ft.Loopback()}, start...)...)
			k.FailOn(tt.failOn, errors.New("injected"))
			res, err := fabric.NewReconciler(k).Apply(t.Context(), tt.desired)
			if err == nil {
				t.Fatal("Apply() error = nil, want the injected failure")
			}
			if diff := cmp.Diff(tt.wantErrs, errSteps(res), ft.CmpOpts); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSkip, strs(res.Skipped), ft.CmpOpts); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(k.State(), res.State, ft.CmpOpts); diff != "" {
				t.Errorf("Result.State differs from the kernel (-kernel +result):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOwned, res.State.Owned(), ft.CmpOpts); diff != "" {
				t.Errorf("reached state (-want +got):\n%s", diff)
			}
			// Once the fault is gone, the next Apply converges.
			k.FailOn(tt.failOn, nil)
			res, err = fabric.NewReconciler(k).Apply(t.Context(), tt.desired)
			if err != nil {
				t.Fatalf("retry Apply: %v", err)
			}
			if diff := cmp.Diff(tt.desired, res.State.Owned(), ft.CmpOpts); diff != "" {
				t.Errorf("after retry (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyReReadFails(t *testing.T) {
	k := lab()
	// First read succeeds, the read-back after applying fails.
	k.FailLinks(nil, errors.New("netlink gone"))
	k.FailOn("set swp2 master vrf10020", errors.New("injected"))
	res, err := fabric.NewReconciler(k).Apply(t.Context(), tenant)
	if err == nil {
		t.Fatal("Apply() error = nil")
	}
	want := []string{
		"set swp2 master vrf10020: enslaving swp2 to vrf10020: injected",
		"re-read: reading the kernel: netlink gone",
	}
	if diff := cmp.Diff(want, errSteps(res), ft.CmpOpts); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	// The simulated state claims exactly what the kernel accepted.
	if diff := cmp.Diff(k.State().Owned(), res.State.Owned(), ft.CmpOpts); diff != "" {
		t.Errorf("simulated state vs kernel (-kernel +result):\n%s", diff)
	}
}

func TestApplyReadFails(t *testing.T) {
	k := lab()
	k.FailLinks(errors.New("netlink gone"))
	res, err := fabric.NewReconciler(k).Apply(t.Context(), tenant)
	if err == nil || len(k.Calls()) != 0 {
		t.Fatalf("Apply() = %v with calls %q, want an error and no calls", err, k.Calls())
	}
	if diff := cmp.Diff([]string{"read: reading the kernel: netlink gone"}, errSteps(res), ft.CmpOpts); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestApplyStopsWhenContextDone(t *testing.T) {
	k := lab()
	ctx, cancel := context.WithCancel(t.Context())
	k.SetHook(func(call string) {
		if call == "set vrf10010 up" {
			cancel()
		}
	})
	res, err := fabric.NewReconciler(k).Apply(ctx, tenant)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply() error = %v, want context.Canceled", err)
	}
	wantApplied := []string{"add vrf vrf10010 table 10010", "add vrf vrf10020 table 10020"}
	if diff := cmp.Diff(wantApplied, strs(res.Applied), ft.CmpOpts); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if got := len(res.Applied) + len(res.Skipped) + 1; got != len(res.Planned) {
		t.Errorf("applied %d + skipped %d + 1 failed != planned %d", len(res.Applied), len(res.Skipped), len(res.Planned))
	}
}

func TestPlanChangesNothing(t *testing.T) {
	k := lab()
	got, err := fabric.NewReconciler(k).Plan(t.Context(), tenant)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	want := []string{
		"add vrf vrf10010 table 10010",
		"add vrf vrf10020 table 10020",
		"set vrf10010 up",
		"set vrf10020 up",
		"set swp1 master vrf10010",
		"set swp2 master vrf10020",
	}
	if diff := cmp.Diff(want, strs(got), ft.CmpOpts); diff != "" {
		t.Errorf("Plan (-want +got):\n%s", diff)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls = %q, want none", calls)
	}
}

func TestActualPorts(t *testing.T) {
	a := lab().State()
	var got []string
	for _, p := range a.Ports() {
		got = append(got, p.Name)
	}
	if diff := cmp.Diff([]string{"eth0", "swp1", "swp2", "swp3"}, got, ft.CmpOpts); diff != "" {
		t.Errorf("Ports (-want +got):\n%s", diff)
	}
}
