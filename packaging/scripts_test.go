package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMaintainerScriptsWithoutSystemd runs the maintainer scripts as dpkg
// would in a chroot or image build (no running systemd), with getent,
// adduser and systemctl replaced by stubs that log their arguments: they
// create the user, enable the controller offline, and never talk to a
// service manager that is not there.
func TestMaintainerScriptsWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs on this host: the scripts' chroot branch cannot be exercised here")
	}
	tests := []struct {
		script   string
		args     []string
		userSeen bool // getent finds the user fabric
		want     []string
	}{
		{"controller-postinst.sh", []string{"configure", ""}, false, []string{
			"getent passwd fabric",
			"adduser --quiet --system --group --no-create-home --home /var/lib/fabric-controller fabric",
			"systemctl --no-reload enable fabric-controller.service",
		}},
		{"controller-postinst.sh", []string{"configure", "0.9.0"}, true, []string{
			"getent passwd fabric",
		}},
		{"controller-prerm.sh", []string{"remove"}, true, []string{
			"systemctl --no-reload disable fabric-controller.service",
		}},
		{"controller-prerm.sh", []string{"upgrade", "1.0.0"}, true, nil},
		{"controller-postrm.sh", []string{"remove"}, true, nil},
		{"agent-postinst.sh", []string{"configure", ""}, true, nil},
		{"agent-postinst.sh", []string{"configure", "0.9.0"}, true, nil},
		{"agent-prerm.sh", []string{"remove"}, true, []string{
			"systemctl --no-reload disable fabric-agent.service",
		}},
		{"agent-postrm.sh", []string{"remove"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.script+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			stubs := t.TempDir()
			log := filepath.Join(stubs, "calls")
			getentRC := "2"
			if tt.userSeen {
				getentRC = "0"
			}
			for name, rc := range map[string]string{"getent": getentRC, "adduser": "0", "systemctl": "0"} {
				stub := "#!/bin/sh\necho \"" + name + " $*\" >>" + log + "\nexit " + rc + "\n"
				if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("sh", append([]string{filepath.Join("scripts", tt.script)}, tt.args...)...)
			cmd.Env = append(os.Environ(), "PATH="+stubs+":/usr/sbin:/usr/bin:/sbin:/bin")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tt.script, err, out)
			}
			b, err := os.ReadFile(log)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			var got []string
			if s := strings.TrimSpace(string(b)); s != "" {
				got = strings.Split(s, "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("commands run (-want +got):\n%s", diff)
			}
		})
	}
}
