package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/systemd"
)

// pkgSpec is what one .deb must hold.
type pkgSpec struct {
	name      string
	binary    string
	config    string // file name in packaging/config and /etc/fabric
	unit      string
	files     []string // regular files, as dpkg-deb -c lists them
	conffiles []string
	depends   string
}

var specs = []pkgSpec{
	{
		name: "fabric-agent", binary: "fabric-agent", config: "agent.yaml", unit: systemd.AgentUnit,
		files: []string{
			"./etc/fabric/agent.yaml",
			"./usr/bin/fabric-agent",
			"./usr/lib/modules-load.d/fabric-agent.conf",
			"./usr/lib/systemd/system/fabric-agent.service",
		},
		conffiles: []string{"/etc/fabric/agent.yaml"},
	},
	{
		name: "fabric-controller", binary: "fabric-controller", config: "controller.yaml", unit: systemd.ControllerUnit,
		files: []string{
			"./etc/fabric/controller.yaml",
			"./usr/bin/fabric-controller",
			"./usr/lib/systemd/system/fabric-controller.service",
		},
		conffiles: []string{"/etc/fabric/controller.yaml"},
		depends:   "adduser",
	},
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func need(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed (Debian package dpkg): cannot check the .deb packages", c)
		}
	}
}

// buildPackages runs scripts/deb.sh into a temp dir and returns the
// package files by name. It uses (or builds) the binaries in bin/ and nfpm
// in bin/tools, like make deb.
func buildPackages(t *testing.T) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not building the .deb packages")
	}
	need(t, "dpkg", "dpkg-deb")
	dist := t.TempDir()
	cmd := exec.Command("./scripts/deb.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION=1.2.3+test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/deb.sh: %v\n%s", err, out)
	} else {
		t.Logf("scripts/deb.sh:\n%s", out)
	}
	debs := map[string]string{}
	for _, s := range specs {
		debs[s.name] = filepath.Join(dist, s.name+"_1.2.3+test_"+goarch(t)+".deb")
		if _, err := os.Stat(debs[s.name]); err != nil {
			t.Fatalf("package of %s: %v", s.name, err)
		}
	}
	return debs
}

func goarch(t *testing.T) string {
	return strings.TrimSpace(run(t, "go", "env", "GOARCH"))
}

// TestDebPackages builds both packages and checks their control fields,
// conffiles, file lists, and their content once unpacked with dpkg -x into
// a throwaway root: the units and configs are the repository's, the units
// pass systemd-analyze verify against the packaged binaries, and every key
// of the default config is a flag of the packaged binary with that default.
func TestDebPackages(t *testing.T) {
	debs := buildPackages(t)
	for _, s := range specs {
		t.Run(s.name, func(t *testing.T) {
			deb := debs[s.name]
			fields := run(t, "dpkg-deb", "--showformat=${Package}|${Version}|${Architecture}|${Depends}", "--show", deb)
			if diff := cmp.Diff(s.name+"|1.2.3+test|"+goarch(t)+"|"+s.depends, fields); diff != "" {
				t.Errorf("control fields (-want +got):\n%s", diff)
			}
			conffiles := strings.Fields(run(t, "dpkg-deb", "-I", deb, "conffiles"))
			if diff := cmp.Diff(s.conffiles, conffiles); diff != "" {
				t.Errorf("conffiles (-want +got):\n%s", diff)
			}
			info := run(t, "dpkg-deb", "-I", deb)
			for _, script := range []string{"postinst", "prerm", "postrm"} {
				if !regexp.MustCompile(`\*\s+` + script + `\s`).MatchString(info) {
					t.Errorf("no executable %s in the control archive:\n%s", script, info)
				}
			}
			var files []string
			for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
				if f := strings.Fields(line); len(f) >= 6 && strings.HasPrefix(f[0], "-") {
					if f[1] != "root/root" {
						t.Errorf("%s owned by %s, want root/root", f[5], f[1])
					}
					files = append(files, f[5])
				}
			}
			slices.Sort(files)
			if diff := cmp.Diff(s.files, files); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}

			root := t.TempDir()
			run(t, "dpkg", "-x", deb, root)
			unit, err := systemd.Unit(s.unit)
			if err != nil {
				t.Fatal(err)
			}
			sameFile(t, filepath.Join(root, "usr/lib/systemd/system", s.unit), unit)
			config, err := os.ReadFile(filepath.Join("config", s.config))
			if err != nil {
				t.Fatal(err)
			}
			sameFile(t, filepath.Join(root, "etc/fabric", s.config), config)
			bin := filepath.Join(root, "usr/bin", s.binary)
			if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("packaged binary %s: %v, %v; want mode 0755", bin, fi, err)
			}
			verifyUnit(t, root, s, unit)
			checkConfigKeys(t, bin, string(config))

			ctl := t.TempDir()
			run(t, "dpkg-deb", "-e", deb, ctl)
			for _, script := range []string{"postinst", "prerm", "postrm"} {
				run(t, "sh", "-n", filepath.Join(ctl, script))
			}
		})
	}
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("unpacked package: %v", err)
		return
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the repository's (-want +got):\n%s", path, diff)
	}
}

// verifyUnit runs systemd-analyze verify on the unpacked unit, with
// ExecStart pointing at the unpacked binary (verify needs it to exist).
func verifyUnit(t *testing.T, root string, s pkgSpec, unit []byte) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: not verifying the packaged unit")
		return
	}
	from := "ExecStart=/usr/bin/"
	unit = bytes.Replace(unit, []byte(from), []byte("ExecStart="+filepath.Join(root, "usr/bin")+"/"), 1)
	path := filepath.Join(t.TempDir(), s.unit)
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", s.unit, err, out)
	}
}

var (
	configKey   = regexp.MustCompile(`(?m)^#([a-z][a-z0-9-]*): ?(.*)$`)
	flagHelp    = regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)(?: \w+)?\n\s+(.*)$`)
	flagDefault = regexp.MustCompile(`\(default (.*)\)$`)
)

// checkConfigKeys checks that each documented key (#key: value) of the
// default config is a flag of bin and that the value shown is the flag's
// default as `bin -h` prints it.
func checkConfigKeys(t *testing.T, bin, config string) {
	t.Helper()
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h may exit non-zero
	defaults := map[string]string{}
	for _, m := range flagHelp.FindAllStringSubmatch(string(out), -1) {
		defaults[m[1]] = ""
		if d := flagDefault.FindStringSubmatch(m[2]); d != nil {
			defaults[m[1]] = strings.Trim(d[1], `"`)
		}
	}
	if len(defaults) == 0 {
		t.Fatalf("%s -h lists no flags:\n%s", bin, out)
	}
	keys := configKey.FindAllStringSubmatch(config, -1)
	if len(keys) == 0 {
		t.Fatal("the default config documents no keys")
	}
	for _, k := range keys {
		def, ok := defaults[k[1]]
		if !ok {
			t.Errorf("config key %q is not a flag of %s", k[1], filepath.Base(bin))
			continue
		}
		if def == "" { // no default (required or OS-derived): any example will do
			continue
		}
		if got := strings.Trim(k[2], `"`); got != def {
			t.Errorf("config key %q documents %q, the flag's default is %q", k[1], got, def)
		}
	}
}
