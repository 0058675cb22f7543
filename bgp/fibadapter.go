package bgp

import (
	"context"
	"errors"

	"github.com/metalfabric/fabric/bgp/fib"
)

// ProgrammerFIB adapts package fib's Programmer to FIB.
type ProgrammerFIB struct{ P *fib.Programmer }

var _ FIB = ProgrammerFIB{}

// Install implements FIB.
func (f ProgrammerFIB) Install(ctx context.Context, routes []fib.Route, remotes []fib.Remote) []RouteError {
	res, err := f.P.Apply(ctx, fib.Batch{Set: routes, SetRemotes: remotes})
	return routeErrors(routes, res, err)
}

// Remove implements FIB.
func (f ProgrammerFIB) Remove(ctx context.Context, routes []fib.Route, remotes []fib.Remote) []RouteError {
	res, err := f.P.Apply(ctx, fib.Batch{Delete: routes, DeleteRemotes: remotes})
	return routeErrors(routes, res, err)
}

// Kernel implements FIB.
func (f ProgrammerFIB) Kernel(ctx context.Context) ([]fib.Route, error) {
	// An empty batch loads the kernel's routes of ours (once).
	if _, err := f.P.Apply(ctx, fib.Batch{}); err != nil {
		return nil, err
	}
	return f.P.Installed(), nil
}

// Sync implements FIB.
func (f ProgrammerFIB) Sync(ctx context.Context, routes []fib.Route, remotes []fib.Remote) ([]RouteError, error) {
	res, err := f.P.Sync(ctx, routes, remotes)
	if err != nil && !errors.Is(err, fib.ErrSomeFailed) {
		return nil, err
	}
	return routeErrors(routes, res, nil), nil
}

// routeErrors turns a programmer's result into per-route errors: a failure
// that is not per route (reading the kernel) fails every route.
func routeErrors(routes []fib.Route, res fib.Result, err error) []RouteError {
	if err != nil && !errors.Is(err, fib.ErrSomeFailed) {
		out := make([]RouteError, 0, max(len(routes), 1))
		for _, r := range routes {
			out = append(out, RouteError{Table: table(r), Prefix: r.Prefix.String(), Err: err})
		}
		if len(out) == 0 {
			out = append(out, RouteError{Err: err})
		}
		return out
	}
	var out []RouteError
	for _, f := range res.Failures {
		out = append(out, RouteError{Table: table(f.Route), Prefix: f.Route.Prefix.String(), Err: f.Err})
	}
	for _, f := range res.RemoteFailures {
		out = append(out, RouteError{Prefix: "remote " + f.Remote.String(), Err: f.Err})
	}
	return out
}

func table(r fib.Route) uint32 {
	if r.Table == 0 {
		return MainTable
	}
	return r.Table
}
