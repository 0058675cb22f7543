//go:build linux

package fabric

import (
	"context"
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetryDump(t *testing.T) {
	other := errors.New("permission denied")
	tests := []struct {
		name      string
		errs      []error // returned by successive dumps; then nil
		wantCalls int
		wantErr   error
	}{
		{name: "first try", wantCalls: 1},
		{name: "interrupted twice", errs: []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted}, wantCalls: 3},
		{name: "other errors are not retried", errs: []error{other}, wantCalls: 1, wantErr: other},
		{
			name:      "gives up",
			errs:      []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted},
			wantCalls: dumpAttempts,
			wantErr:   netlink.ErrDumpInterrupted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			_, err := retryDump(context.Background(), func() (int, error) {
				calls++
				if calls <= len(tt.errs) {
					return 0, tt.errs[calls-1]
				}
				return 1, nil
			})
			if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("retryDump: %d calls, err %v; want %d calls, err %v", calls, err, tt.wantCalls, tt.wantErr)
			}
		})
	}
}
