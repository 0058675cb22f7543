package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/etcd"
	"github.com/metalfabric/fabric/controlplane/store/etcd/etcdtest"
	"github.com/metalfabric/fabric/controlplane/store/storetest"
)

// One etcd for the whole suite; every subtest gets a prefix of its own.
func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		prefix := fmt.Sprintf("/conformance/%d/", n.Add(1))
		return func() (store.Store, error) {
			return etcd.Open(context.Background(), c.Endpoints, etcd.WithPrefix(prefix))
		}
	})
}

func openPair(t *testing.T, c *etcdtest.Cluster, prefix string) (*etcd.Store, *etcd.Store) {
	t.Helper()
	var out [2]*etcd.Store
	for i := range out {
		s, err := etcd.Open(context.Background(), c.Endpoints, etcd.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out[i] = s
	}
	return out[0], out[1]
}

func mustPut(t *testing.T, s store.Store, bucket, key, value string) {
	t.Helper()
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put(bucket, key, []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

// TestConflicts runs a transaction on one store while another store (a
// second replica) commits in the middle of it: the first transaction must
// run again exactly when the other commit touched what it read.
func TestConflicts(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	tests := []struct {
		name string
		// read is what the transaction reads; it then writes "out/k".
		read func(store.Tx) error
		// other is committed by the second replica after the first read.
		other    func(store.Tx) error
		wantRuns int
	}{
		{
			name:     "modified key read by Get",
			read:     func(tx store.Tx) error { _, err := tx.Get("b", "k"); return err },
			other:    func(tx store.Tx) error { return tx.Put("b", "k", []byte("changed")) },
			wantRuns: 2,
		},
		{
			name:     "deleted key read by Get",
			read:     func(tx store.Tx) error { _, err := tx.Get("b", "k"); return err },
			other:    func(tx store.Tx) error { return tx.Delete("b", "k") },
			wantRuns: 2,
		},
		{
			name:     "created key that Get found missing",
			read:     func(tx store.Tx) error { _, err := tx.Get("b", "new"); return err },
			other:    func(tx store.Tx) error { return tx.Put("b", "new", []byte("v")) },
			wantRuns: 2,
		},
		{
			name:     "key created in a listed bucket",
			read:     func(tx store.Tx) error { _, err := tx.List("b", "zz"); return err },
			other:    func(tx store.Tx) error { return tx.Put("b", "zz1", []byte("v")) },
			wantRuns: 2,
		},
		{
			name:     "key deleted from a listed bucket",
			read:     func(tx store.Tx) error { _, err := tx.List("b", ""); return err },
			other:    func(tx store.Tx) error { return tx.Delete("b", "k") },
			wantRuns: 2,
		},
		{
			name:     "unrelated key",
			read:     func(tx store.Tx) error { _, err := tx.Get("b", "k"); return err },
			other:    func(tx store.Tx) error { return tx.Put("other", "k", []byte("v")) },
			wantRuns: 1,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := openPair(t, c, fmt.Sprintf("/conflicts/%d/", i))
			mustPut(t, a, "b", "k", "v")
			runs := 0
			err := a.Update(context.Background(), func(tx store.Tx) error {
				runs++
				if err := tc.read(tx); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if runs == 1 {
					if err := b.Update(context.Background(), tc.other); err != nil {
						return fmt.Errorf("other replica: %w", err)
					}
				}
				return tx.Put("out", "k", []byte(fmt.Sprint(runs)))
			})
			if err != nil {
				t.Fatal(err)
			}
			if runs != tc.wantRuns {
				t.Errorf("transaction ran %d times, want %d", runs, tc.wantRuns)
			}
		})
	}
}

// TestPrefixesAreSeparate checks that two prefixes on one cluster do not
// see each other's keys.
func TestPrefixesAreSeparate(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	a, _ := openPair(t, c, "/one")
	b, _ := openPair(t, c, "/one-two")
	mustPut(t, a, "b", "k", "a")
	var got []store.KV
	err := b.View(context.Background(), func(tx store.Tx) error {
		var err error
		got, err = tx.List("b", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("prefix /one-two sees %v of prefix /one", got)
	}
}

// TestWatchBucket follows a bucket from one store while another writes.
func TestWatchBucket(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	a, b := openPair(t, c, "/watch/")
	mustPut(t, a, "cfg", "before", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- a.WatchBucket(ctx, "cfg", func(kv store.KV) {
			v := "<deleted>"
			if kv.Value != nil {
				v = string(kv.Value)
			}
			got <- kv.Key + "=" + v
		})
	}()
	want := []string{"before=1", "after=2", "before=<deleted>"}
	for i, w := range want {
		switch i {
		case 1:
			mustPut(t, b, "other", "x", "ignored")
			mustPut(t, b, "cfg", "after", "2")
		case 2:
			if err := b.Update(context.Background(), func(tx store.Tx) error { return tx.Delete("cfg", "before") }); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("event %d = %q, want %q", i, g, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event %d (want %q)", i, w)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WatchBucket returned %v, want context.Canceled", err)
	}
}
