package nft

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCounterNames(t *testing.T) {
	good := map[string]CounterName{
		"forward/dropped":           {Chain: ChainForward, Kind: KindDropped},
		"input/rule/12":             {Chain: ChainInput, Kind: KindRule, Rule: 12},
		"input/accepted":            {Chain: ChainInput, Kind: KindAccepted},
		"a/egress/accepted":         {Tenant: "a", Chain: ChainEgress, Kind: KindAccepted},
		"input/egress/rule/0":       {Tenant: "input", Chain: ChainEgress, Kind: KindRule},
		"t-1.x/ingress/ratelimited": {Tenant: "t-1.x", Chain: ChainIngress, Kind: KindRateLimited},
		"forward/nat/translated":    {Tenant: "forward", Chain: ChainNAT, Kind: KindTranslated},
	}
	for s, want := range good {
		got, err := ParseCounterName(s)
		if err != nil {
			t.Errorf("ParseCounterName(%q): %v", s, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseCounterName(%q) (-want +got):\n%s", s, diff)
		}
		if got.String() != s {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), s)
		}
	}
	for _, s := range []string{"", "forward", "forward/accepted", "a/egress", "a/egress/rule", "a/egress/rule/01",
		"a/egress/rule/-1", "a/nat/dropped", "a/input/dropped", "a b/egress/dropped", "a/egress/dropped/x", "/egress/dropped"} {
		if c, err := ParseCounterName(s); err == nil {
			t.Errorf("ParseCounterName(%q) = %+v, want an error", s, c)
		}
	}
}

// FuzzCounterName: whatever parses prints back to the same name, and
// parses again to the same value.
func FuzzCounterName(f *testing.F) {
	for _, s := range []string{"forward/dropped", "input/rule/3", "a/egress/rule/7", "b/nat/translated", "x/ingress/ratelimited"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCounterName(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("ParseCounterName(%q).String() = %q", s, c.String())
		}
		again, err := ParseCounterName(c.String())
		if err != nil || again != c {
			t.Fatalf("re-parse of %q: %+v, %v; want %+v", s, again, err, c)
		}
	})
}
