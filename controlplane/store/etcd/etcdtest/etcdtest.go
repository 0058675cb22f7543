// Package etcdtest starts throw-away etcd clusters for tests and benchmarks:
// real etcd server processes (Debian's etcd-server package, installed by
// scripts/deps.sh, so `make test` has it) listening on loopback ports picked
// at random, with their data in a temporary directory. It owns those
// processes and directories and removes them in the test's cleanup; it must
// not touch any other etcd.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is the etcd server executable looked up in PATH.
const Binary = "etcd"

// MaxTxnOps is the --max-txn-ops the members run with unless Options say
// otherwise (etcd's default is 128), see docs/etcd.md.
const MaxTxnOps = 1024

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs, in member order.
	Endpoints []string

	tb      testing.TB
	members []*member
}

type member struct {
	name    string
	dir     string
	cmd     *exec.Cmd
	out     *lockedBuffer
	done    chan struct{}
	stopped bool
}

// Options configure Start.
type Options struct {
	// Members is the cluster size (default 1).
	Members int
	// DataDir is where the members' data directories go (default: a
	// directory of the test's TempDir, on disk).
	DataDir string
	// MaxTxnOps is the members' --max-txn-ops (default MaxTxnOps).
	MaxTxnOps int
}

// Start starts a cluster and waits until it serves; it stops it in
// tb.Cleanup. It skips the test when the etcd binary is missing.
func Start(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		tb.Skipf("etcd server binary %q not found in PATH (Debian package etcd-server; `make test` installs it through scripts/deps.sh): %v", Binary, err)
	}
	if o.Members <= 0 {
		o.Members = 1
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = MaxTxnOps
	}
	if o.DataDir == "" {
		o.DataDir = tb.TempDir()
	}
	var lastErr error
	// Free ports are picked before etcd binds them; another process may
	// take one in between, so a failed start is tried again.
	for range 3 {
		c, err := start(tb, o)
		if err == nil {
			return c
		}
		lastErr = err
	}
	tb.Fatalf("starting etcd: %v", lastErr)
	return nil
}

func start(tb testing.TB, o Options) (*Cluster, error) {
	ports, err := freePorts(2 * o.Members)
	if err != nil {
		return nil, err
	}
	c := &Cluster{tb: tb}
	var initial []string
	for i := range o.Members {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	token := fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i := range o.Members {
		dir, err := os.MkdirTemp(o.DataDir, fmt.Sprintf("etcd-m%d-", i))
		if err != nil {
			c.stopAll()
			return nil, fmt.Errorf("creating data dir: %w", err)
		}
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		m := &member{name: fmt.Sprintf("m%d", i), dir: dir, out: &lockedBuffer{}, done: make(chan struct{})}
		m.cmd = exec.Command(Binary,
			"--name", m.name,
			"--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", client,
			"--advertise-client-urls", client,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--max-txn-ops", fmt.Sprint(o.MaxTxnOps),
			"--logger", "zap",
			"--log-level", "error",
		)
		m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
		dieWithParent(m.cmd)
		if err := m.cmd.Start(); err != nil {
			c.stopAll()
			return nil, fmt.Errorf("starting %s: %w", Binary, err)
		}
		go func() { _ = m.cmd.Wait(); close(m.done) }()
		c.members = append(c.members, m)
		c.Endpoints = append(c.Endpoints, client)
	}
	if err := c.waitReady(30 * time.Second); err != nil {
		c.stopAll()
		return nil, err
	}
	tb.Cleanup(c.stopAll)
	return c, nil
}

// waitReady waits until a write through every member succeeds.
func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i, ep := range c.Endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("connecting to member %d: %w", i, err)
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = cli.Put(ctx, "/etcdtest/ready", "1")
			cancel()
			if err == nil {
				break
			}
			select {
			case <-c.members[i].done:
				cli.Close()
				return fmt.Errorf("etcd member %d exited:\n%s", i, c.members[i].out.String())
			default:
			}
			if time.Now().After(deadline) {
				cli.Close()
				return fmt.Errorf("etcd member %d not ready after %s: %v\n%s", i, timeout, err, c.members[i].out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cli.Close()
	}
	return nil
}

// Client returns a client of the whole cluster, closed in the test's
// cleanup.
func (c *Cluster) Client() *clientv3.Client {
	c.tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.tb.Fatalf("etcd client: %v", err)
	}
	c.tb.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Leader returns the index of the member that is the raft leader now.
func (c *Cluster) Leader() int {
	c.tb.Helper()
	cli := c.Client()
	for i, ep := range c.Endpoints {
		if c.members[i].stopped {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			continue
		}
		if st.Leader == st.Header.MemberId {
			return i
		}
	}
	c.tb.Fatal("no etcd member is the leader")
	return -1
}

// Kill kills member i (SIGKILL) and waits for it to exit.
func (c *Cluster) Kill(i int) {
	c.tb.Helper()
	m := c.members[i]
	if m.stopped {
		return
	}
	m.stopped = true
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.tb.Errorf("killing etcd member %d: %v", i, err)
	}
	<-m.done
}

func (c *Cluster) stopAll() {
	for _, m := range c.members {
		if !m.stopped {
			m.stopped = true
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		_ = os.RemoveAll(m.dir)
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
