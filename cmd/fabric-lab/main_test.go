package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: fabric-lab"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"up"}, 2, "usage: fabric-lab up"},
		{[]string{"down"}, 2, "usage: fabric-lab down"},
		{[]string{"down", "-name", "x", "extra.yml"}, 2, "usage: fabric-lab down"},
		{[]string{"exec", "t.yml", "node"}, 2, "usage: fabric-lab exec"},
		{[]string{"inspect", "/nonexistent/t.yml"}, 1, "reading topology"},
		{[]string{"help"}, 0, ""},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != tc.code {
			t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tc.args, code, tc.code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) stderr = %q, want it to contain %q", tc.args, stderr.String(), tc.want)
		}
	}
}

// TestCLI drives up, inspect, exec and down like a user would.
func TestCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip (iproute2) is not installed")
	}
	name := fmt.Sprintf("cli%d%04x", os.Getpid()%100000, rand.Uint32()&0xffff)
	dir := t.TempDir()
	topo := filepath.Join(dir, "cli.clab.yml")
	data := fmt.Sprintf("name: %s\ntopology:\n  defaults: {kind: linux}\n  nodes:\n    n1: {cmd: sleep 1000}\n    n2: {}\n  links:\n    - endpoints: [n1:e1, n2:e1]\n", name)
	if err := os.WriteFile(topo, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run([]string{"down", "-name", name}, &bytes.Buffer{}, &bytes.Buffer{}) })

	cli := func(wantCode int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != wantCode {
			t.Fatalf("fabric-lab %q = %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, wantCode, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	out := cli(0, "up", topo)
	if !strings.Contains(out, "clab-"+name+"-n1") || !strings.Contains(out, "172.20.20.2/24") {
		t.Errorf("up output lacks the node table:\n%s", out)
	}
	out = cli(0, "inspect", topo)
	if !strings.Contains(out, "running") || !strings.Contains(out, "clab-"+name+"-n2") {
		t.Errorf("inspect output:\n%s", out)
	}
	out = cli(0, "exec", topo, "n1", "--", "cat", "/sys/class/net/e1/operstate")
	if strings.TrimSpace(out) != "up" {
		t.Errorf("exec output = %q, want up", out)
	}
	cli(3, "exec", topo, "n2", "sh", "-c", "exit 3")
	cli(0, "down", topo)
	out = cli(0, "inspect", topo)
	if strings.Contains(out, "running") || !strings.Contains(out, "absent") {
		t.Errorf("inspect after down:\n%s", out)
	}
}
