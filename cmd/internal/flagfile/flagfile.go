// Package flagfile loads a daemon's YAML config file into its flag set: every
// top-level key is a flag name and its scalar value the flag's value, so the
// file and the command line share one set of names, defaults and checks.
// Flags given on the command line win over the file. Unknown keys and
// non-scalar values are errors. It owns only that mapping; flags and YAML
// stay in cmd/.
package flagfile

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads path and sets the flags of fs it names that were not set on the
// command line. fs must already be parsed. A file of only comments is an
// empty config.
func Load(fs *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	return apply(fs, f, path)
}

func apply(fs *flag.FlagSet, r io.Reader, name string) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: line %d: want a mapping of settings", name, root.Line)
	}
	onCLI := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCLI[f.Name] = true })
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if key == "config" || fs.Lookup(key) == nil {
			return fmt.Errorf("config %s: line %d: unknown setting %q (known: %s)", name, k.Line, key, known(fs))
		}
		if seen[key] {
			return fmt.Errorf("config %s: line %d: %q is set twice", name, k.Line, key)
		}
		seen[key] = true
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("config %s: line %d: %q wants a single value", name, v.Line, key)
		}
		if v.Tag == "!!null" || onCLI[key] {
			continue
		}
		if err := fs.Set(key, v.Value); err != nil {
			return fmt.Errorf("config %s: line %d: %s: %w", name, v.Line, key, err)
		}
	}
	return nil
}

func known(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return strings.Join(names, ", ")
}
