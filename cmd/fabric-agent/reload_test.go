package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeTarget records what a reload changed in the agent (reload runs on
// the test's goroutine).
type fakeTarget struct {
	lldpInterval  time.Duration
	commitConfirm time.Duration
}

func (f *fakeTarget) SetLLDPInterval(d time.Duration) error {
	f.lldpInterval = d
	return nil
}

func (f *fakeTarget) SetCommitConfirm(d time.Duration) { f.commitConfirm = d }

const baseConfig = `role: leaf
controller: "10.0.0.1:50051"
log-level: info
lldp-interval: 30s
`

// newReloader starts from a config file holding baseConfig.
func newReloader(t *testing.T) (*reloader, string, *fakeTarget, *slog.LevelVar, *bytes.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(baseConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", path, "--hostname", "leaf01"}
	set, err := parseSettings(args, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	chk, err := set.check()
	if err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	level.Set(chk.level)
	var logs bytes.Buffer
	ft := &fakeTarget{}
	log := slog.New(slog.NewTextHandler(&logs, nil))
	return &reloader{args: args, cur: set, level: level, target: ft, log: log}, path, ft, level, &logs
}

func TestReloadAppliesLiveSettings(t *testing.T) {
	r, path, ft, level, logs := newReloader(t)
	cfg := `role: spine
controller: "10.0.0.1:50051"
log-level: debug
lldp-interval: 5s
commit-confirm: 1m
hostname: other
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.reload()
	if got := level.Level(); got != slog.LevelDebug {
		t.Errorf("log level = %v, want debug", got)
	}
	got := []time.Duration{ft.lldpInterval, ft.commitConfirm}
	want := []time.Duration{5 * time.Second, time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("live settings (-want +got):\n%s", diff)
	}
	out := logs.String()
	// role changed in the file: needs a restart. hostname is given on the
	// command line, which wins over the file: no change at all.
	if !strings.Contains(out, `msg="config reload: setting changed, needs restart to take effect" setting=role from=leaf to=spine`) {
		t.Errorf("no needs-restart line for role in:\n%s", out)
	}
	if strings.Contains(out, "setting=hostname") {
		t.Errorf("hostname reported although the command line sets it:\n%s", out)
	}
	if !strings.Contains(out, `needs_restart=[role]`) {
		t.Errorf("summary line does not list role as needing a restart:\n%s", out)
	}

	// Reloading the same file again: role still differs from what runs.
	logs.Reset()
	r.reload()
	if !strings.Contains(logs.String(), "setting=role") {
		t.Errorf("second reload forgot that role still needs a restart:\n%s", logs.String())
	}
}

func TestReloadRejectsBadFile(t *testing.T) {
	for name, cfg := range map[string]string{
		"unknown setting": baseConfig + "no-such-setting: 1\n",
		"bad value":       "role: leaf\ncontroller: \"10.0.0.1:50051\"\nlog-level: debug\nlldp-interval: 10ms\n",
		"bad YAML":        "role: [leaf\n",
		"missing file":    "",
	} {
		t.Run(name, func(t *testing.T) {
			r, path, ft, level, logs := newReloader(t)
			if cfg == "" {
				os.Remove(path)
			} else if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			before := r.cur
			r.reload()
			if level.Level() != slog.LevelInfo || ft.lldpInterval != 0 || ft.commitConfirm != 0 || r.cur != before {
				t.Errorf("a rejected reload changed something: level %v, lldp %v, commit-confirm %v", level.Level(), ft.lldpInterval, ft.commitConfirm)
			}
			if !strings.Contains(logs.String(), `level=ERROR msg="config reload rejected; nothing changed"`) {
				t.Errorf("no rejection log line in:\n%s", logs.String())
			}
		})
	}
}
