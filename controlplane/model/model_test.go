package model_test

import (
	"testing"
	"time"

	"github.com/metalfabric/fabric/controlplane/model"
)

func TestLivenessAt(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		seen time.Time
		want model.Liveness
	}{
		{time.Time{}, model.LivenessUnknown},
		{now, model.LivenessAlive},
		{now.Add(time.Minute), model.LivenessAlive}, // agent clock ahead
		{now.Add(-5 * time.Minute), model.LivenessAlive},
		{now.Add(-5*time.Minute - time.Second), model.LivenessUnknown},
		{now.Add(-time.Hour), model.LivenessUnknown},
		{now.Add(-time.Hour - time.Second), model.LivenessDead},
	} {
		if got := model.LivenessAt(tc.seen, now, 5*time.Minute, time.Hour); got != tc.want {
			t.Errorf("LivenessAt(%v) = %s, want %s", tc.seen, got, tc.want)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	for s, want := range map[string]model.PortRange{"80": {80, 80}, "1-65535": {1, 65535}, "8000-8100": {8000, 8100}} {
		got, err := model.ParsePortRange(s)
		if err != nil || got != want {
			t.Errorf("model.ParsePortRange(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "65536", "80-80", "90-80", "a", "080", "+80", "80-", "-80", "1-2-3"} {
		if got, err := model.ParsePortRange(s); err == nil {
			t.Errorf("model.ParsePortRange(%q) = %v, want an error", s, got)
		}
	}
}

// FuzzParsePortRange: what parses prints back to the same string.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"80", "8000-8100", "1-65535", "0", "90-80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := model.ParsePortRange(s)
		if err != nil {
			return
		}
		if r.String() != s || r.From == 0 || r.From > r.To {
			t.Fatalf("model.ParsePortRange(%q) = %v (prints %q)", s, r, r.String())
		}
	})
}
