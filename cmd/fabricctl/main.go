// Command fabricctl is the operator CLI over the fabric controller's gRPC API:
// networks, devices, machines, allocations and convergence.
//
// It owns flags and output formatting only; every decision is the
// controller's.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/status"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout).ExecuteContext(ctx)
	stop()
	if err != nil {
		if st, ok := status.FromError(err); ok && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "fabricctl: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintf(os.Stderr, "fabricctl: %v\n", err)
		}
		os.Exit(1)
	}
}
