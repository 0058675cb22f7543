package ipam_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/metalfabric/fabric/controlplane/ipam"
)

func addrs(ss ...string) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool)
	for _, s := range ss {
		m[netip.MustParseAddr(s)] = true
	}
	return m
}

func TestNextHost(t *testing.T) {
	tests := []struct {
		prefix string
		used   []string
		want   string // "" = exhausted
	}{
		{"10.0.0.0/24", nil, "10.0.0.1"},
		{"10.0.0.0/24", []string{"10.0.0.1", "10.0.0.3"}, "10.0.0.2"},
		{"10.0.0.0/30", []string{"10.0.0.1"}, "10.0.0.2"},
		{"10.0.0.0/30", []string{"10.0.0.1", "10.0.0.2"}, ""}, // .3 is broadcast
		{"10.0.0.0/31", nil, "10.0.0.1"},
		{"10.0.0.0/31", []string{"10.0.0.1"}, ""},
		{"10.0.0.0/32", nil, ""},
		{"255.255.255.252/30", []string{"255.255.255.253"}, "255.255.255.254"},
		{"255.255.255.252/30", []string{"255.255.255.253", "255.255.255.254"}, ""},
		{"2001:db8::/64", nil, "2001:db8::1"},
		{"2001:db8::/126", []string{"2001:db8::1", "2001:db8::2"}, "2001:db8::3"}, // no broadcast in v6
		{"2001:db8::/127", nil, "2001:db8::1"},
		{"2001:db8::/128", nil, ""},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126", []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"}, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tc := range tests {
		got, err := ipam.NextHost(netip.MustParsePrefix(tc.prefix), addrs(tc.used...))
		if tc.want == "" {
			if !errors.Is(err, ipam.ErrExhausted) {
				t.Errorf("NextHost(%s, %v) = %v, %v; want ErrExhausted", tc.prefix, tc.used, got, err)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("NextHost(%s, %v) = %v, %v; want %s", tc.prefix, tc.used, got, err, tc.want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "10.0.0.0/24", want: "10.0.0.0/24"},
		{in: "2001:db8::/64", want: "2001:db8::/64"},
		{in: "10.0.0.0/31", want: "10.0.0.0/31"},
		{in: "10.0.0.5/24", wantErr: "did you mean 10.0.0.0/24?"},
		{in: "2001:db8::1/64", wantErr: "did you mean 2001:db8::/64?"},
		{in: "10.0.0.0", wantErr: "malformed prefix"},
		{in: "10.0.0.0/33", wantErr: "malformed prefix"},
		{in: "banana", wantErr: "malformed prefix"},
		{in: "", wantErr: "malformed prefix"},
		{in: "10.0.0.0/32", wantErr: "no host addresses"},
		{in: "2001:db8::/128", wantErr: "no host addresses"},
		{in: "::ffff:10.0.0.0/120", wantErr: "IPv4-mapped"},
	}
	for _, tc := range tests {
		got, err := ipam.ParsePrefix(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestVNIRange(t *testing.T) {
	tests := []struct {
		in   string
		want ipam.VNIRange
		ok   bool
	}{
		{"10000-19999", ipam.VNIRange{First: 10000, Last: 19999}, true},
		{" 1-1 ", ipam.VNIRange{First: 1, Last: 1}, true},
		{"1-252", ipam.VNIRange{First: 1, Last: 252}, true},
		{"256-16777215", ipam.VNIRange{First: 256, Last: 16777215}, true},
		{"0-10", ipam.VNIRange{}, false},
		{"1-300", ipam.VNIRange{}, false},
		{"20-10", ipam.VNIRange{}, false},
		{"1-16777216", ipam.VNIRange{}, false},
		{"10000", ipam.VNIRange{}, false},
		{"a-b", ipam.VNIRange{}, false},
	}
	for _, tc := range tests {
		got, err := ipam.ParseVNIRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseVNIRange(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNextVNI(t *testing.T) {
	r := ipam.VNIRange{First: 10, Last: 12}
	got, err := ipam.NextVNI(r, map[uint32]bool{10: true, 12: true, 5: true})
	if err != nil || got != 11 {
		t.Errorf("NextVNI = %d, %v; want 11", got, err)
	}
	if _, err := ipam.NextVNI(r, map[uint32]bool{10: true, 11: true, 12: true}); !errors.Is(err, ipam.ErrExhausted) {
		t.Errorf("NextVNI of a full range: err = %v, want ErrExhausted", err)
	}
	top := ipam.VNIRange{First: ipam.MaxVNI, Last: ipam.MaxVNI}
	if got, err := ipam.NextVNI(top, nil); err != nil || got != ipam.MaxVNI {
		t.Errorf("NextVNI(top) = %d, %v", got, err)
	}
}

func TestCapacityMatchesNextHost(t *testing.T) {
	for _, s := range []string{"10.0.0.0/24", "10.0.0.0/29", "10.0.0.0/30", "10.0.0.0/31", "10.0.0.0/32", "2001:db8::/125", "2001:db8::/128"} {
		p := netip.MustParsePrefix(s)
		used := map[netip.Addr]bool{}
		var n uint64
		for {
			a, err := ipam.NextHost(p, used)
			if err != nil {
				break
			}
			used[a] = true
			n++
		}
		if got := ipam.Capacity(p); got != n {
			t.Errorf("ipam.Capacity(%s) = %d, NextHost hands out %d", s, got, n)
		}
	}
	if got := ipam.Capacity(netip.MustParsePrefix("2001:db8::/48")); got != ^uint64(0) {
		t.Errorf("ipam.Capacity(/48) = %d, want saturated", got)
	}
}

func TestASNPool(t *testing.T) {
	r, err := ipam.ParseASNRange("4210000001-4210000003")
	if err != nil {
		t.Fatal(err)
	}
	used := map[uint32]bool{}
	var got []uint32
	for {
		a, err := ipam.NextASN(r, used)
		if errors.Is(err, ipam.ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		used[a] = true
		got = append(got, a)
	}
	if want := []uint32{4210000001, 4210000002, 4210000003}; !slices.Equal(got, want) {
		t.Errorf("allocated %v, want %v", got, want)
	}
	for _, bad := range []string{"0-10", "10-5", "20000-30000", "4294967000-4294967295", "x-1", "1"} {
		if _, err := ipam.ParseASNRange(bad); err == nil {
			t.Errorf("ipam.ParseASNRange(%q): want error", bad)
		}
	}
}

func TestNextChild(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name   string
		parent string
		bits   int
		taken  []netip.Prefix
		want   string // "" for an error
		full   bool   // the error is ErrExhausted
	}{
		{"empty parent", "10.0.0.0/24", 28, nil, "10.0.0.0/28", false},
		{"after a child", "10.0.0.0/24", 28, pfx("10.0.0.0/28"), "10.0.0.16/28", false},
		{"gap between children", "10.0.0.0/24", 28, pfx("10.0.0.32/28", "10.0.0.0/28"), "10.0.0.16/28", false},
		{"allocated address", "10.0.0.0/24", 28, pfx("10.0.0.1/32"), "10.0.0.16/28", false},
		{"address in a later block", "10.0.0.0/24", 28, pfx("10.0.0.0/28", "10.0.0.17/32", "10.0.0.40/32"), "10.0.0.48/28", false},
		{"smaller child between", "10.0.0.0/24", 30, pfx("10.0.0.0/28", "10.0.0.17/32"), "10.0.0.20/30", false},
		{"larger child skips small ones", "10.0.0.0/24", 26, pfx("10.0.0.4/30"), "10.0.0.64/26", false},
		{"last block", "10.0.0.0/30", 31, pfx("10.0.0.1/32"), "10.0.0.2/31", false},
		{"full", "10.0.0.0/29", 30, pfx("10.0.0.0/30", "10.0.0.5/32"), "", true},
		{"end of the address space", "255.255.255.0/24", 25, pfx("255.255.255.0/25", "255.255.255.200/32"), "", true},
		{"ipv6", "2001:db8::/48", 64, pfx("2001:db8::/64", "2001:db8:0:1::1/128"), "2001:db8:0:2::/64", false},
		{"outside taken ignored", "10.0.0.0/24", 28, pfx("10.0.1.0/28"), "10.0.0.0/28", false},
		{"not longer than parent", "10.0.0.0/24", 24, nil, "", false},
		{"longer than an address", "10.0.0.0/24", 33, nil, "", false},
		{"no host addresses", "10.0.0.0/24", 32, nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ipam.NextChild(netip.MustParsePrefix(tc.parent), tc.bits, tc.taken)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error", got)
				}
				if errors.Is(err, ipam.ErrExhausted) != tc.full {
					t.Errorf("err = %v, exhausted = %v, want %v", err, !tc.full, tc.full)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != netip.MustParsePrefix(tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNextHostFunc(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/24")
	skip := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30"), netip.MustParsePrefix("10.0.0.8/29")}
	used := addrs("10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7")
	f := func(a netip.Addr) (bool, error) { return used[a], nil }
	got, err := ipam.NextHostFunc(p, netip.Addr{}, skip, f)
	if err != nil || got != netip.MustParseAddr("10.0.0.16") {
		t.Errorf("got %s, %v, want 10.0.0.16", got, err)
	}
	got, err = ipam.NextHostFunc(p, netip.MustParseAddr("10.0.0.20"), skip, f)
	if err != nil || got != netip.MustParseAddr("10.0.0.20") {
		t.Errorf("from .20: got %s, %v, want 10.0.0.20", got, err)
	}
	if _, err := ipam.NextHostFunc(p, netip.Addr{}, []netip.Prefix{p}, f); !errors.Is(err, ipam.ErrExhausted) {
		t.Errorf("all skipped: err = %v, want ErrExhausted", err)
	}
	if got, err := ipam.NextHostFunc(p, netip.MustParseAddr("10.0.0.255"), nil, f); !errors.Is(err, ipam.ErrExhausted) {
		t.Errorf("from the broadcast address: got %s, %v, want ErrExhausted", got, err)
	}
	if got := ipam.LastAddr(netip.MustParsePrefix("2001:db8::/64")); got != netip.MustParseAddr("2001:db8::ffff:ffff:ffff:ffff") {
		t.Errorf("LastAddr = %s", got)
	}
}
