// Package store defines the controller's persistence contract: a small
// transactional key/value store of opaque, non-empty values grouped in
// buckets. It owns only that contract and its sentinel errors; backends live
// in sub-packages (bolt, etcd) and the conformance suite in
// storetest.
//
// The interface is deliberately the intersection of what an embedded bbolt
// file and etcd's software transactional memory (concurrency.STM) can offer:
// whole-value Get/Put/Delete and sorted prefix listing, no cursors, no nested
// buckets, no sequences, no per-key metadata. Records are encoded by callers
// (the inventory package uses JSON); this package never interprets values.
//
// It must not know about networks, machines or devices.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors shared by all backends. Backends wrap them with context;
// callers test with errors.Is.
var (
	// ErrNotFound is returned by Tx.Get for a missing key or bucket.
	ErrNotFound = errors.New("key not found")
	// ErrReadOnly is returned by writes inside a View transaction.
	ErrReadOnly = errors.New("read-only transaction")
	// ErrInvalidKey is returned for an empty bucket or key, or a bucket
	// containing the separator '/'.
	ErrInvalidKey = errors.New("invalid bucket or key")
	// ErrEmptyValue is returned by Tx.Put for an empty value. etcd's STM
	// cannot tell an empty value from a missing key, so no backend stores one.
	ErrEmptyValue = errors.New("empty value")
	// ErrClosed is returned by View and Update after Close.
	ErrClosed = errors.New("store closed")
)

// KV is one key and its value as returned by Tx.List.
type KV struct {
	Key   string
	Value []byte
}

// Tx is one transaction. It is only valid inside the function passed to
// View or Update and must not be used from other goroutines. Reads see the
// transaction's own earlier writes. Returned byte slices are owned by the
// caller and stay valid after the transaction.
type Tx interface {
	// Get returns the value of key in bucket, or an error wrapping
	// ErrNotFound.
	Get(bucket, key string) ([]byte, error)
	// Put sets key in bucket to value, creating the bucket if needed.
	// value must not be empty.
	Put(bucket, key string, value []byte) error
	// Delete removes key from bucket. Deleting a missing key is not an error.
	Delete(bucket, key string) error
	// List returns every key in bucket starting with prefix ("" for all),
	// sorted by key in byte order. A missing bucket yields no entries.
	List(bucket, prefix string) ([]KV, error)
}

// Store is a transactional key/value store.
//
// Update transactions are serializable with respect to each other (bbolt has
// a single writer; an etcd backend makes every STM transaction touch a
// common fence key so that List results are covered by conflict detection).
// View transactions see a consistent snapshot.
//
// The function passed to Update may run more than once (an optimistic
// backend retries it on conflict), so it must not have side effects outside
// the Tx: collect results in variables that the function resets on entry, and
// act on them after Update returned nil. If fn returns an error nothing is
// written and that error is returned unchanged (wrapped at most).
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Watcher is implemented by backends that several controller processes
// share (etcd), so each can learn what the others committed.
type Watcher interface {
	// WatchBucket calls fn with every key of bucket and its value, then
	// with every later change committed by any writer (Value nil for a
	// delete), in commit order, until ctx is done; it returns ctx's error.
	// After a break in the change feed it starts again with every key, so
	// fn must tolerate seeing a value again. fn runs on one goroutine and
	// must not block for long.
	WatchBucket(ctx context.Context, bucket string, fn func(KV)) error
}

// CheckKey validates a bucket and key for every backend, so all of them
// accept and reject the same keys.
func CheckKey(bucket, key string) error {
	if err := CheckBucket(bucket); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("bucket %q: empty key: %w", bucket, ErrInvalidKey)
	}
	return nil
}

// CheckBucket validates a bucket name.
func CheckBucket(bucket string) error {
	if bucket == "" {
		return fmt.Errorf("empty bucket name: %w", ErrInvalidKey)
	}
	if strings.Contains(bucket, "/") {
		return fmt.Errorf("bucket %q contains '/': %w", bucket, ErrInvalidKey)
	}
	return nil
}
