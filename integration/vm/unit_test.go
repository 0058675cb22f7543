package vm

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestParseShowDepends(t *testing.T) {
	out := `insmod /c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko 
insmod /c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko 
insmod /c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_pci.ko 
insmod /c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko 
insmod /c/lib/modules/6.1.0-56-amd64/kernel/net/9p/9pnet.ko debug=0
builtin unix

insmod /c/lib/modules/6.1.0-56-amd64/kernel/fs/9p/9p.ko 
`
	got, err := parseShowDepends([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko",
		"/c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko",
		"/c/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_pci.ko",
		"/c/lib/modules/6.1.0-56-amd64/kernel/net/9p/9pnet.ko",
		"/c/lib/modules/6.1.0-56-amd64/kernel/fs/9p/9p.ko",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseShowDepends (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"insmod\n", "modprobe: FATAL: Module x not found\n"} {
		if _, err := parseShowDepends([]byte(bad)); err == nil {
			t.Errorf("parseShowDepends(%q): no error", bad)
		}
	}
}

func TestParseDepends(t *testing.T) {
	out := "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"
	got, err := parseDepends(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("linux-image-6.1.0-56-amd64", got); diff != "" {
		t.Errorf("parseDepends (-want +got):\n%s", diff)
	}
	if _, err := parseDepends("linux-image-amd64\n  Depends: <linux-image-virtual>\n"); err == nil {
		t.Error("parseDepends of a virtual package: no error")
	}
}

func TestInitScript(t *testing.T) {
	golden(t, "init.golden", initScript([]string{"virtio_ring.ko", "virtio.ko", "9p.ko", "overlay.ko"}))
}

func TestGuestScript(t *testing.T) {
	p := scriptParams{
		Busybox: "/usr/bin/busybox",
		Nonce:   "0123456789abcdef",
		Command: `ip link add vrf9 type vrf table 9 && echo "it's up"`,
		Dir:     "/work/main",
		Env:     []string{"A=1", "B=two words", "C=it's"},
		Modules: []string{"vrf", "8021q"},
		Tmpfs:   []string{"/tmp", "/run"},
	}
	golden(t, "guest-command.golden", guestScript(p))

	p.Interactive, p.Command, p.Tmpfs = true, "", []string{"/run"}
	p.Term, p.Rows, p.Cols = "xterm-256color", 50, 120
	golden(t, "guest-interactive.golden", guestScript(p))
}

func TestTmpfsMounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keep    []string
		command string
		env     []string
		want    []string
	}{
		{name: "free", keep: []string{"/work/main/.cache/vm/runs/run-1", "/work/main"}, command: "make test", want: []string{"/tmp", "/run"}},
		{name: "cache under tmp", keep: []string{"/tmp/vmcache/runs/run-1"}, command: "true", want: []string{"/run"}},
		{name: "tmp itself", keep: []string{"/tmp"}, want: []string{"/run"}},
		{name: "binary under tmp", command: "/tmp/go-build1/b001/vm.test -test.v", want: []string{"/run"}},
		{name: "quoted path", command: `cd '/run/x' && ls`, want: []string{"/tmp"}},
		{name: "env path", env: []string{"PATH=/usr/bin:/tmp/bin"}, want: []string{"/run"}},
		{name: "prefix only", command: "/tmpfoo/x /runner", want: []string{"/tmp", "/run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tmpfsMounts(tc.keep, tc.command, tc.env)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tmpfsMounts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"", "plain", "two words", "it's", `a"b\c$d` + "`e`", "new\nline", "*"} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh for %q: %v", s, err)
		}
		if diff := cmp.Diff(s, string(out)); diff != "" {
			t.Errorf("quote round trip (-want +got):\n%s", diff)
		}
	}
}

const testNonce = "feedfacecafebeef"

// filterAll feeds chunks through a console filter and returns its output,
// exit code and whether the exit marker was seen.
func filterAll(chunks []string) (string, int, bool) {
	var out bytes.Buffer
	f := newConsoleFilter(&out, testNonce)
	for _, c := range chunks {
		f.Write([]byte(c))
	}
	code, ok := f.result()
	return out.String(), code, ok
}

func TestConsoleFilter(t *testing.T) {
	start := startMarker + testNonce + "\r\n"
	exit := exitMarker + testNonce + ":"
	for _, tc := range []struct {
		name     string
		chunks   []string
		want     string
		wantCode int
		wantSeen bool
	}{
		{
			name:     "serial console",
			chunks:   []string{"\x1b[2JSeaBIOS\r\nBooting\r\n" + start + "hello\r\nworld\r\n" + exit + "0\r\n[ 1.2] reboot: Power down\r\n"},
			want:     "hello\r\nworld\r\n",
			wantSeen: true,
		},
		{
			name:     "port",
			chunks:   []string{startMarker + testNonce + "\n", "a\tb\r\n\n", exit + "0\n", "late daemon output\n"},
			want:     "a\tb\r\n\n",
			wantSeen: true,
		},
		{
			name:     "split everywhere",
			chunks:   []string{"boot", "\nFABRIC-VM-ST", "ART-" + testNonce, "\r", "\nout\r", "\npartial FABRIC-VM-", "EXIT-nope\n", exit[:5], exit[5:], "4", "2\r", "\n"},
			want:     "out\r\npartial FABRIC-VM-EXIT-nope\n",
			wantCode: 42,
			wantSeen: true,
		},
		{
			name:     "no newline before marker",
			chunks:   []string{start, "no newline", exit + "1\n"},
			want:     "no newline",
			wantCode: 1,
			wantSeen: true,
		},
		{
			name:     "prompt without newline passes at once",
			chunks:   []string{start, "root@fabric-vm:~# "},
			want:     "root@fabric-vm:~# ",
			wantSeen: false,
		},
		{
			name:   "guest died",
			chunks: []string{start, "panic\n"},
			want:   "panic\n",
		},
		{
			name:   "never started",
			chunks: []string{"Kernel panic - not syncing\r\n"},
		},
		{
			name:     "marker with another nonce is output",
			chunks:   []string{start, exitMarker + "0000000000000000:0\n", exit + "7\n"},
			want:     exitMarker + "0000000000000000:0\n",
			wantCode: 7,
			wantSeen: true,
		},
		{
			name:     "bad status",
			chunks:   []string{start, exit + "x\n"},
			wantCode: -1,
			wantSeen: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, code, seen := filterAll(tc.chunks)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if code != tc.wantCode || seen != tc.wantSeen {
				t.Errorf("exit = %d, %v; want %d, %v", code, seen, tc.wantCode, tc.wantSeen)
			}
		})
	}
}

// FuzzConsoleFilter: whatever the command prints and however the stream is
// split, the filter returns exactly the output and the status.
func FuzzConsoleFilter(f *testing.F) {
	f.Add("hello\nworld\n", uint8(3), []byte{1, 5, 7})
	f.Add("FABRIC-VM-EXIT-\r\r\n", uint8(0), []byte{16})
	f.Add("", uint8(255), []byte{})
	f.Fuzz(func(t *testing.T, text string, code uint8, cuts []byte) {
		if strings.Contains(text, testNonce) {
			t.Skip()
		}
		stream := "BIOS\r\n" + startMarker + testNonce + "\r\n" + text +
			exitMarker + testNonce + ":" + strconv.Itoa(int(code)) + "\r\nreboot\r\n"
		var chunks []string
		rest := stream
		for _, c := range cuts {
			n := int(c) % (len(rest) + 1)
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		chunks = append(chunks, rest)
		got, gotCode, seen := filterAll(chunks)
		if diff := cmp.Diff(text, got); diff != "" {
			t.Errorf("output (-want +got):\n%s", diff)
		}
		if !seen || gotCode != int(code) {
			t.Errorf("exit = %d, %v; want %d, true", gotCode, seen, code)
		}
	})
}

func TestTailBuffer(t *testing.T) {
	tb := tailBuffer{max: 2}
	tb.Write([]byte("\x1bc\x1b[?7l\x1b[2Jone\r\ntwo\r\nthr"))
	tb.Write([]byte("ee\r\nfour"))
	if diff := cmp.Diff("two\nthree\nfour", tb.String()); diff != "" {
		t.Errorf("tail (-want +got):\n%s", diff)
	}
}

func TestQemuArgs(t *testing.T) {
	k := kernelAt("/c", "6.1.0-56-amd64")
	got := qemuArgs(k, Config{CPUs: 2, MemoryMB: 2048}, "/c/runs/run-1/init.sh", "/tmp/fabric-vm-1/out.sock")
	want := []string{
		"-accel", "tcg,thread=multi",
		"-cpu", "max",
		"-smp", "2",
		"-m", "2048",
		"-nodefaults", "-no-user-config",
		"-nographic",
		"-serial", "stdio",
		"-nic", "none",
		"-no-reboot",
		"-kernel", "/c/6.1.0-56-amd64/vmlinux",
		"-initrd", "/c/6.1.0-56-amd64/initrd-v3.img",
		"-append", "console=ttyS0 quiet loglevel=0 panic=-1 rdinit=/init fabric_vm.guest=1 fabric_vm.script=/c/runs/run-1/init.sh",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=/c/6.1.0-56-amd64/root/lib/modules,mount_tag=modules,security_model=none,readonly=on",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=out,path=/tmp/fabric-vm-1/out.sock",
		"-device", "virtserialport,bus=vser.0,chardev=out,name=fabric.out",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("qemuArgs (-want +got):\n%s", diff)
	}
}

func TestConfigDefaults(t *testing.T) {
	got, err := Config{Command: "true", CacheDir: "/c"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got.Dir != wd || got.MemoryMB != 2048 || got.CPUs != 2 || got.Stdout != os.Stdout {
		t.Errorf("defaults: dir %q mem %d cpus %d", got.Dir, got.MemoryMB, got.CPUs)
	}
	if diff := cmp.Diff(DefaultModules, got.Modules); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}
	for _, bad := range []Config{
		{},
		{Command: "true", Dir: "relative"},
		{Command: "true", Env: []string{"NOEQUALS"}},
		{Command: "true", Env: []string{"BAD-NAME=1"}},
		{Command: "true", Modules: []string{"vrf; reboot"}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("withDefaults(%+v): no error", bad)
		}
	}
}

// readCpio decodes a newc archive into name -> (mode, data), for tests.
func readCpio(t *testing.T, b []byte) map[string]cpioFile {
	t.Helper()
	files := map[string]cpioFile{}
	for len(b) > 0 {
		if len(b) < 110 || string(b[:6]) != "070701" {
			t.Fatalf("bad cpio header at %q", b[:min(len(b), 16)])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, rmaj, rmin, nameLen := field(1), field(6), field(9), field(10), field(11)
		name := string(b[110 : 110+nameLen-1])
		off := (110 + nameLen + 3) &^ 3
		data := b[off : off+size]
		b = b[(off+size+3)&^3:]
		if name == "TRAILER!!!" {
			break
		}
		files[name] = cpioFile{name: name, mode: uint32(mode), data: data, major: uint32(rmaj), minor: uint32(rmin)}
	}
	return files
}

func TestCpioRoundTrip(t *testing.T) {
	in := initrdFiles([]byte("BUSYBOX"), map[string][]byte{"a.ko": []byte("A"), "bb.ko": []byte("BBBBB")}, []string{"bb.ko", "a.ko"})
	var buf bytes.Buffer
	if err := writeCpio(&buf, in); err != nil {
		t.Fatal(err)
	}
	want := map[string]cpioFile{}
	for _, f := range in {
		if f.data == nil {
			f.data = []byte{}
		}
		want[f.name] = f
	}
	got := readCpio(t, buf.Bytes())
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(cpioFile{})); diff != "" {
		t.Errorf("cpio round trip (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(got["init"].data), "insmod /modules/bb.ko") {
		t.Errorf("init does not load the modules:\n%s", got["init"].data)
	}
}

func TestBzPayload(t *testing.T) {
	img := make([]byte, 4096)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f) // boot protocol 2.15
	img[0x1f1] = 3                                    // setup sectors: payload area starts at 4*512
	binary.LittleEndian.PutUint32(img[0x248:], 100)   // payload_offset
	binary.LittleEndian.PutUint32(img[0x24c:], 6)     // payload_length
	copy(img[4*512+100:], "\xfd7zXZ\x00")
	got, err := bzPayload(img)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte("\xfd7zXZ\x00"), got); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	binary.LittleEndian.PutUint32(img[0x24c:], 1<<20)
	if _, err := bzPayload(img); err == nil {
		t.Error("payload beyond the image: no error")
	}
	if _, err := bzPayload([]byte("MZ not a kernel")); err == nil {
		t.Error("not a bzImage: no error")
	}
	if hasPVHNote([]byte("not an ELF file")) {
		t.Error("hasPVHNote(garbage) = true")
	}
}

// TestCachedKernelImage checks vmlinux extraction against the kernel in the
// default cache, when one was prepared.
func TestCachedKernelImage(t *testing.T) {
	dir, err := DefaultCacheDir()
	if err != nil {
		t.Skip(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, currentFile))
	if err != nil {
		t.Skip("no kernel prepared in", dir)
	}
	k := kernelAt(dir, strings.TrimSpace(string(b)))
	img, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		t.Skip(err)
	}
	payload, err := bzPayload(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decompressKernel(t.Context(), payload[:64]); err == nil {
		t.Error("decompressing a truncated payload: no error")
	}
	if vmlinux, err := os.ReadFile(k.Vmlinux); err == nil && !hasPVHNote(vmlinux) {
		t.Errorf("%s has no PVH note", k.Vmlinux)
	}
}
