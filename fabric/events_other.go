//go:build !linux

package fabric

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// WatchEvents fails on this platform: kernel events need Linux netlink.
func WatchEvents(ctx context.Context, opts ...EventOption) (<-chan Event, error) {
	return nil, fmt.Errorf("subscribing to netlink events on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
