// Package etcd is the shared store backend: every bucket of the controller
// lives under one key prefix of an etcd cluster, so several controller
// replicas can work on the same state. It owns the key layout under the
// prefix, the optimistic transactions (a software transactional memory in
// the manner of etcd's concurrency.STM, extended with range reads) and the
// change feed replicas follow; it must not interpret the values it stores.
//
// Key layout, under the prefix P (default "/fabric/"):
//
//	P b/<bucket>/<key>   a record
//	P f/<bucket>         the bucket's fence: rewritten by every transaction
//	                     that writes to the bucket
//
// A write transaction reads at one etcd revision R (the first read fixes it)
// and buffers its writes. At commit it becomes a single etcd transaction that
// succeeds only if
//   - every key it read with Get still has the mod revision it had at R (0
//     for a key that was missing: a key created since fails the compare), and
//   - the fence of every bucket it listed has a mod revision <= R (no
//     transaction has written to that bucket since R, which also catches
//     keys created or deleted inside a listed range),
//
// and then writes the buffered puts and deletes and the fences of the buckets
// written to. If the compare fails, the transaction function runs again on a
// fresh snapshot. The reads of a committed transaction are therefore still
// true at its commit revision: update transactions are serializable, as the
// store.Store contract asks.
//
// etcd limits the operations of one transaction (--max-txn-ops, default 128):
// a transaction that writes more keys than that fails with etcd's "too many
// operations in txn request". The controller's mutations write a few keys
// each; run etcd with a larger --max-txn-ops for fabrics with hundreds of
// devices per network (docs/etcd.md).
package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metalfabric/fabric/controlplane/store"
)

// DefaultPrefix is the key prefix the controller's buckets live under unless
// WithPrefix says otherwise.
const DefaultPrefix = "/fabric/"

// Store is a store.Store (and store.Watcher) on an etcd cluster.
type Store struct {
	cli    *clientv3.Client
	own    bool // Close closes cli
	prefix string
	log    *slog.Logger
	closed atomic.Bool

	// conflicts counts transaction attempts that lost a compare and ran
	// again (exported for benchmarks through Conflicts).
	conflicts atomic.Uint64
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

type options struct {
	prefix      string
	dialTimeout time.Duration
	log         *slog.Logger
}

// Option configures Open and New.
type Option func(*options)

// WithPrefix sets the key prefix (default DefaultPrefix). Two controllers
// with different prefixes on one cluster do not see each other.
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithDialTimeout bounds how long Open waits for the first connection
// (default 5s).
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithLogger sets the logger for the change feed (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

func buildOptions(opts []Option) (options, error) {
	o := options{prefix: DefaultPrefix, dialTimeout: 5 * time.Second, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.prefix == "" {
		return o, errors.New("etcd key prefix is empty")
	}
	if !strings.HasSuffix(o.prefix, "/") {
		o.prefix += "/"
	}
	return o, nil
}

// Open connects to the cluster at endpoints (HOST:PORT or URLs) and checks
// that it answers. The store owns the client and closes it in Close.
func Open(ctx context.Context, endpoints []string, opts ...Option) (*Store, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: o.dialTimeout,
		Logger:      zap.NewNop(),
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	// clientv3.New does not wait for a connection; one read does.
	cctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, o.prefix+"f/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return &Store{cli: cli, own: true, prefix: o.prefix, log: o.log}, nil
}

// New returns a store over an existing client; the caller keeps ownership
// of cli and closes it after Close.
func New(cli *clientv3.Client, opts ...Option) (*Store, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Store{cli: cli, prefix: o.prefix, log: o.log}, nil
}

// Prefix returns the key prefix (always ending in '/').
func (s *Store) Prefix() string { return s.prefix }

// Conflicts returns how many transaction attempts lost a compare and were
// retried since Open.
func (s *Store) Conflicts() uint64 { return s.conflicts.Load() }

func (s *Store) bucketPrefix(bucket string) string { return s.prefix + "b/" + bucket + "/" }
func (s *Store) fence(bucket string) string        { return s.prefix + "f/" + bucket }

// View runs fn on a consistent snapshot: every read of fn is served at the
// revision of its first read.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	t := s.newTx(ctx, false)
	return s.mapErr(fn(t))
}

// Update runs fn as an optimistic transaction and commits its writes in one
// etcd transaction, running fn again on a fresh snapshot when another
// transaction changed what fn read.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		t := s.newTx(ctx, true)
		err := fn(t)
		if errors.Is(err, errStale) {
			// A read hit a compacted revision: start again on a newer one.
		} else if err != nil {
			return s.mapErr(err)
		} else {
			ok, err := t.commit()
			if err != nil {
				return s.mapErr(err)
			}
			if ok {
				return nil
			}
		}
		s.conflicts.Add(1)
		if err := s.check(ctx); err != nil {
			return err
		}
		// The first retries go at once (the loser of one race usually
		// wins the next); later ones spread out so a crowd of writers on
		// one key does not retry in lockstep.
		if attempt >= 2 {
			d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
	}
}

// Close closes the client if the store opened it. View and Update fail with
// store.ErrClosed afterwards.
func (s *Store) Close() error {
	if s.closed.Swap(true) || !s.own {
		return nil
	}
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("closing etcd client: %w", err)
	}
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("etcd store: %w", store.ErrClosed)
	}
	return ctx.Err()
}

// mapErr turns errors of a closed client into store.ErrClosed.
func (s *Store) mapErr(err error) error {
	if err != nil && s.closed.Load() && !errors.Is(err, store.ErrClosed) {
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	}
	return err
}

// errStale is returned by a read whose snapshot revision was compacted away
// during the transaction; Update retries, View reports it.
var errStale = errors.New("snapshot revision was compacted during the transaction")

// tx is one attempt of a transaction.
type tx struct {
	s        *Store
	ctx      context.Context
	writable bool

	rev    int64             // snapshot revision; 0 until the first read
	read   map[string]int64  // key -> mod revision at rev (0: missing)
	cache  map[string][]byte // key -> value at rev (nil: missing)
	listed map[string]bool   // buckets listed
	writes map[string][]byte // key -> new value (nil: delete)
	dirty  map[string]bool   // buckets written to
}

func (s *Store) newTx(ctx context.Context, writable bool) *tx {
	return &tx{
		s: s, ctx: ctx, writable: writable,
		read:   make(map[string]int64),
		cache:  make(map[string][]byte),
		listed: make(map[string]bool),
		writes: make(map[string][]byte),
		dirty:  make(map[string]bool),
	}
}

// get reads at the snapshot revision, fixing it on the first read. The
// first read is linearizable (it goes through the raft leader, so the
// snapshot includes every commit before the transaction started); later
// reads at that fixed revision are served by whichever member the client
// talks to without a raft round trip (serializable): a revision's data is
// the same on every member that has applied it. A member that has not
// applied it yet answers ErrFutureRev, and the read goes through the leader.
func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev == 0 {
		resp, err := t.s.cli.Get(t.ctx, key, opts...)
		if err != nil {
			return nil, err
		}
		t.rev = resp.Header.Revision
		return resp, nil
	}
	opts = append(opts, clientv3.WithRev(t.rev))
	resp, err := t.s.cli.Get(t.ctx, key, append(opts, clientv3.WithSerializable())...)
	if errors.Is(err, rpctypes.ErrFutureRev) {
		resp, err = t.s.cli.Get(t.ctx, key, opts...)
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, errStale
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (t *tx) Get(bucket, key string) ([]byte, error) {
	if err := store.CheckKey(bucket, key); err != nil {
		return nil, err
	}
	k := t.s.bucketPrefix(bucket) + key
	if v, ok := t.writes[k]; ok {
		if v == nil {
			return nil, fmt.Errorf("%s/%s: %w", bucket, key, store.ErrNotFound)
		}
		return bytes.Clone(v), nil
	}
	v, ok := t.cache[k]
	if !ok {
		resp, err := t.get(k)
		if err != nil {
			return nil, fmt.Errorf("reading %s/%s: %w", bucket, key, err)
		}
		var mod int64
		if len(resp.Kvs) > 0 {
			v, mod = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		t.cache[k], t.read[k] = v, mod
	}
	if v == nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, store.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (t *tx) Put(bucket, key string, value []byte) error {
	if err := store.CheckKey(bucket, key); err != nil {
		return err
	}
	if !t.writable {
		return fmt.Errorf("putting %s/%s: %w", bucket, key, store.ErrReadOnly)
	}
	if len(value) == 0 {
		return fmt.Errorf("putting %s/%s: %w", bucket, key, store.ErrEmptyValue)
	}
	t.writes[t.s.bucketPrefix(bucket)+key] = bytes.Clone(value)
	t.dirty[bucket] = true
	return nil
}

func (t *tx) Delete(bucket, key string) error {
	if err := store.CheckKey(bucket, key); err != nil {
		return err
	}
	if !t.writable {
		return fmt.Errorf("deleting %s/%s: %w", bucket, key, store.ErrReadOnly)
	}
	t.writes[t.s.bucketPrefix(bucket)+key] = nil
	t.dirty[bucket] = true
	return nil
}

func (t *tx) List(bucket, prefix string) ([]store.KV, error) {
	if err := store.CheckBucket(bucket); err != nil {
		return nil, err
	}
	bp := t.s.bucketPrefix(bucket)
	resp, err := t.get(bp+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("listing %s/%s: %w", bucket, prefix, err)
	}
	t.listed[bucket] = true
	merged := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		merged[string(kv.Key)] = kv.Value
	}
	for k, v := range t.writes {
		if !strings.HasPrefix(k, bp+prefix) {
			continue
		}
		if v == nil {
			delete(merged, k)
		} else {
			merged[k] = v
		}
	}
	out := make([]store.KV, 0, len(merged))
	for k, v := range merged {
		out = append(out, store.KV{Key: strings.TrimPrefix(k, bp), Value: bytes.Clone(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// commit writes the buffered writes if nothing the transaction read has
// changed since its snapshot; ok is false when something has.
func (t *tx) commit() (ok bool, err error) {
	if len(t.writes) == 0 {
		return true, nil // read-only: the snapshot was consistent
	}
	cmps := make([]clientv3.Cmp, 0, len(t.read)+len(t.listed))
	for k, mod := range t.read {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", mod))
	}
	for b := range t.listed {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.fence(b)), "<", t.rev+1))
	}
	ops := make([]clientv3.Op, 0, len(t.writes)+len(t.dirty))
	for k, v := range t.writes {
		if v == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
	}
	for b := range t.dirty {
		ops = append(ops, clientv3.OpPut(t.s.fence(b), "1"))
	}
	resp, err := t.s.cli.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("committing %d write(s): %w", len(t.writes), err)
	}
	return resp.Succeeded, nil
}

// WatchBucket calls fn with every key of bucket and its value, then with
// every later change committed by any writer (a nil value for a delete), in
// commit order, until ctx is done. When the change feed breaks (a compacted
// revision, a member that lost its leader) it starts again with every key.
// It returns ctx's error.
func (s *Store) WatchBucket(ctx context.Context, bucket string, fn func(store.KV)) error {
	if err := store.CheckBucket(bucket); err != nil {
		return err
	}
	bp := s.bucketPrefix(bucket)
	retry := 200 * time.Millisecond
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		err := s.watchOnce(ctx, bp, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("etcd change feed broke; listing the bucket again", "bucket", bucket, "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

func (s *Store) watchOnce(ctx context.Context, bp string, fn func(store.KV)) error {
	resp, err := s.cli.Get(ctx, bp, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("listing %s: %w", bp, err)
	}
	for _, kv := range resp.Kvs {
		fn(store.KV{Key: strings.TrimPrefix(string(kv.Key), bp), Value: kv.Value})
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, bp, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watching %s: %w", bp, err)
		}
		for _, ev := range wr.Events {
			kv := store.KV{Key: strings.TrimPrefix(string(ev.Kv.Key), bp)}
			if ev.Type == mvccpb.PUT {
				kv.Value = ev.Kv.Value
			}
			fn(kv)
		}
	}
	return fmt.Errorf("watching %s: channel closed", bp)
}
