package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// stateDir holds one small JSON file per running lab. It lives on /run (a
// tmpfs), like the namespaces it describes, so both vanish on reboot.
var stateDir = "/run/fabric-lab"

// state records which namespaces a lab owns, written before any of them is
// created, so Down finds them after a crash.
type state struct {
	Name       string   `json:"name"`
	LabDir     string   `json:"lab-dir"`
	Topology   string   `json:"topology,omitempty"`
	Namespaces []string `json:"namespaces"`
}

func statePath(lab string) string { return filepath.Join(stateDir, lab+".json") }

func writeState(s state) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding lab state: %w", err)
	}
	tmp := statePath(s.Name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	if err := os.Rename(tmp, statePath(s.Name)); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	return nil
}

func removeState(lab string) error {
	if err := os.Remove(statePath(lab)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing lab state: %w", err)
	}
	return nil
}

// stateClaims returns the namespaces lab's state file lists (own) and those
// listed by any other lab's state file (claimed).
func stateClaims(lab string) (own, claimed map[string]bool, err error) {
	own, claimed = map[string]bool{}, map[string]bool{}
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return own, claimed, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading lab states: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(stateDir, e.Name()))
		if err != nil {
			continue
		}
		var s state
		if json.Unmarshal(b, &s) != nil {
			continue
		}
		target := claimed
		if name == lab {
			target = own
		}
		for _, ns := range s.Namespaces {
			target[ns] = true
		}
	}
	return own, claimed, nil
}
