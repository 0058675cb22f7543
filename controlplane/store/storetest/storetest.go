// Package storetest is the conformance suite every store.Store backend must
// pass. It owns only tests; it must not depend on any backend.
//
// A backend's test calls Run with a Factory:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Opener {
//			path := filepath.Join(t.TempDir(), "c.db")
//			return func() (store.Store, error) { return bolt.Open(path) }
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/controlplane/store"
)

// Opener opens the same underlying storage each time it is called, so that
// data written before Close is visible after the next open.
type Opener func() (store.Store, error)

// Factory returns an Opener for fresh, empty storage private to t.
type Factory func(t *testing.T) Opener

// Run runs the suite against the backend produced by f.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"BucketsAreSeparate", testBucketsAreSeparate},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"ListPrefixSorted", testListPrefixSorted},
		{"ReadYourWrites", testReadYourWrites},
		{"ErrorRollsBack", testErrorRollsBack},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"InvalidKeys", testInvalidKeys},
		{"EmptyValue", testEmptyValue},
		{"ValuesOutliveTx", testValuesOutliveTx},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentUpdatesSerialize", testConcurrentUpdatesSerialize},
		{"PersistAcrossReopen", testPersistAcrossReopen},
		{"ClosedStore", testClosedStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, f(t))
		})
	}
}

func open(t *testing.T, o Opener) store.Store {
	t.Helper()
	s, err := o()
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func put(t *testing.T, s store.Store, bucket, key, value string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.Put(bucket, key, []byte(value))
	})
	if err != nil {
		t.Fatalf("Put(%s, %s): %v", bucket, key, err)
	}
}

// get returns the value, or "<missing>" for ErrNotFound.
func get(t *testing.T, s store.Store, bucket, key string) string {
	t.Helper()
	var got string
	err := s.View(context.Background(), func(tx store.Tx) error {
		v, err := tx.Get(bucket, key)
		if errors.Is(err, store.ErrNotFound) {
			got = "<missing>"
			return nil
		}
		got = string(v)
		return err
	})
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", bucket, key, err)
	}
	return got
}

func list(t *testing.T, s store.Store, bucket, prefix string) []string {
	t.Helper()
	var got []string
	err := s.View(context.Background(), func(tx store.Tx) error {
		kvs, err := tx.List(bucket, prefix)
		for _, kv := range kvs {
			got = append(got, kv.Key+"="+string(kv.Value))
		}
		return err
	})
	if err != nil {
		t.Fatalf("List(%s, %q): %v", bucket, prefix, err)
	}
	return got
}

func testGetMissing(t *testing.T, o Opener) {
	s := open(t, o)
	if got := get(t, s, "nobucket", "k"); got != "<missing>" {
		t.Errorf("missing bucket: got %q, want <missing>", got)
	}
	put(t, s, "b", "other", "v")
	if got := get(t, s, "b", "k"); got != "<missing>" {
		t.Errorf("missing key: got %q, want <missing>", got)
	}
	if got := list(t, s, "nobucket", ""); len(got) != 0 {
		t.Errorf("List of missing bucket = %q, want empty", got)
	}
}

func testPutGet(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "k", `{"a":1}`)
	if got := get(t, s, "b", "k"); got != `{"a":1}` {
		t.Errorf("Get = %q, want %q", got, `{"a":1}`)
	}
}

func testBucketsAreSeparate(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b1", "k", "one")
	put(t, s, "b2", "k", "two")
	put(t, s, "b10", "k", "ten")
	for _, tc := range []struct{ bucket, want string }{{"b1", "one"}, {"b2", "two"}, {"b10", "ten"}} {
		if got := get(t, s, tc.bucket, "k"); got != tc.want {
			t.Errorf("Get(%s, k) = %q, want %q", tc.bucket, got, tc.want)
		}
	}
	if diff := cmp.Diff([]string{"k=one"}, list(t, s, "b1", "")); diff != "" {
		t.Errorf("List(b1) (-want +got):\n%s", diff)
	}
}

func testOverwrite(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "k", "v1")
	put(t, s, "b", "k", "v2")
	if got := get(t, s, "b", "k"); got != "v2" {
		t.Errorf("Get = %q, want v2", got)
	}
}

func testDelete(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "k", "v")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Delete("b", "k"); err != nil {
			return err
		}
		if err := tx.Delete("b", "never-existed"); err != nil {
			return fmt.Errorf("deleting a missing key: %w", err)
		}
		return tx.Delete("nobucket", "k")
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := get(t, s, "b", "k"); got != "<missing>" {
		t.Errorf("after Delete: Get = %q, want <missing>", got)
	}
}

func testListPrefixSorted(t *testing.T, o Opener) {
	s := open(t, o)
	for _, k := range []string{"m/2", "m/10", "n/1", "m/1", "l/1", "m"} {
		put(t, s, "b", k, "v"+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"l/1=vl/1", "m=vm", "m/1=vm/1", "m/10=vm/10", "m/2=vm/2", "n/1=vn/1"}},
		{"m/", []string{"m/1=vm/1", "m/10=vm/10", "m/2=vm/2"}},
		{"m/1", []string{"m/1=vm/1", "m/10=vm/10"}},
		{"z", nil},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, list(t, s, "b", tc.prefix)); diff != "" {
			t.Errorf("List(b, %q) (-want +got):\n%s", tc.prefix, diff)
		}
	}
}

func testReadYourWrites(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "a", "1")
	put(t, s, "b", "c", "3")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put("b", "b", []byte("2")); err != nil {
			return err
		}
		if err := tx.Delete("b", "c"); err != nil {
			return err
		}
		v, err := tx.Get("b", "b")
		if err != nil || string(v) != "2" {
			return fmt.Errorf("Get of own write = %q, %v", v, err)
		}
		if _, err := tx.Get("b", "c"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("Get of own delete: err = %v, want ErrNotFound", err)
		}
		kvs, err := tx.List("b", "")
		if err != nil {
			return err
		}
		var keys []string
		for _, kv := range kvs {
			keys = append(keys, kv.Key)
		}
		if diff := cmp.Diff([]string{"a", "b"}, keys); diff != "" {
			return fmt.Errorf("List inside tx (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testErrorRollsBack(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "keep", "v")
	boom := errors.New("boom")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put("b", "new", []byte("v")); err != nil {
			return err
		}
		if err := tx.Put("other", "new", []byte("v")); err != nil {
			return err
		}
		if err := tx.Delete("b", "keep"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update error = %v, want %v", err, boom)
	}
	if diff := cmp.Diff([]string{"keep=v"}, list(t, s, "b", "")); diff != "" {
		t.Errorf("after rollback (-want +got):\n%s", diff)
	}
	if got := list(t, s, "other", ""); len(got) != 0 {
		t.Errorf("after rollback: bucket other = %q, want empty", got)
	}
}

func testViewIsReadOnly(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "k", "v")
	err := s.View(context.Background(), func(tx store.Tx) error {
		if err := tx.Put("b", "k2", []byte("v")); !errors.Is(err, store.ErrReadOnly) {
			return fmt.Errorf("Put in View: err = %v, want ErrReadOnly", err)
		}
		if err := tx.Delete("b", "k"); !errors.Is(err, store.ErrReadOnly) {
			return fmt.Errorf("Delete in View: err = %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"k=v"}, list(t, s, "b", "")); diff != "" {
		t.Errorf("after View (-want +got):\n%s", diff)
	}
}

func testInvalidKeys(t *testing.T, o Opener) {
	s := open(t, o)
	tests := []struct{ bucket, key string }{
		{"", "k"},
		{"b", ""},
		{"a/b", "k"},
	}
	for _, tc := range tests {
		err := s.Update(context.Background(), func(tx store.Tx) error {
			if _, err := tx.Get(tc.bucket, tc.key); !errors.Is(err, store.ErrInvalidKey) {
				return fmt.Errorf("Get: err = %v, want ErrInvalidKey", err)
			}
			if err := tx.Put(tc.bucket, tc.key, []byte("v")); !errors.Is(err, store.ErrInvalidKey) {
				return fmt.Errorf("Put: err = %v, want ErrInvalidKey", err)
			}
			if err := tx.Delete(tc.bucket, tc.key); !errors.Is(err, store.ErrInvalidKey) {
				return fmt.Errorf("Delete: err = %v, want ErrInvalidKey", err)
			}
			return nil
		})
		if err != nil {
			t.Errorf("bucket %q key %q: %v", tc.bucket, tc.key, err)
		}
	}
	err := s.View(context.Background(), func(tx store.Tx) error {
		_, err := tx.List("a/b", "")
		return err
	})
	if !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("List(a/b): err = %v, want ErrInvalidKey", err)
	}
}

func testEmptyValue(t *testing.T, o Opener) {
	s := open(t, o)
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.Put("b", "k", nil)
	})
	if !errors.Is(err, store.ErrEmptyValue) {
		t.Errorf("Put(nil): err = %v, want ErrEmptyValue", err)
	}
}

func testValuesOutliveTx(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, "b", "k", "value")
	var got []byte
	var listed []store.KV
	err := s.View(context.Background(), func(tx store.Tx) error {
		var err error
		if got, err = tx.Get("b", "k"); err != nil {
			return err
		}
		listed, err = tx.List("b", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Churn the store so a backend that handed out views of its own
	// memory would show different bytes now.
	for i := range 100 {
		put(t, s, "b", fmt.Sprintf("k%03d", i), fmt.Sprintf("%0100d", i))
	}
	put(t, s, "b", "k", "VALUE")
	if string(got) != "value" {
		t.Errorf("Get value after tx = %q, want value", got)
	}
	if len(listed) != 1 || string(listed[0].Value) != "value" {
		t.Errorf("List value after tx = %q, want [k=value]", listed)
	}
	got[0] = 'X' // caller owns the slice
	if v := get(t, s, "b", "k"); v != "VALUE" {
		t.Errorf("stored value changed through returned slice: %q", v)
	}
}

func testCanceledContext(t *testing.T, o Opener) {
	s := open(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.Update(ctx, func(tx store.Tx) error {
		ran = true
		return tx.Put("b", "k", []byte("v"))
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with canceled ctx: err = %v, want context.Canceled", err)
	}
	if ran {
		t.Error("Update ran fn with a canceled context")
	}
	if err := s.View(ctx, func(store.Tx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View with canceled ctx: err = %v, want context.Canceled", err)
	}
	if got := get(t, s, "b", "k"); got != "<missing>" {
		t.Errorf("Get = %q, want <missing>", got)
	}
}

// testConcurrentUpdatesSerialize increments a counter from many goroutines;
// with serializable updates no increment is lost.
func testConcurrentUpdatesSerialize(t *testing.T, o Opener) {
	s := open(t, o)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- s.Update(context.Background(), func(tx store.Tx) error {
				var c int
				v, err := tx.Get("b", "counter")
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					return err
				default:
					if _, err := fmt.Sscan(string(v), &c); err != nil {
						return err
					}
				}
				return tx.Put("b", "counter", []byte(fmt.Sprint(c+1)))
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	if got := get(t, s, "b", "counter"); got != fmt.Sprint(n) {
		t.Errorf("counter = %s, want %d", got, n)
	}
}

func testPersistAcrossReopen(t *testing.T, o Opener) {
	s, err := o()
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	put(t, s, "b", "k1", "v1")
	put(t, s, "b", "k2", "v2")
	put(t, s, "c", "k", "v")
	err = s.Update(context.Background(), func(tx store.Tx) error { return tx.Delete("b", "k2") })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := open(t, o)
	if diff := cmp.Diff([]string{"k1=v1"}, list(t, s2, "b", "")); diff != "" {
		t.Errorf("bucket b after reopen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"k=v"}, list(t, s2, "c", "")); diff != "" {
		t.Errorf("bucket c after reopen (-want +got):\n%s", diff)
	}
}

func testClosedStore(t *testing.T, o Opener) {
	s, err := o()
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = s.View(context.Background(), func(store.Tx) error { return nil })
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("View after Close: err = %v, want ErrClosed", err)
	}
	err = s.Update(context.Background(), func(store.Tx) error { return nil })
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close: err = %v, want ErrClosed", err)
	}
}
