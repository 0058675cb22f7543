// Package bolt is the embedded store backend: one bbolt file (by default
// <state-dir>/controller.db) holding every bucket of the controller. It owns
// the file and its lock; it must not interpret the values it stores.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/metalfabric/fabric/controlplane/store"
)

// Store is a store.Store backed by a bbolt file.
type Store struct {
	db *bbolt.DB
}

var _ store.Store = (*Store)(nil)

type options struct {
	lockTimeout time.Duration
	noSync      bool
}

// Option configures Open.
type Option func(*options)

// WithLockTimeout sets how long Open waits for the file lock held by another
// process (default 2s). Zero waits forever.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// WithNoSync skips fsync on commit. Only for tests: a crash loses commits.
func WithNoSync() Option {
	return func(o *options) { o.noSync = true }
}

// Open opens (or creates) the bbolt file at path.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	// The freelist is not written on every commit (it is rebuilt by a scan
	// at open): that halves the pages a small commit writes and syncs.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        o.lockTimeout,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: file is locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.NoSync = o.noSync
	return &Store{db: db}, nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.db.Path() }

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mapErr(s.db.View(func(btx *bbolt.Tx) error {
		return fn(&tx{btx: btx})
	}))
}

// Update runs fn in a read-write transaction, committed when fn returns nil.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mapErr(s.db.Update(func(btx *bbolt.Tx) error {
		return fn(&tx{btx: btx, writable: true})
	}))
}

// Close releases the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", s.db.Path(), err)
	}
	return nil
}

func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	}
	return err
}

type tx struct {
	btx      *bbolt.Tx
	writable bool
}

func (t *tx) Get(bucket, key string) ([]byte, error) {
	if err := store.CheckKey(bucket, key); err != nil {
		return nil, err
	}
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, store.ErrNotFound)
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, store.ErrNotFound)
	}
	// bbolt's slices point into the mmap and die with the transaction.
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
	b, err := t.btx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("creating bucket %s: %w", bucket, err)
	}
	if err := b.Put([]byte(key), value); err != nil {
		return fmt.Errorf("putting %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (t *tx) Delete(bucket, key string) error {
	if err := store.CheckKey(bucket, key); err != nil {
		return err
	}
	if !t.writable {
		return fmt.Errorf("deleting %s/%s: %w", bucket, key, store.ErrReadOnly)
	}
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("deleting %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (t *tx) List(bucket, prefix string) ([]store.KV, error) {
	if err := store.CheckBucket(bucket); err != nil {
		return nil, err
	}
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil, nil
	}
	var out []store.KV
	p := []byte(prefix)
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if v == nil { // a nested bucket; we never create those
			continue
		}
		out = append(out, store.KV{Key: string(k), Value: bytes.Clone(v)})
	}
	return out, nil
}
