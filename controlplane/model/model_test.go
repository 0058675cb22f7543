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
