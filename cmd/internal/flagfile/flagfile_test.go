package flagfile

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newFS() (*flag.FlagSet, *string, *time.Duration) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	listen := fs.String("listen", ":50051", "")
	alive := fs.Duration("liveness-alive", 5*time.Minute, "")
	fs.String("config", "", "")
	return fs, listen, alive
}

func TestApply(t *testing.T) {
	fs, listen, alive := newFS()
	if err := fs.Parse([]string{"--listen", ":9000"}); err != nil {
		t.Fatal(err)
	}
	err := apply(fs, strings.NewReader("# comment\nlisten: \":1\"\nliveness-alive: 2m\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{*listen, alive.String()}
	if diff := cmp.Diff([]string{":9000", "2m0s"}, got); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"lisen: :1\n", `line 1: unknown setting "lisen" (known: listen, liveness-alive)`},
		{"config: x\n", `unknown setting "config"`},
		{"liveness-alive: soon\n", `line 1: liveness-alive: parse error`},
		{"listen: [a, b]\n", `"listen" wants a single value`},
		{"listen: a\nlisten: b\n", `"listen" is set twice`},
		{"- a\n", "want a mapping"},
		{"listen: \"unterminated\n", "c.yaml"},
	} {
		fs, _, _ := newFS()
		fs.SetOutput(new(strings.Builder))
		_ = fs.Parse(nil)
		err := apply(fs, strings.NewReader(tc.doc), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("apply(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestApplyEmpty(t *testing.T) {
	fs, listen, _ := newFS()
	_ = fs.Parse(nil)
	for _, doc := range []string{"", "# only comments\n# listen: \":1\"\n", "listen:\n"} {
		if err := apply(fs, strings.NewReader(doc), "c.yaml"); err != nil {
			t.Errorf("apply(%q) = %v, want nil", doc, err)
		}
	}
	if *listen != ":50051" {
		t.Errorf("listen = %q, want the default", *listen)
	}
}
