package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

// The last-known-good cache: every snapshot applied without errors is
// written to disk (atomically: temp file, fsync, rename, fsync of the dir),
// so an agent that starts while the controller is unreachable can apply it
// and keep repairing drift towards it.

// WithStateDir keeps the last-known-good config in dir ("" : none), in a
// file named after the device, so agents sharing a filesystem (the lab)
// never overwrite each other's.
func WithStateDir(dir string) Option {
	return func(a *Agent) {
		if dir != "" {
			a.cachePath = filepath.Join(dir, "last-applied-"+a.cfg.Hostname+".pb")
		}
	}
}

// saveCache writes cfg as the last-known-good config.
func (a *Agent) saveCache(cfg *apiv1.DeviceConfig) error {
	if a.cachePath == "" {
		return nil
	}
	b, err := proto.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding the cache: %w", err)
	}
	dir := filepath.Dir(a.cachePath)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating the cache dir: %w", err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(a.cachePath)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.cachePath)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the cache: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// loadCache reads the last-known-good config; nil without one.
func (a *Agent) loadCache() (*apiv1.DeviceConfig, error) {
	if a.cachePath == "" {
		return nil, nil
	}
	b, err := os.ReadFile(a.cachePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cache: %w", err)
	}
	cfg := &apiv1.DeviceConfig{}
	if err := proto.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("decoding the cache %s: %w", a.cachePath, err)
	}
	if cfg.GetHostname() != a.cfg.Hostname {
		return nil, fmt.Errorf("the cache %s is for %q, not %q", a.cachePath, cfg.GetHostname(), a.cfg.Hostname)
	}
	return cfg, nil
}
