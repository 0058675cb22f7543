package gobgp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/metalfabric/fabric/bgp"
)

// Speakers under test run in helper processes, one per network namespace:
// GoBGP opens its sockets from its own goroutines, on whatever OS thread Go
// picks, so a speaker cannot be confined to a namespace by setns on one
// locked thread. The test binary re-executes itself under "ip netns exec"
// with helperEnv set; TestMain then serves JSON requests on stdin (one per
// line) against a Speaker, and keeps the WatchBest table up to date.

const helperEnv = "GOBGP_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(serveHelper(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type helperReq struct {
	Op     string
	Global bgp.Global
	Peer   bgp.Peer
	Key    bgp.PeerKey
	VRF    bgp.VRF
	Paths  []bgp.Path
}

type helperResp struct {
	Err   string
	Table []bgp.Update
	Peers []bgp.PeerState
}

func serveHelper(in io.Reader, out io.Writer) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := New(WithLogger(log), WithReresolveAfter(3*time.Second))
	ctx := context.Background()
	var rec recorder
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	for {
		var r helperReq
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				s.Stop(ctx)
				return 0
			}
			fmt.Fprintln(os.Stderr, "helper: decoding request:", err)
			return 1
		}
		var resp helperResp
		var err error
		switch r.Op {
		case "start":
			if err = s.Start(ctx, r.Global); err == nil {
				go s.WatchBest(ctx, rec.add)
			}
		case "stop":
			err = s.Stop(ctx)
		case "addvrf":
			err = s.AddVRF(ctx, r.VRF)
		case "addpeer":
			err = s.AddPeer(ctx, r.Peer)
		case "updatepeer":
			err = s.UpdatePeer(ctx, r.Peer)
		case "deletepeer":
			err = s.DeletePeer(ctx, r.Key)
		case "resetpeer":
			err = s.ResetPeer(ctx, r.Key)
		case "advertise":
			err = s.Advertise(ctx, r.Paths)
		case "withdraw":
			err = s.Withdraw(ctx, r.Paths)
		case "table":
			for _, u := range rec.snapshot() {
				resp.Table = append(resp.Table, u)
			}
		case "peers":
			resp.Peers, err = s.Peers(ctx)
		default:
			err = fmt.Errorf("unknown op %q", r.Op)
		}
		if err != nil {
			resp.Err = err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			fmt.Fprintln(os.Stderr, "helper: encoding response:", err)
			return 1
		}
	}
}

// remote is a Speaker running in a helper process in a namespace.
type remote struct {
	t    *testing.T
	name string
	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	dec  *json.Decoder
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startRemote starts a helper speaker process in namespace ns.
func startRemote(t *testing.T, name, ns string) *remote {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	r := &remote{t: t, name: name, cmd: cmd, logs: &syncBuffer{}}
	cmd.Stderr = r.logs
	if r.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.dec = json.NewDecoder(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper %s: %v", name, err)
	}
	t.Cleanup(func() {
		r.in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("logs of speaker %s:\n%s", name, r.logs.String())
		}
	})
	return r
}

func (r *remote) call(req helperReq) (helperResp, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := json.NewEncoder(r.in).Encode(req); err != nil {
		return helperResp{}, fmt.Errorf("speaker %s: sending %s: %w", r.name, req.Op, err)
	}
	var resp helperResp
	if err := r.dec.Decode(&resp); err != nil {
		return resp, fmt.Errorf("speaker %s: reading %s response: %w", r.name, req.Op, err)
	}
	if resp.Err != "" {
		return resp, fmt.Errorf("speaker %s: %s: %s", r.name, req.Op, resp.Err)
	}
	return resp, nil
}

func (r *remote) must(req helperReq) helperResp {
	r.t.Helper()
	resp, err := r.call(req)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

func (r *remote) table() map[string]bgp.Update {
	r.t.Helper()
	m := map[string]bgp.Update{}
	for _, u := range r.must(helperReq{Op: "table"}).Table {
		m[updateKey(u)] = u
	}
	return m
}

func (r *remote) peer(k bgp.PeerKey) (bgp.PeerState, bool) {
	r.t.Helper()
	for _, p := range r.must(helperReq{Op: "peers"}).Peers {
		if p.Key == k {
			return p, true
		}
	}
	return bgp.PeerState{}, false
}

// waitEstablished waits until the peer k of r is established.
func (r *remote) waitEstablished(k bgp.PeerKey, d time.Duration) bgp.PeerState {
	r.t.Helper()
	var st bgp.PeerState
	waitFor(r.t, d, fmt.Sprintf("%s: session %s established", r.name, k), func() (bool, string) {
		var ok bool
		st, ok = r.peer(k)
		return ok && st.State == bgp.StateEstablished, fmt.Sprintf("%+v", st)
	})
	return st
}
