package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	"github.com/metalfabric/fabric/controlplane/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "controller.db")
		return func() (store.Store, error) { return bolt.Open(path) }
	})
}

func TestSecondOpenFailsWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := bolt.Open(path, bolt.WithLockTimeout(50*time.Millisecond)); err == nil {
		t.Fatal("second Open of a locked file succeeded, want an error")
	}
}
