package nft

import "log/slog"

// Option configures New.
type Option func(*options)

type options struct {
	table   string
	netnsFd int // -1: the caller's namespace
	log     *slog.Logger
	extra   []any // platform-specific options (nftables.ConnOption on Linux)
}

func defaultOptions() options {
	return options{table: DefaultTable, netnsFd: -1, log: slog.New(slog.DiscardHandler)}
}

// WithTable sets the name of the inet table the firewall owns (default
// "fabric").
func WithTable(name string) Option { return func(o *options) { o.table = name } }

// WithNetNSFd makes the firewall program the network namespace the file
// descriptor refers to instead of the caller's (google/nftables
// WithNetNSFd). The caller keeps the fd open while the Firewall is used.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netnsFd = fd } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// ApplyResult tells what an Apply did.
type ApplyResult struct {
	// Full is true when the table was replaced (delete and recreate in one
	// batch); false when only set elements changed (or nothing did).
	Full bool
	// Rules, Sets and Elements in the table after the apply (Elements
	// counts kernel set elements: an interval is two).
	Rules, Sets, Elements int
	// Added and Deleted set elements of an incremental apply.
	Added, Deleted int
}
