package fib

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func r4(table uint32, prefix string, hops ...NextHop) Route {
	return Route{Table: table, Prefix: netip.MustParsePrefix(prefix), NextHops: hops}
}

func nh(a, dev string) NextHop { return NextHop{Addr: netip.MustParseAddr(a), Interface: dev} }

func installedOf(rs ...Route) map[routeKey]Route {
	m := map[routeKey]Route{}
	for _, r := range rs {
		n := r.normalize(nil)
		m[n.key()] = n
	}
	return m
}

func TestNormalize(t *testing.T) {
	got := Route{Prefix: netip.MustParsePrefix("10.0.0.7/24"), NextHops: []NextHop{
		nh("fe80::2%swp2", "swp2"), nh("::ffff:10.0.0.1", "swp1"), nh("fe80::2", "swp2"), {Interface: "swp3"},
	}}.normalize(nil)
	want := Route{Table: TableMain, Prefix: netip.MustParsePrefix("10.0.0.0/24"), NextHops: []NextHop{
		{Interface: "swp3"}, nh("10.0.0.1", "swp1"), nh("fe80::2", "swp2"),
	}}
	if diff := cmp.Diff(want, got, netipCmp); diff != "" {
		t.Errorf("normalize (-want +got):\n%s", diff)
	}
	in := newHopInterner()
	a, b := r4(1, "10.0.0.1/32", nh("10.9.0.1", "x")).normalize(in), r4(1, "10.0.0.2/32", nh("10.9.0.1", "x")).normalize(in)
	if &a.NextHops[0] != &b.NextHops[0] {
		t.Errorf("single next hops are not shared")
	}
}

func TestDiffRoutes(t *testing.T) {
	a := r4(10, "10.0.0.1/32", nh("10.255.0.1", "swp1"))
	b := r4(10, "10.0.0.2/32", nh("10.255.0.1", "swp1"))
	b2 := r4(10, "10.0.0.2/32", nh("10.255.0.1", "swp1"), nh("10.255.0.3", "swp2"))
	c := r4(11, "10.0.0.3/32", nh("fe80::1", "swp1"))
	d := r4(0, "10.0.0.4/32", nh("10.255.0.1", "swp1"))
	d2 := r4(254, "10.0.0.4/32", nh("10.255.0.3", "swp2"))
	e := r4(10, "10.0.0.5/32", nh("10.255.0.1", "swp1"))
	bad := r4(10, "2001:db8::/64", nh("10.255.0.1", "swp1"))
	// b2 lists its next hops in another order than the kernel would: equal.
	b2swapped := r4(10, "10.0.0.2/32", nh("10.255.0.3", "swp2"), nh("10.255.0.1", "swp1"))

	p := diffRoutes([]Route{a, b2, d, bad, d2}, installedOf(a, b, c, e), nil)
	want := routePlan{
		set:       []Route{b2.normalize(nil), d2.normalize(nil)},
		del:       []Route{e.normalize(nil), c.normalize(nil)},
		unchanged: 1,
	}
	if diff := cmp.Diff(want, p, cmp.AllowUnexported(routePlan{}), netipCmp, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".invalid" }, cmp.Ignore())); diff != "" {
		t.Errorf("diffRoutes (-want +got):\n%s", diff)
	}
	if len(p.invalid) != 1 || !errors.Is(p.invalid[0].Err, ErrInvalid) || p.invalid[0].Err.Error() != "installing 2001:db8::/64 in table 10: invalid route: IPv6 prefix with IPv4 next hop 10.255.0.1" {
		t.Errorf("invalid = %+v", p.invalid)
	}
	// Idempotent: the installed state against itself is empty.
	p = diffRoutes([]Route{a, b2swapped, c}, installedOf(a, b2, c), nil)
	if len(p.set)+len(p.del) != 0 || p.unchanged != 3 {
		t.Errorf("no-op diff: %+v", p)
	}
}

func TestDiffBatch(t *testing.T) {
	a := r4(10, "10.0.0.1/32", nh("10.255.0.1", "swp1"))
	a2 := r4(10, "10.0.0.1/32", nh("10.255.0.2", "swp1"))
	b := r4(10, "10.0.0.2/32", nh("10.255.0.1", "swp1"))
	c := r4(10, "10.0.0.3/32", nh("10.255.0.1", "swp1"))
	installed := installedOf(a, b)
	for _, tc := range []struct {
		name     string
		set, del []Route
		want     routePlan
	}{
		{"add and delete", []Route{c}, []Route{{Table: 10, Prefix: b.Prefix}}, routePlan{set: []Route{c.normalize(nil)}, del: []Route{b.normalize(nil)}}},
		{"unchanged", []Route{a}, nil, routePlan{unchanged: 1}},
		{"replace, last wins", []Route{a2, a}, nil, routePlan{unchanged: 1}},
		{"set wins over delete", []Route{a2}, []Route{a}, routePlan{set: []Route{a2.normalize(nil)}}},
		{"delete unknown and twice", nil, []Route{c, b, b}, routePlan{del: []Route{b.normalize(nil)}}},
	} {
		got := diffBatch(tc.set, tc.del, installed, nil)
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(routePlan{}), netipCmp, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".set" || p.Last().String() == ".del" }, cmp.Comparer(func(x, y []Route) bool {
			if len(x) != len(y) {
				return false
			}
			for i := range x {
				if !x[i].equal(y[i]) {
					return false
				}
			}
			return true
		}))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestRouteString(t *testing.T) {
	for _, tc := range []struct {
		r    Route
		want string
	}{
		{r4(0, "10.255.0.2/32", nh("fe80::1", "swp31")), "10.255.0.2/32 via inet6 fe80::1 dev swp31 table 254"},
		{r4(10000, "10.0.0.5/32", NextHop{Addr: netip.MustParseAddr("10.255.0.2"), Interface: "vlan1000", OnLink: true}), "10.0.0.5/32 via 10.255.0.2 dev vlan1000 onlink table 10000"},
		{r4(10, "10.1.0.0/16", nh("10.0.0.1", "a"), nh("10.0.0.2", "b")), "10.1.0.0/16 multipath via 10.0.0.1 dev a via 10.0.0.2 dev b table 10"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, r := range []Route{
		{Table: 1},
		r4(1, "10.0.0.0/8"),
		r4(1, "10.0.0.0/8", NextHop{}),
		r4(1, "10.0.0.0/8", NextHop{Addr: netip.MustParseAddr("10.1.1.1"), OnLink: true}),
		r4(1, "2001:db8::/32", nh("10.1.1.1", "x")),
	} {
		if err := r.validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("validate(%v) = %v, want ErrInvalid", r, err)
		}
	}
	for _, r := range []Remote{
		{},
		{VTEP: netip.MustParseAddr("10.0.0.1"), RouterMAC: make([]byte, 6), SVI: "a", VXLAN: "b"},
		{VTEP: netip.MustParseAddr("10.0.0.1"), RouterMAC: []byte{2, 0, 0, 0, 0, 1}, SVI: "a"},
	} {
		if err := r.validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("validate(%v) = %v, want ErrInvalid", r, err)
		}
	}
}
