package fabric

import "fmt"

// Op is the kind of one kernel change.
type Op int

// The operations, in the order Diff emits their phases (a VRF being
// re-created because its table changed is released and deleted first).
const (
	// OpAddVRF creates VRF Link with Table, marked with Marker.
	OpAddVRF Op = iota + 1
	// OpSetUp sets Link administratively up.
	OpSetUp
	// OpSetMaster enslaves Link to Master.
	OpSetMaster
	// OpSetNoMaster releases Link from its master (Master names it).
	OpSetNoMaster
	// OpDeleteVRF deletes VRF Link.
	OpDeleteVRF
)

// Change is one kernel change. String gives one line per change, e.g.
//
//	add vrf vrf10010 table 10010
//	set vrf10010 up
//	set swp1 master vrf10010
//	set swp1 nomaster
//	delete vrf vrf10010
type Change struct {
	Op Op
	// Link is the link changed: the VRF for OpAddVRF, OpSetUp (today) and
	// OpDeleteVRF, the port for OpSetMaster and OpSetNoMaster.
	Link string
	// Table is the routing table of OpAddVRF.
	Table uint32
	// Master is the new master for OpSetMaster and the master being left
	// for OpSetNoMaster.
	Master string
}

// String is the one-line form of the change (see [Change]).
func (c Change) String() string {
	switch c.Op {
	case OpAddVRF:
		return fmt.Sprintf("add vrf %s table %d", c.Link, c.Table)
	case OpSetUp:
		return fmt.Sprintf("set %s up", c.Link)
	case OpSetMaster:
		return fmt.Sprintf("set %s master %s", c.Link, c.Master)
	case OpSetNoMaster:
		return fmt.Sprintf("set %s nomaster", c.Link)
	case OpDeleteVRF:
		return fmt.Sprintf("delete vrf %s", c.Link)
	default:
		return fmt.Sprintf("unknown change %d on %s", int(c.Op), c.Link)
	}
}

// action names the step in an error: "enslaving swp1 to vrf10010".
func (c Change) action() string {
	switch c.Op {
	case OpAddVRF:
		return fmt.Sprintf("adding vrf %s with table %d", c.Link, c.Table)
	case OpSetUp:
		return fmt.Sprintf("setting %s up", c.Link)
	case OpSetMaster:
		return fmt.Sprintf("enslaving %s to %s", c.Link, c.Master)
	case OpSetNoMaster:
		if c.Master == "" {
			return fmt.Sprintf("releasing %s", c.Link)
		}
		return fmt.Sprintf("releasing %s from %s", c.Link, c.Master)
	case OpDeleteVRF:
		return fmt.Sprintf("deleting vrf %s", c.Link)
	default:
		return c.String()
	}
}
