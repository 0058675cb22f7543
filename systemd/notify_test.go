package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeSystemd is a notify socket like systemd's: a unixgram listener whose
// path is in NOTIFY_SOCKET for the rest of the test.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listening on a fake notify socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &fakeSystemd{t: t, conn: conn}
}

// recv returns the datagrams that arrive within wait.
func (f *fakeSystemd) recv(wait time.Duration) []string {
	f.t.Helper()
	var got []string
	buf := make([]byte, 4096)
	deadline := time.Now().Add(wait)
	for {
		if err := f.conn.SetReadDeadline(deadline); err != nil {
			f.t.Fatalf("setting read deadline: %v", err)
		}
		n, err := f.conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return got
			}
			f.t.Fatalf("reading the fake notify socket: %v", err)
		}
		got = append(got, string(buf[:n]))
	}
}

// recvN returns exactly n datagrams, failing after a generous timeout.
func (f *fakeSystemd) recvN(n int) []string {
	f.t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for len(got) < n {
		if err := f.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			f.t.Fatalf("setting read deadline: %v", err)
		}
		m, err := f.conn.Read(buf)
		if err != nil {
			f.t.Fatalf("after %q: want %d datagrams: %v", got, n, err)
		}
		got = append(got, string(buf[:m]))
	}
	return got
}

func TestNotifierDatagrams(t *testing.T) {
	f := newFakeSystemd(t)
	n := NewNotifier()
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	steps := []struct {
		name string
		call func() error
	}{
		{"Ready", n.Ready},
		{"Status", func() error { return n.Status("applied version 42") }},
		{"Status with newlines", func() error { return n.Status("two\nlines\r\n") }},
		{"WatchdogPing", n.WatchdogPing},
		{"Stopping", n.Stopping},
	}
	for _, s := range steps {
		if err := s.call(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	want := []string{"READY=1", "STATUS=applied version 42", "STATUS=two lines ", "WATCHDOG=1", "STOPPING=1"}
	if diff := cmp.Diff(want, f.recvN(len(want))); diff != "" {
		t.Errorf("datagrams (-want +got):\n%s", diff)
	}
}

func TestNotifierReloading(t *testing.T) {
	f := newFakeSystemd(t)
	if err := NewNotifier().Reloading(); err != nil {
		t.Fatalf("Reloading: %v", err)
	}
	got := f.recvN(1)[0]
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Errorf("Reloading sent %q, want RELOADING=1\\nMONOTONIC_USEC=<usec>", got)
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "30000000")
	for _, n := range []*Notifier{nil, {}, NewNotifier()} {
		if n.Enabled() {
			t.Errorf("Enabled() = true without NOTIFY_SOCKET")
		}
		for name, call := range map[string]func() error{
			"Ready": n.Ready, "Stopping": n.Stopping, "Reloading": n.Reloading, "WatchdogPing": n.WatchdogPing,
			"Status": func() error { return n.Status("x") },
		} {
			if err := call(); err != nil {
				t.Errorf("%s without systemd: %v, want nil (a no-op)", name, err)
			}
		}
		if d, ok := n.WatchdogInterval(); ok {
			t.Errorf("WatchdogInterval() = %v, true without NOTIFY_SOCKET", d)
		}
	}
}

func TestNotifierSendError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	err := NewNotifier().Ready()
	if err == nil || !strings.HasPrefix(err.Error(), "sd_notify ready: ") {
		t.Errorf("Ready to a missing socket: %v, want a wrapped sd_notify ready error", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	newFakeSystemd(t)
	tests := []struct {
		name   string
		usec   string
		pid    string
		want   time.Duration
		wantOK bool
	}{
		{"unset", "", "", 0, false},
		{"30s", "30000000", "", 30 * time.Second, true},
		{"for this process", "1000000", "self", time.Second, true},
		{"for another process", "1000000", "1", 0, false},
		{"garbage", "soon", "", 0, false},
		{"zero", "0", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			pid := tt.pid
			if pid == "self" {
				pid = strconv.Itoa(os.Getpid())
			}
			t.Setenv("WATCHDOG_PID", pid)
			got, ok := NewNotifier().WatchdogInterval()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("WatchdogInterval() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
