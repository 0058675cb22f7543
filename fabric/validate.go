package fabric

import (
	"fmt"
	"strings"
)

// ValidationError says why a desired state was rejected. Nothing was changed.
type ValidationError struct {
	// Problems lists every problem found, one sentence each.
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid desired config: " + strings.Join(e.Problems, "; ")
}

// Reserved kernel routing tables a VRF must not use (unspec, default, main,
// local).
var reservedTables = map[uint32]string{0: "unspec", 253: "default", 254: "main", 255: "local"}

// Validate checks desired on its own and against the kernel state actual. It
// returns a *ValidationError listing every problem, or nil:
//
//   - VRF names must be valid device names, unique; tables unique and not
//     reserved (0, 253, 254, 255);
//   - a port must exist, must not be a VRF, a loopback or a desired VRF's
//     name, and may appear in only one VRF, once;
//   - a desired VRF's name must not be taken by a foreign link (an unmarked
//     VRF or any other device), and its table must not be used by an
//     unmarked VRF.
func Validate(desired Desired, actual Actual) error {
	var problems []string
	addf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	links := actual.byName()
	vrfNames := map[string]bool{}
	seen := map[string]bool{}
	tables := map[uint32]string{}
	portIn := map[string]string{}
	foreignTables := map[uint32]string{}
	for _, l := range actual.Links {
		if l.Kind == KindVRF && !l.Owned() {
			foreignTables[l.VRFTable] = l.Name
		}
	}
	for _, v := range desired.VRFs {
		if v.Name != "" {
			vrfNames[v.Name] = true
		}
	}

	for i, v := range desired.VRFs {
		if err := checkLinkName(v.Name); err != nil {
			addf("vrf #%d: %v", i, err)
			continue
		}
		if seen[v.Name] {
			addf("vrf %s is listed more than once", v.Name)
			continue
		}
		seen[v.Name] = true
		if what, ok := reservedTables[v.Table]; ok {
			addf("vrf %s: table %d is reserved (%s)", v.Name, v.Table, what)
		} else if other, dup := tables[v.Table]; dup {
			addf("table %d is used by vrf %s and vrf %s", v.Table, other, v.Name)
		} else {
			tables[v.Table] = v.Name
		}
		if l, ok := links[v.Name]; ok && !l.Owned() {
			if l.Kind == KindVRF {
				addf("vrf %s: the name is taken by an unmarked vrf (alias %q), which is never changed", v.Name, l.Alias)
			} else {
				addf("vrf %s: the name is taken by an existing %s device", v.Name, l.Kind)
			}
		}
		if other, ok := foreignTables[v.Table]; ok && other != v.Name {
			addf("vrf %s: table %d is used by unmarked vrf %s", v.Name, v.Table, other)
		}
		for _, p := range v.Ports {
			if p == "" {
				addf("vrf %s: empty port name", v.Name)
				continue
			}
			if other, dup := portIn[p]; dup {
				if other == v.Name {
					addf("port %s is listed twice in vrf %s", p, v.Name)
				} else {
					addf("port %s is in vrf %s and vrf %s", p, other, v.Name)
				}
				continue
			}
			portIn[p] = v.Name
			if vrfNames[p] {
				addf("port %s of vrf %s is a desired vrf", p, v.Name)
				continue
			}
			l, ok := links[p]
			switch {
			case !ok:
				addf("port %s of vrf %s does not exist", p, v.Name)
			case l.Kind == KindVRF:
				addf("port %s of vrf %s is a vrf", p, v.Name)
			case l.Loopback || p == "lo":
				addf("port %s of vrf %s is a loopback", p, v.Name)
			}
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// checkLinkName checks a kernel device name (IFNAMSIZ, no '/', ':' or
// whitespace, not "." or "..").
func checkLinkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > 15:
		return fmt.Errorf("name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is not a valid device name", name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("name %q contains '/', ':' or whitespace", name)
	}
	return nil
}
