package fabric

import (
	"slices"
	"strings"
)

// Diff returns the kernel changes that turn actual into desired, in a safe
// order:
//
//  1. release the ports of, and delete, marked VRFs whose table must change
//     (the kernel cannot change a VRF's table; the VRF is re-created);
//  2. create missing VRFs (marked);
//  3. set desired VRFs up;
//  4. enslave desired ports (a port moving between VRFs is moved directly,
//     without a release in between);
//  5. release ports whose master is a marked VRF and that are no longer
//     desired in any VRF;
//  6. delete marked VRFs that are no longer desired.
//
// So VRFs are added before anything is deleted and ports are detached before
// their VRF is deleted. Within a phase changes are sorted by link name.
//
// Diff is pure. It expects a desired state that passed [Validate]; on one
// that did not, it still never emits a change to a foreign link other than a
// desired port: a desired VRF whose name is taken by a foreign link and a
// port that does not exist are left out.
func Diff(desired Desired, actual Actual) []Change {
	links := actual.byName()
	d := desired.sorted()

	var replace, add, up, enslave, release, del []Change
	wanted := map[string]bool{}   // desired VRF names
	wantedIn := map[string]bool{} // ports desired in some VRF
	replaced := map[string]bool{} // VRFs re-created because the table changed

	for _, v := range d.VRFs {
		wanted[v.Name] = true
		l, exists := links[v.Name]
		switch {
		case !exists:
			add = append(add, Change{Op: OpAddVRF, Link: v.Name, Table: v.Table})
			up = append(up, Change{Op: OpSetUp, Link: v.Name})
		case !l.Owned():
			continue // a foreign link: never touch it (Validate reports it)
		case l.VRFTable != v.Table:
			replaced[v.Name] = true
			for _, p := range slavesOf(actual, v.Name) {
				replace = append(replace, Change{Op: OpSetNoMaster, Link: p, Master: v.Name})
			}
			replace = append(replace, Change{Op: OpDeleteVRF, Link: v.Name})
			add = append(add, Change{Op: OpAddVRF, Link: v.Name, Table: v.Table})
			up = append(up, Change{Op: OpSetUp, Link: v.Name})
		case !l.AdminUp:
			up = append(up, Change{Op: OpSetUp, Link: v.Name})
		}
		for _, p := range slices.Compact(v.Ports) {
			pl, ok := links[p]
			if !ok {
				continue
			}
			wantedIn[p] = true
			if pl.Master != v.Name || replaced[v.Name] {
				enslave = append(enslave, Change{Op: OpSetMaster, Link: p, Master: v.Name})
			}
		}
	}

	for _, l := range sortedLinks(actual) {
		if l.Master == "" || wantedIn[l.Name] || replaced[l.Master] {
			continue
		}
		if m, ok := links[l.Master]; ok && m.Owned() {
			release = append(release, Change{Op: OpSetNoMaster, Link: l.Name, Master: l.Master})
		}
	}
	for _, l := range sortedLinks(actual) {
		if l.Owned() && !wanted[l.Name] {
			del = append(del, Change{Op: OpDeleteVRF, Link: l.Name})
		}
	}

	slices.SortStableFunc(enslave, byLink)
	slices.SortStableFunc(up, byLink)
	var out []Change
	for _, phase := range [][]Change{replace, add, up, enslave, release, del} {
		out = append(out, phase...)
	}
	return out
}

func byLink(x, y Change) int { return strings.Compare(x.Link, y.Link) }

// slavesOf returns the names of the links enslaved to master, sorted.
func slavesOf(a Actual, master string) []string {
	var names []string
	for _, l := range a.Links {
		if l.Master == master {
			names = append(names, l.Name)
		}
	}
	slices.Sort(names)
	return names
}

func sortedLinks(a Actual) []Link {
	links := slices.Clone(a.Links)
	slices.SortFunc(links, func(x, y Link) int { return strings.Compare(x.Name, y.Name) })
	return links
}
