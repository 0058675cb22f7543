package pki

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func parse(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateAndIdentities(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, Bundle{ControllerHosts: []string{"controller", "10.0.0.1"}, Devices: []string{"leaf01"}, Operators: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	ca := parse(t, filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tests := []struct {
		file  string
		usage x509.ExtKeyUsage
		want  Identity
	}{
		{"leaf01.pem", x509.ExtKeyUsageClientAuth, Identity{Names: []string{"leaf01"}}},
		{"admin.pem", x509.ExtKeyUsageClientAuth, Identity{Names: []string{"admin"}, Operator: true}},
		{"controller.pem", x509.ExtKeyUsageServerAuth, Identity{Names: []string{"controller"}}},
	}
	for _, tt := range tests {
		c := parse(t, filepath.Join(dir, tt.file))
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tt.usage}}); err != nil {
			t.Errorf("%s does not verify for %v: %v", tt.file, tt.usage, err)
		}
		if diff := cmp.Diff(tt.want, IdentityOf(c)); diff != "" {
			t.Errorf("identity of %s (-want +got):\n%s", tt.file, diff)
		}
	}
	srv := parse(t, filepath.Join(dir, "controller.pem"))
	if err := srv.VerifyHostname("10.0.0.1"); err != nil {
		t.Errorf("controller certificate: %v", err)
	}
	for _, f := range []string{"leaf01-key.pem", "admin-key.pem", "controller-key.pem", "operator.token"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
	if _, err := ServerConfig(filepath.Join(dir, "controller.pem"), filepath.Join(dir, "controller-key.pem"), filepath.Join(dir, "ca.pem")); err != nil {
		t.Errorf("ServerConfig: %v", err)
	}
	if _, err := ClientConfig(filepath.Join(dir, "leaf01.pem"), "", filepath.Join(dir, "ca.pem")); err == nil {
		t.Error("ClientConfig with a certificate but no key: no error")
	}
	if _, err := ClientConfig("", "", filepath.Join(dir, "leaf01-key.pem")); err == nil {
		t.Error("ClientConfig with a key as CA file: no error")
	}
	toks, err := ReadTokens(filepath.Join(dir, "operator.token"))
	if err != nil || len(toks) != 1 || len(toks[0]) != 48 {
		t.Errorf("ReadTokens = %q, %v; want one 48-hex-digit token", toks, err)
	}
}
