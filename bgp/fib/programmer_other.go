//go:build !linux

package fib

import "context"

// Programmer installs routes into the kernel; only Linux has one.
type Programmer struct{}

// New returns ErrNotSupported outside Linux.
func New(opts ...Option) (*Programmer, error) { return nil, ErrNotSupported }

// Close does nothing outside Linux.
func (p *Programmer) Close() error { return nil }

// Installed returns nothing outside Linux.
func (p *Programmer) Installed() []Route { return nil }

// Sync returns ErrNotSupported outside Linux.
func (p *Programmer) Sync(ctx context.Context, routes []Route, remotes []Remote) (Result, error) {
	return Result{}, ErrNotSupported
}

// Apply returns ErrNotSupported outside Linux.
func (p *Programmer) Apply(ctx context.Context, b Batch) (Result, error) {
	return Result{}, ErrNotSupported
}
