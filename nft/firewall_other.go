//go:build !linux

package nft

import (
	"context"
	"errors"
)

// ErrUnsupported is returned by New on systems without nftables.
var ErrUnsupported = errors.New("nft: nftables needs Linux")

// Firewall is the Linux nftables firewall; on other systems New fails.
type Firewall struct{}

// New fails with ErrUnsupported: nftables is Linux only.
func New(opts ...Option) (*Firewall, error) { return nil, ErrUnsupported }

// Apply fails with ErrUnsupported.
func (f *Firewall) Apply(ctx context.Context, p Policy) (ApplyResult, error) {
	return ApplyResult{}, ErrUnsupported
}

// Counters fails with ErrUnsupported.
func (f *Firewall) Counters(ctx context.Context) ([]Counter, error) { return nil, ErrUnsupported }

// Delete fails with ErrUnsupported.
func (f *Firewall) Delete(ctx context.Context) error { return ErrUnsupported }

// Reset does nothing.
func (f *Firewall) Reset() {}
