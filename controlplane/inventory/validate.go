package inventory

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/metalfabric/fabric/controlplane/model"
)

// validName checks a network or machine name: 1-63 characters of lowercase
// letters, digits, '-', '.', '_', starting and ending with a letter or digit.
func validName(kind, s string) error {
	if s == "" {
		return errorf(ErrInvalid, "%s name is empty", kind)
	}
	if len(s) > 63 {
		return errorf(ErrInvalid, "%s name %q is longer than 63 characters", kind, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if alnum || (i > 0 && i < len(s)-1 && (c == '-' || c == '.' || c == '_')) {
			continue
		}
		return errorf(ErrInvalid, "%s name %q is invalid: use lowercase letters, digits, '-', '.', '_', starting and ending with a letter or digit", kind, s)
	}
	return nil
}

// validHostname checks an RFC 1123 host name.
func validHostname(s string) error {
	if s == "" {
		return errorf(ErrInvalid, "hostname is empty")
	}
	if len(s) > 253 {
		return errorf(ErrInvalid, "hostname %q is longer than 253 characters", s)
	}
	for _, label := range strings.Split(s, ".") {
		if !validLabel(label) {
			return errorf(ErrInvalid, "hostname %q is not a valid RFC 1123 host name", s)
		}
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && !(c == '-' && i > 0 && i < len(l)-1) {
			return false
		}
	}
	return true
}

// validPortName checks a Linux interface name the way the kernel does
// (dev_valid_name): 1-15 bytes, not "." or "..", no '/', ':' or whitespace.
func validPortName(s string) error {
	if s == "" {
		return errorf(ErrInvalid, "port name is empty")
	}
	if len(s) > 15 {
		return errorf(ErrInvalid, "port name %q is longer than 15 bytes", s)
	}
	if s == "." || s == ".." {
		return errorf(ErrInvalid, "port name %q is invalid", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return errorf(ErrInvalid, "port name %q contains %q", s, r)
		}
	}
	return nil
}

func validMAC(what, s string) error {
	if s == "" {
		return nil
	}
	if _, err := net.ParseMAC(s); err != nil {
		return errorf(ErrInvalid, "%s %q is not a MAC address", what, s)
	}
	return nil
}

// validPorts checks a reported port list and returns it sorted by name.
func validPorts(ports []model.Port) ([]model.Port, error) {
	seen := make(map[string]bool, len(ports))
	out := make([]model.Port, 0, len(ports))
	for _, p := range ports {
		if err := validPortName(p.Name); err != nil {
			return nil, err
		}
		if seen[p.Name] {
			return nil, errorf(ErrInvalid, "port %s is listed twice", p.Name)
		}
		seen[p.Name] = true
		if err := validMAC(fmt.Sprintf("port %s mac", p.Name), p.MAC); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sortPorts(out)
	return out, nil
}

// maxAnnounce bounds the extra prefixes one machine may announce.
const maxAnnounce = 64

// validAnnounce checks the extra prefixes a machine may announce: valid,
// canonical (no host bits set), no duplicates, at most maxAnnounce. It
// returns them sorted.
func validAnnounce(ps []netip.Prefix) ([]netip.Prefix, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	if len(ps) > maxAnnounce {
		return nil, errorf(ErrInvalid, "%d announceable prefixes: at most %d", len(ps), maxAnnounce)
	}
	out := slices.Clone(ps)
	for _, p := range out {
		if !p.IsValid() {
			return nil, errorf(ErrInvalid, "announceable prefix %q is not a valid CIDR", p)
		}
		if p != p.Masked() {
			return nil, errorf(ErrInvalid, "announceable prefix %s has host bits set (did you mean %s?)", p, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, errorf(ErrInvalid, "announceable prefix %s is listed twice", out[i])
		}
	}
	return out, nil
}
