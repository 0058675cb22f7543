package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--role", "router", "--controller", "c:1"}, `--role: unknown role "router": want leaf, spine or firewall`},
		{[]string{"--controller", "c:1"}, `--role: unknown role ""`},
		{[]string{"--role", "leaf"}, "--controller HOST:PORT is required"},
		{[]string{"--role", "leaf", "--controller", "c:1", "--log-level", "loud"}, "--log-level"},
		{[]string{"--role", "leaf", "--controller", "c:1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"--role", "leaf", "--controller", "c:1", "--lldp-interval", "10ms"}, "--lldp-interval: 10ms is not between 1s and 1h"},
		{[]string{"--role", "leaf", "--controller", "c:1", "--lldp-mgmt-addr", "10.0.0.300"}, "--lldp-mgmt-addr"},
		{[]string{"plan", "--controller", "c:1", "--lldp-interval", "2s"}, "flag provided but not defined: -lldp-interval"},
		{[]string{"plan", "--role", "core", "--controller", "c:1"}, `--role: unknown role "core"`},
		{[]string{"plan"}, "--controller HOST:PORT is required"},
		{[]string{"--role", "leaf", "--controller", "c:1,nocolon"}, `"nocolon" is not HOST:PORT`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), exitUsage, tt.wantErr)
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q) wrote to stdout: %q", tt.args, stdout.String())
		}
	}
}

func TestControllerList(t *testing.T) {
	var c common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.register(fs, "info")
	if err := fs.Parse([]string{"--role", "leaf", "--controller", "a:1, b:2", "--controller", "c:3"}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := c.config(true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cfg.Controllers, " "), "a:1 b:2 c:3"; got != want {
		t.Errorf("controllers = %q, want %q", got, want)
	}
}
