package fib

import (
	"io"
	"log/slog"

	"github.com/vishvananda/netns"
)

type options struct {
	metric uint32
	window int
	log    *slog.Logger
	ns     nsOption
}

func defaultOptions() options {
	return options{
		metric: DefaultMetric,
		window: 4096,
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Option configures a Programmer.
type Option func(*options)

// WithMetric sets the priority (metric) of every route the programmer
// installs; routes of ours with another metric are withdrawn by Sync. Zero
// is ignored: the kernel turns metric 0 of an IPv6 route into 1024, so our
// routes would never read back as installed.
func WithMetric(m uint32) Option {
	return func(o *options) {
		if m != 0 {
			o.metric = m
		}
	}
}

// WithWindow sets how many requests go into one sendmsg (default 4096). It
// is lowered further so that the answers of a window always fit the socket's
// receive buffer.
func WithWindow(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.window = n
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

type nsOption struct {
	set bool
	ns  netns.NsHandle
}

// WithNetns makes the programmer work in the network namespace ns instead
// of the namespace of the thread that calls New. The sockets opened in it
// keep the namespace; the caller may close ns after New.
func WithNetns(ns netns.NsHandle) Option {
	return func(o *options) { o.ns = nsOption{set: true, ns: ns} }
}
