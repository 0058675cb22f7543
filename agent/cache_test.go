package agent

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"google.golang.org/protobuf/proto"
)

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// waitCalls waits until the kernel saw want, in order.
func waitCalls(t *testing.T, calls func() []string, want []string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !slices.Equal(calls(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("kernel calls (-want +got):\n%s", cmp.Diff(want, calls()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLastKnownGoodCache: a fully applied snapshot is kept on disk; an agent
// that starts without a controller applies it (here on an empty kernel, as
// after a reboot), and one that has a controller never looks at it.
func TestLastKnownGoodCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cache := filepath.Join(dir, "last-applied-leaf1.pb")
	ctl := newFakeController(snapshot(5, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	first := runAgent(t, addr, fakeKernel(), WithStateDir(dir))
	ctl.waitStatus(t)
	first.stop()
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("no cache after a full apply: %v", err)
	}

	k := fakeKernel()
	runAgent(t, deadAddr(t), k, WithStateDir(dir))
	waitCalls(t, k.Calls, []string{
		"add vrf vrf10010 table 10010 alias fabric-agent",
		"set vrf10010 up",
		"set swp1 master vrf10010",
	})
}

func TestLastKnownGoodCacheRejected(t *testing.T) {
	for name, content := range map[string][]byte{
		"corrupt":        []byte("not a protobuf \xff\xff"),
		"other hostname": mustMarshal(t, snapshotFor("leaf2", 5)),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "last-applied-leaf1.pb"), content, 0o600); err != nil {
				t.Fatal(err)
			}
			k := fakeKernel()
			ta := runAgent(t, deadAddr(t), k, WithStateDir(dir))
			// Let a few sessions fail; the cache must be refused.
			for i := 0; i < 3; i++ {
				select {
				case <-ta.sessionEnds:
				case <-time.After(waitFor):
					t.Fatal("no failed session")
				}
			}
			if calls := k.Calls(); len(calls) != 0 {
				t.Errorf("a rejected cache changed the kernel: %q", calls)
			}
		})
	}
}

func snapshotFor(host string, version uint64) *apiv1.DeviceConfig {
	s := snapshot(version, vrf(10010, "swp1"))
	s.Hostname = host
	return s
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
